/* SPDX-License-Identifier: Apache-2.0 */
/*
 * version.c - the version of the library that is loaded, so a program can
 * tell it apart from the version of the header it was built with
 * (PGC_VERSION_NUMBER, PGC_VERSION_STRING in pgckpt.h).
 */
#include "pgckpt.h"

unsigned int pgc_version(void)
{
	return PGC_VERSION_NUMBER;
}

const char *pgc_version_string(void)
{
	return PGC_VERSION_STRING;
}
