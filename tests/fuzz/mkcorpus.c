/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mkcorpus.c - writes the seed corpus of fuzz_image: real images saved by
 * the library (zstd and raw, several block sizes, holes, several usage
 * segments), each as a harness input (flag byte, u32 memfile.img length,
 * memfile.img, pages.img), plus hand-made mutations of them: truncations,
 * a flipped pages byte, and meta records claiming absurd sizes and counts
 * (re-encoded with a correct size field and trailer checksum, so that the
 * reader's limits, not the checksum, must refuse them).
 * Usage: mkcorpus OUTDIR    (built by `make fuzz`; the corpus is committed)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pgckpt.h"
#include "../unit/imgedit.h"

static const char *outdir;
static int nseeds;

/* The whole of @path, or exit. */
static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *p = img_slurp(path, len);

	if (!p) {
		perror(path);
		exit(1);
	}
	return p;
}

static void emit(const char *name, uint8_t flags, const uint8_t *m, size_t mlen,
		 const uint8_t *pg, size_t plen)
{
	char path[512];
	uint8_t hdr[5] = { flags, mlen & 0xff, (mlen >> 8) & 0xff, (mlen >> 16) & 0xff,
			   (mlen >> 24) & 0xff };
	int fd;

	if (5 + mlen + plen > 65536) {
		fprintf(stderr, "mkcorpus: %s is %zu bytes, skipped\n", name, 5 + mlen + plen);
		return;
	}
	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || sf_pwrite_all(fd, hdr, 5, 0) || sf_pwrite_all(fd, m, mlen, 5) ||
	    sf_pwrite_all(fd, pg, plen, 5 + mlen)) {
		perror(path);
		exit(1);
	}
	close(fd);
	nseeds++;
}

/* Re-encode @m with meta changed by @edit; size field and trailer made right. */
static uint8_t *edit_meta(const uint8_t *m, size_t mlen, void (*edit)(Pgckpt__PgcImgMeta *),
			  size_t *outlen)
{
	uint8_t *x = img_edit_meta(m, mlen, edit, outlen);

	if (!x)
		exit(1);
	return x;
}

static void huge_blocks(Pgckpt__PgcImgMeta *m) { m->nblocks = 1ULL << 40; }
static void huge_runs(Pgckpt__PgcImgMeta *m) { m->nruns = 1ULL << 40; }
static void huge_segs(Pgckpt__PgcImgMeta *m) { m->nsegs = 1ULL << 40; }
static void huge_file(Pgckpt__PgcImgMeta *m) { m->file_size = 1ULL << 62; }
static void max_file(Pgckpt__PgcImgMeta *m) { m->file_size = SF_MAX_FILE_SIZE; }
static void huge_block(Pgckpt__PgcImgMeta *m) { m->block_size = 1u << 31; }
static void huge_pages(Pgckpt__PgcImgMeta *m) { m->pages_bytes = UINT64_MAX; }

static void fill(pgc_memfile *mf, pgc_range r, unsigned seed)
{
	struct iovec iov[4];
	uint64_t pg = 0;
	int n, i;
	size_t k;

	n = pgc_map_internal(mf, r, PGC_ACCESS_WRITE, iov, 4);
	if (n < 0)
		exit(1);
	for (i = 0; i < n; i++)
		for (k = 0; k < iov[i].iov_len; k += PGC_PAGE_SIZE, pg++) {
			uint8_t *p = (uint8_t *)iov[i].iov_base + k;
			size_t j;

			if ((pg + seed) % 3 == 2)
				continue;   /* a hole */
			for (j = 0; j < PGC_PAGE_SIZE; j++)
				p[j] = (pg + seed) % 3 ? (uint8_t)(j * seed + pg)
						       : (uint8_t)(j / 64 + pg);
		}
}

