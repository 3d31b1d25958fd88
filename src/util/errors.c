/* SPDX-License-Identifier: Apache-2.0 */
/*
 * errors.c - descriptions of the error codes the library returns:
 * negative errnos and the pgckpt-specific PGC_E* codes of pgckpt.h.
 */
#include <limits.h>
#include <string.h>

#include "pgckpt.h"

static const char *const messages[] = {
	[PGC_EFOREIGN - PGC_EFOREIGN]   = "Not a pgckpt image",
	[PGC_EVERSION - PGC_EFOREIGN]   = "Image written by a newer pgckpt format version",
	[PGC_ECORRUPT - PGC_EFOREIGN]   = "Image is corrupt",
	[PGC_ECHECKSUM - PGC_EFOREIGN]  = "Image checksum mismatch",
	[PGC_ETRUNCATED - PGC_EFOREIGN] = "Image is truncated",
	[PGC_ELOADFAIL - PGC_EFOREIGN]  = "Background load failed earlier",
	[PGC_ELIMIT - PGC_EFOREIGN]     = "Image has more usage segments than pgckpt accepts (1048576)",
	[PGC_EPARENT - PGC_EFOREIGN]    = "Parent image is missing, damaged or not the one recorded",
};

const char *pgc_strerror(int err)
{
	const char *s;

	if (err == INT_MIN)
		return "Unknown error";
	if (err < 0)
		err = -err;
	if (err == 0)
		return "Success";
	if (err >= PGC_EFOREIGN && err <= PGC_EPARENT)
		return messages[err - PGC_EFOREIGN];
	/* strerrordesc_np: static strings, thread-safe (glibc >= 2.32). */
	s = err < PGC_EFOREIGN ? strerrordesc_np(err) : NULL;
	return s ? s : "Unknown error";
}

bool pgc_is_image_error(int err)
{
	if (err < 0 && err != INT_MIN)
		err = -err;
	switch (err) {
	case PGC_EFOREIGN:
	case PGC_EVERSION:
	case PGC_ECORRUPT:
	case PGC_ECHECKSUM:
	case PGC_ETRUNCATED:
	case PGC_ELIMIT:
	case PGC_EPARENT:
		return true;
	default:
		return false;
	}
}
