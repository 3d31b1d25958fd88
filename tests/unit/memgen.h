/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memgen.h - deterministic memory contents for the engine tests: every
 * page's bytes are a function of (seed, file offset), so any range can be
 * checked without keeping a copy. About a quarter of the pages are zero,
 * a quarter random, the rest compressible "heap-like" words.
 */
#ifndef PGC_MEMGEN_H
#define PGC_MEMGEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgckpt.h"

static inline uint64_t memgen_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Fill @page with the contents of the page at file offset @off. */
static inline void memgen_page(uint64_t seed, uint64_t off, unsigned char *page)
{
	uint64_t h = memgen_mix(seed ^ (off / PGC_PAGE_SIZE));
	uint64_t *w = (uint64_t *)page;
	size_t i;

	switch (h & 3) {
	case 0:
		memset(page, 0, PGC_PAGE_SIZE);
		break;
	case 1:
		for (i = 0; i < PGC_PAGE_SIZE / 8; i++)
			w[i] = memgen_mix(h + i);
		break;
	default:
		for (i = 0; i < PGC_PAGE_SIZE / 8; i++)
			w[i] = (i % 3) ? (0x7f0000000000ULL + ((h + i) % 64) * 16) : (i & 0xff);
		w[0] = off;
		break;
	}
}

/* Write the generated contents of @r through @mf's mapping. Returns 0 or -errno. */
static inline int memgen_fill(pgc_memfile *mf, uint64_t seed, pgc_range r)
{
	struct iovec iov[4];
	int n, i;
	uint64_t off = r.start;

	n = pgc_map_internal(mf, r, PGC_ACCESS_WRITE, iov, 4);
	if (n < 0)
		return n;
	for (i = 0; i < n; i++) {
		unsigned char *p = iov[i].iov_base;
		size_t done;

		for (done = 0; done < iov[i].iov_len; done += PGC_PAGE_SIZE, off += PGC_PAGE_SIZE) {
			unsigned char tmp[PGC_PAGE_SIZE];

			memgen_page(seed, off, tmp);
			/* Leave zero pages untouched so they stay holes. */
			if (memgen_mix(seed ^ (off / PGC_PAGE_SIZE)) & 3)
				memcpy(p + done, tmp, PGC_PAGE_SIZE);
		}
	}
	return 0;
}

/*
 * Compare @len bytes at @p (file offset @off, any alignment) with the
 * generated contents. Returns the first mismatching offset, or UINT64_MAX.
 */
static inline uint64_t memgen_check(uint64_t seed, uint64_t off, const unsigned char *p, size_t len)
{
	unsigned char tmp[PGC_PAGE_SIZE];
	uint64_t end = off + len;

	while (off < end) {
		uint64_t pg = off & ~(PGC_PAGE_SIZE - 1);
		uint64_t in = off - pg;
		uint64_t n = PGC_PAGE_SIZE - in;

		if (n > end - off)
			n = end - off;
		memgen_page(seed, pg, tmp);
		if (memcmp(tmp + in, p, n) != 0)
			return off;
		p += n;
		off += n;
	}
	return UINT64_MAX;
}

/*
 * A fresh memfd-backed MemoryFile with default options, marked savable;
 * exits on failure.
 */
static inline pgc_memfile *memgen_memfile(void)
{
	struct pgc_memfile_opts o;
	pgc_memfile *mf = NULL;

	pgc_memfile_opts_init(&o);
	if (pgc_memfile_new(&o, &mf) != 0) {
		printf("  pgc_memfile_new failed\n");
		exit(1);
	}
	pgc_mark_savable(mf);
	return mf;
}

#endif /* PGC_MEMGEN_H */
