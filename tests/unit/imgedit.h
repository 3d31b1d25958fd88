/* SPDX-License-Identifier: Apache-2.0 */
/*
 * imgedit.h - for tests that forge images (tests/unit/faults.c,
 * tests/fuzz/mkcorpus.c): read a file whole, and re-encode a
 * memfile.img with its meta record changed, its size field and trailer
 * checksum made consistent again, so that the change reaches the checks
 * behind them. The input is an image pgckpt wrote itself.
 */
#ifndef PGC_TEST_IMGEDIT_H
#define PGC_TEST_IMGEDIT_H

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statefile/sf_internal.h"
#include "statefile/memfile.pb-c.h"

/* The whole of @path (malloc'd) and its length in *@len, or NULL. */
static inline uint8_t *img_slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0 && fstat(fd, &st) == 0 && (p = malloc((size_t)st.st_size + 1)) &&
	    sf_pread_all(fd, p, (size_t)st.st_size, 0) == st.st_size) {
		*len = (size_t)st.st_size;
	} else {
		free(p);
		p = NULL;
	}
	if (fd >= 0)
		close(fd);
	return p;
}

/*
 * memfile.img @m (@mlen bytes) with its meta record changed by @edit:
 * a malloc'd buffer and its length in *@outlen, or NULL.
 */
static inline uint8_t *img_edit_meta(const uint8_t *m, size_t mlen,
				     void (*edit)(Pgckpt__PgcImgMeta *), size_t *outlen)
{
	Pgckpt__PgcImgTrailer tr = PGCKPT__PGC_IMG_TRAILER__INIT;
	struct sf_buf b = { 0 };
	size_t hl = sf_get_u32(m + 8), at = 12 + hl, ml = sf_get_u32(m + at);
	size_t rest = at + 4 + ml, meta_at;
	Pgckpt__PgcImgMeta *meta = pgckpt__pgc_img_meta__unpack(NULL, ml, m + at + 4);

	if (!meta)
		return NULL;
	edit(meta);
	sf_buf_put(&b, m, at);
	meta_at = b.len;
	sf_buf_put_record(&b, &meta->base);
	sf_buf_put(&b, m + rest, mlen - SF_TRAILER_BYTES - rest);
	meta->memfile_bytes = b.len + SF_TRAILER_BYTES;
	if (!b.err) {
		protobuf_c_message_pack(&meta->base, b.p + meta_at + 4);
		tr.checksum = sf_checksum(b.p, b.len);
		sf_buf_put_record(&b, &tr.base);
	}
	pgckpt__pgc_img_meta__free_unpacked(meta, NULL);
	if (b.err) {
		sf_buf_free(&b);
		return NULL;
	}
	*outlen = b.len;
	return b.p;
}

#endif /* PGC_TEST_IMGEDIT_H */