static void one(enum pgc_compress c, uint32_t block_size, unsigned pages, unsigned seed,
		int mutations)
{
	struct pgc_alloc_opts ao = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_memfile_opts mo;
	struct pgc_save_opts so;
	pgc_memfile *mf;
	pgc_range r1, r2, r3;
	char img[256], path[300], name[128];
	uint8_t *m, *pg, *x;
	size_t mlen, plen, xlen;
	int ret;

	pgc_memfile_opts_init(&mo);
	if (pgc_memfile_new(&mo, &mf))
		exit(1);
	pgc_mark_savable(mf);
	if (pgc_allocate(mf, (uint64_t)pages * PGC_PAGE_SIZE, &ao, &r1) ||
	    pgc_allocate(mf, 2 * PGC_PAGE_SIZE, &ao, &r2))
		exit(1);
	ao.kind = PGC_KIND_PAGECACHE;
	ao.memcg_id = 7;
	if (pgc_allocate(mf, 3 * PGC_PAGE_SIZE, &ao, &r3))
		exit(1);
	fill(mf, r1, seed);
	fill(mf, r3, seed + 1);
	pgc_decref(mf, r2);   /* a free gap between segments */
	pgc_save_opts_init(&so);
	so.compress = c;
	so.block_size = block_size;
	so.jobs = 1;
	snprintf(img, sizeof(img), "%s/.mkcorpus-img", outdir);
	ret = pgc_save(mf, img, &so);
	pgc_memfile_destroy(mf);
	if (ret) {
		fprintf(stderr, "mkcorpus: save: %d\n", ret);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/memfile.img", img);
	m = slurp(path, &mlen);
	snprintf(path, sizeof(path), "%s/pages.img", img);
	pg = slurp(path, &plen);
	snprintf(name, sizeof(name), "seed-%s-bs%u-p%u-s%u", c == PGC_COMPRESS_ZSTD ? "zstd" : "raw",
		 block_size / 1024, pages, seed);
	emit(name, 0, m, mlen, pg, plen);
	if (mutations) {
#define EMIT(suffix, fl, a, al, b, bl)                                               \
	do {                                                                         \
		char n2[200];                                                        \
		snprintf(n2, sizeof(n2), "%s-%s", name, suffix);                    \
		emit(n2, fl, a, al, b, bl);                                          \
	} while (0)
		EMIT("fix", 1, m, mlen, pg, plen);
		EMIT("short-memfile", 0, m, mlen - 1, pg, plen);
		EMIT("short-memfile-fix", 1, m, mlen / 2, pg, plen);
		if (plen) {
			EMIT("short-pages", 0, m, mlen, pg, plen - 1);
			pg[plen / 2] ^= 0x40;
			EMIT("flipped-page", 0, m, mlen, pg, plen);
			pg[plen / 2] ^= 0x40;
		}
		m[mlen / 2] ^= 1;
		EMIT("flipped-index", 0, m, mlen, pg, plen);
		EMIT("flipped-index-fix", 1, m, mlen, pg, plen);
		m[mlen / 2] ^= 1;
#define META(fn)                                                                     \
	do {                                                                         \
		x = edit_meta(m, mlen, fn, &xlen);                                   \
		EMIT(#fn, 0, x, xlen, pg, plen);                                     \
		free(x);                                                             \
	} while (0)
		META(huge_blocks);
		META(huge_runs);
		META(huge_segs);
		META(huge_file);
		META(max_file);
		META(huge_block);
		META(huge_pages);
	}
	free(m);
	free(pg);
	snprintf(path, sizeof(path), "rm -rf '%s'", img);
	if (system(path) != 0)
		exit(1);
}

/* Append @len bytes of @p and a u32 LE length before them to @buf at *@at. */
static void put_sized(uint8_t *buf, size_t *at, const uint8_t *p, size_t len)
{
	buf[*at] = len & 0xff;
	buf[*at + 1] = (len >> 8) & 0xff;
	buf[*at + 2] = (len >> 16) & 0xff;
	buf[*at + 3] = (len >> 24) & 0xff;
	memcpy(buf + *at + 4, p, len);
	*at += 4 + len;
}

/*
 * A chain seed (fuzz_image's flag bit 2): a parent saved as DIR/p, then
 * some pages changed (one zeroed, the file grown) and the child saved
 * against it as DIR/c; emitted as is, with a flipped ref, and for restore.
 */
static void chain_seed(enum pgc_compress c, uint32_t block_size, unsigned pages, unsigned seed)
{
	struct pgc_alloc_opts ao = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_memfile_opts mo;
	struct pgc_save_opts so;
	pgc_memfile *mf;
	pgc_range r1, r2;
	char dir[256], path[300], parent[300], name[128];
	uint8_t *m, *pg, *pm, *ppg, *rest;
	size_t mlen, plen, pmlen, pplen, at = 0;
	struct iovec v;

	pgc_memfile_opts_init(&mo);
	if (pgc_memfile_new(&mo, &mf))
		exit(1);
	pgc_mark_savable(mf);
	if (pgc_allocate(mf, (uint64_t)pages * PGC_PAGE_SIZE, &ao, &r1))
		exit(1);
	fill(mf, r1, seed);
	pgc_save_opts_init(&so);
	so.compress = c;
	so.block_size = block_size;
	so.jobs = 1;
	snprintf(dir, sizeof(dir), "%s/.mkcorpus-chain", outdir);
	mkdir(dir, 0700);
	snprintf(parent, sizeof(parent), "%s/p", dir);
	if (pgc_save(mf, parent, &so))
		exit(1);
	/* Change two pages, zero one, grow the file by two pages. */
	if (pgc_map_internal(mf, r1, PGC_ACCESS_WRITE, &v, 1) != 1)
		exit(1);
	memset((uint8_t *)v.iov_base + PGC_PAGE_SIZE, 0x5a, 2 * PGC_PAGE_SIZE);
	memset((uint8_t *)v.iov_base + 4 * PGC_PAGE_SIZE, 0, PGC_PAGE_SIZE);
	if (pgc_allocate(mf, 2 * PGC_PAGE_SIZE, &ao, &r2))
		exit(1);
	fill(mf, r2, seed + 5);
	so.parent = parent;
	snprintf(path, sizeof(path), "%s/c", dir);
	if (pgc_save(mf, path, &so))
		exit(1);
	pgc_memfile_destroy(mf);
	snprintf(path, sizeof(path), "%s/c/memfile.img", dir);
	m = slurp(path, &mlen);
	snprintf(path, sizeof(path), "%s/c/pages.img", dir);
	pg = slurp(path, &plen);
	snprintf(path, sizeof(path), "%s/p/memfile.img", dir);
	pm = slurp(path, &pmlen);
	snprintf(path, sizeof(path), "%s/p/pages.img", dir);
	ppg = slurp(path, &pplen);
	rest = malloc(8 + plen + pmlen + pplen);
	if (!rest)
		exit(1);
	put_sized(rest, &at, pg, plen);
	put_sized(rest, &at, pm, pmlen);
	memcpy(rest + at, ppg, pplen);
	at += pplen;
	snprintf(name, sizeof(name), "seed-chain-%s-bs%u-p%u-s%u",
		 c == PGC_COMPRESS_ZSTD ? "zstd" : "raw", block_size / 1024, pages, seed);
	emit(name, 4, m, mlen, rest, at);
	snprintf(name + strlen(name), sizeof(name) - strlen(name), "-restore");
	emit(name, 6, m, mlen, rest, at);
	m[mlen - 20] ^= 1;   /* in the hashes or refs, behind the checksum */
	snprintf(name + strlen(name), sizeof(name) - strlen(name), "-flipped-fix");
	emit(name, 7, m, mlen, rest, at);
	free(m);
	free(pg);
	free(pm);
	free(ppg);
	free(rest);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	if (system(path) != 0)
		exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkcorpus OUTDIR\n");
		return 2;
	}
	outdir = argv[1];
	mkdir(outdir, 0755);
	one(PGC_COMPRESS_ZSTD, 256 << 10, 16, 1, 1);
	one(PGC_COMPRESS_ZSTD, 4096, 12, 2, 1);
	one(PGC_COMPRESS_ZSTD, 8192, 9, 3, 0);
	one(PGC_COMPRESS_ZSTD, 16384, 24, 4, 0);
	one(PGC_COMPRESS_ZSTD, 64 << 10, 40, 5, 0);
	one(PGC_COMPRESS_NONE, 4096, 3, 6, 1);
	one(PGC_COMPRESS_NONE, 8192, 5, 7, 0);
	one(PGC_COMPRESS_NONE, 16384, 6, 8, 0);
	one(PGC_COMPRESS_NONE, 256 << 10, 2, 9, 0);
	chain_seed(PGC_COMPRESS_ZSTD, 16384, 24, 10);
	chain_seed(PGC_COMPRESS_NONE, 8192, 12, 11);
	printf("mkcorpus: %d seeds in %s\n", nseeds, outdir);
	return 0;
}
