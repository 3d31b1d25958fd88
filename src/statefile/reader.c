/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reader.c - reading an image. sf_image_open() reads memfile.img and
 * validates it fully (version first, then its size, its checksum, every
 * table), then opens pages.img and checks its size against the index, so
 * that callers may index every table and read every block without
 * further checks. On top of it: the block read helper that verify and
 * export share, and the read-only public functions pgc_image_info() (a
 * summary for `pgckpt inspect`) and pgc_image_verify() (every checksum,
 * every block decoded, for `pgckpt verify`).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sf_internal.h"

/*
 * Open the image file @name in @dirfd for reading: never through a
 * symlink, never waiting (a FIFO opens at once and is then refused as not
 * a regular file by the caller's fstat). Returns the fd, or -@missing if
 * there is no such file, -PGC_ECORRUPT for a symlink, or -errno.
 */
static int open_image_file(int dirfd, const char *name, int flags, int missing)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY |
			O_CLOEXEC | flags);

	if (fd >= 0)
		return fd;
	if (errno == ENOENT)
		return -missing;
	return errno == ELOOP ? -PGC_ECORRUPT : -errno;
}

/* Read and validate memfile.img, open in @dirfd, into @img. */
static int read_memfile(int fd, struct sf_image *img)
{
	uint8_t head[8 + 4 + SF_MAX_HEAD];
	uint8_t *buf = NULL;
	struct stat st;
	uint32_t version;
	size_t n;
	ssize_t got;
	int ret;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -PGC_EFOREIGN;
	/* Magics and version before anything is allocated. */
	n = (uint64_t)st.st_size < sizeof(head) ? (size_t)st.st_size : sizeof(head);
	got = sf_pread_all(fd, head, n, 0);
	if (got < 0)
		return (int)got;
	ret = sf_index_peek(head, (size_t)got, (uint64_t)got, &version);
	if (ret)
		return ret;
	if ((uint64_t)st.st_size > SF_MAX_MEMFILE)
		return -PGC_ECORRUPT;
	n = (size_t)st.st_size;
	buf = malloc(n);
	if (!buf)
		return -ENOMEM;
	got = sf_pread_all(fd, buf, n, 0);
	if (got < 0) {
		ret = (int)got;
		goto exit;
	}
	ret = sf_index_decode(buf, (size_t)got, img);
exit:
	free(buf);
	return ret;
}

/* Open pages.img, with O_DIRECT where asked and possible. */
static int open_pages(int dirfd, bool direct, struct sf_image *img)
{
	struct stat st;
	int fd = -1;

	if (direct && img->compress == PGC_COMPRESS_NONE) {
		fd = open_image_file(dirfd, SF_PAGES_NAME, O_DIRECT, PGC_ECORRUPT);
		img->direct = fd >= 0;
	}
	if (fd < 0)
		fd = open_image_file(dirfd, SF_PAGES_NAME, 0, PGC_ECORRUPT);
	if (fd < 0)
		return fd;
	img->pages_fd = fd;
	if (fstat(img->pages_fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -PGC_ECORRUPT;
	if ((uint64_t)st.st_size < img->pages_bytes)
		return -PGC_ETRUNCATED;
	if ((uint64_t)st.st_size > img->pages_bytes)
		return -PGC_ECORRUPT;
	return 0;
}

/*
 * The image's own pieces (each run from its block), each block's fd, and
 * the merged runs-and-refs table sf_image_page searches. 0 or -ENOMEM.
 */
static int own_tables(struct sf_image *img)
{
	size_t b, k, r = 0, f = 0, h = 0;

	img->nruns_own = img->nruns;
	img->nblocks_own = img->nblocks;
	img->load_block = img->block_size;
	img->pieces = calloc(img->nruns ? img->nruns : 1, sizeof(*img->pieces));
	img->hr = calloc(img->nruns + img->nrefs + 1, sizeof(*img->hr));
	if (!img->pieces || !img->hr)
		return -ENOMEM;
	for (b = 0; b < img->nblocks; b++) {
		struct sf_block *sb = &img->blocks[b];

		sb->fd = img->pages_fd;
		for (k = sb->first_run; k < sb->first_run + sb->nruns; k++)
			img->pieces[k] = (struct sf_piece){ img->runs[k].off, img->runs[k].len,
							    (uint32_t)b };
	}
	img->npieces = img->nruns;
	img->load_bytes = img->mem_bytes;
	/* Runs and refs are disjoint: merge them by offset. */
	while (r < img->nruns || f < img->nrefs) {
		struct sf_hrange *x = &img->hr[img->nhr++];

		if (f == img->nrefs || (r < img->nruns && img->runs[r].off < img->refs[f].off)) {
			*x = (struct sf_hrange){ img->runs[r].off, img->runs[r].len, 0, h };
			r++;
		} else {
			*x = (struct sf_hrange){ img->refs[f].off, img->refs[f].len,
						 img->refs[f].depth, h };
			f++;
		}
		h += x->len / SF_PAGE_SIZE;
	}
	return 0;
}

int sf_image_page(const struct sf_image *img, uint64_t off, size_t *cursor,
		  uint64_t *hash, uint32_t *depth)
{
	size_t lo = *cursor < img->nhr && img->hr[*cursor].off <= off ? *cursor : 0;
	size_t hi = img->nhr;
	const struct sf_hrange *x;

	if (!img->nhashes)
		return 0;   /* version 1: nothing known */
	/* The first range ending after @off. */
	if (lo < hi && img->hr[lo].off + img->hr[lo].len <= off) {
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (img->hr[mid].off + img->hr[mid].len <= off)
				lo = mid + 1;
			else
				hi = mid;
		}
	}
	*cursor = lo;
	if (lo == img->nhr || img->hr[lo].off > off)
		return 0;
	x = &img->hr[lo];
	*hash = img->hashes[x->hash0 + (off - x->off) / SF_PAGE_SIZE];
	*depth = x->depth;
	return 1;
}

int sf_image_open_one(const char *path, bool direct, struct sf_image **out)
{
	struct sf_image *img;
	int dirfd, fd = -1, ret;

	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	img = calloc(1, sizeof(*img));
	if (!img) {
		ret = -ENOMEM;
		goto exit;
	}
	img->pages_fd = -1;
	fd = open_image_file(dirfd, SF_MEMFILE_NAME, 0, PGC_EFOREIGN);
	if (fd < 0) {
		ret = fd;
		goto exit;
	}
	ret = read_memfile(fd, img);
	if (!ret)
		ret = open_pages(dirfd, direct, img);
	if (!ret)
		ret = own_tables(img);
	if (!ret) {
		img->path = strdup(path);
		if (!img->path)
			ret = -ENOMEM;
	}
exit:
	if (fd >= 0)
		close(fd);
	close(dirfd);
	if (ret) {
		sf_image_close(img);
		return ret;
	}
	*out = img;
	return 0;
}

void sf_image_close(struct sf_image *img)
{
	if (!img)
		return;
	while (img->nanc)
		sf_image_close(img->anc[--img->nanc]);
	free(img->anc);
	if (img->pages_fd >= 0)
		close(img->pages_fd);
	free(img->segs);
	free(img->runs);
	free(img->blocks);
	free(img->refs);
	free(img->hashes);
	free(img->parent_path);
	free(img->pieces);
	free(img->hr);
	free(img->path);
	free(img);
}

int sf_block_reader_init(struct sf_block_reader *r, const struct sf_image *img)
{
	int ret;

	*r = (struct sf_block_reader){ .img = img };
	ret = sf_codec_new(img->compress, img->level, &r->codec);
	if (ret)
		return ret;
	r->stored = malloc(sf_encode_bound(img->compress, img->load_block));
	r->mem = malloc(img->load_block);
	if (!r->stored || !r->mem) {
		sf_block_reader_free(r);
		return -ENOMEM;
	}
	return 0;
}

void sf_block_reader_free(struct sf_block_reader *r)
{
	free(r->stored);
	free(r->mem);
	sf_codec_free(r->codec);
	*r = (struct sf_block_reader){ 0 };
}

int sf_block_read(struct sf_block_reader *r, size_t i)
{
	const struct sf_block *b;
	struct iovec iov;
	ssize_t got;

	if (i >= r->img->nblocks)
		return -EINVAL;
	b = &r->img->blocks[i];
	got = sf_pread_all(b->fd, r->stored, b->stored_len, b->file_off);
	if (got < 0)
		return (int)got;
	if ((size_t)got < b->stored_len)
		return -PGC_ETRUNCATED;
	iov.iov_base = r->mem;
	iov.iov_len = b->mem_len;
	return sf_block_decode(r->codec, b, r->stored, &iov, 1);
}

/* ---- public read-only functions ----------------------------------------- */

int pgc_image_info(const char *path, struct pgc_image_info *out)
{
	struct sf_image *img;
	int ret;

	ret = sf_image_open(path, false, &img);
	if (ret)
		return ret;
	memset(out, 0, sizeof(*out));
	out->version = img->version;
	out->file_size = img->logical_size;
	out->mem_bytes = img->mem_bytes;
	out->pages_bytes = img->pages_bytes;
	out->segments = img->nsegs;
	out->blocks = img->nblocks_own;   /* its pages.img's, as mem_bytes and pages_bytes */
	out->block_size = img->block_size;
	out->compress = img->compress;
	out->level = img->level;
	out->depth = img->depth;
	sf_image_close(img);
	return 0;
}

int sf_image_each_block(const struct sf_image *img,
			int (*fn)(void *arg, size_t i, const uint8_t *mem), void *arg)
{
	struct sf_block_reader r;
	size_t i;
	int ret;

	ret = sf_block_reader_init(&r, img);
	for (i = 0; i < img->nblocks_own && !ret; i++) {
		ret = sf_block_read(&r, i);
		if (!ret)
			ret = fn(arg, i, r.mem);
	}
	sf_block_reader_free(&r);
	return ret;
}

struct verify_ctx {
	const struct sf_image *img;
	pgc_progress_fn progress;
	void *arg;
	uint64_t done, total;
};

static int verify_fn(void *arg, size_t i, const uint8_t *mem)
{
	struct verify_ctx *v = arg;

	(void)mem;
	v->done += v->img->blocks[i].mem_len;
	if (v->progress)
		v->progress(v->arg, v->done, v->total);
	return 0;
}

/*
 * pagemap.img must be exactly the pagemap the index gives: it is what
 * CRIU's tools read. Returns 0, -PGC_ECORRUPT, or -errno.
 */
static int verify_pagemap(const char *path, const struct sf_image *img)
{
	struct sf_buf want = { 0 };
	uint8_t *have = NULL;
	struct stat st;
	int dirfd, fd = -1, ret;
	ssize_t got;

	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	ret = sf_pagemap_encode(img->runs, img->nruns_own, &want);
	if (ret)
		goto exit;
	fd = open_image_file(dirfd, SF_PAGEMAP_NAME, 0, PGC_ECORRUPT);
	if (fd < 0) {
		ret = fd;
		goto exit;
	}
	ret = -PGC_ECORRUPT;
	if (fstat(fd, &st) != 0) {
		ret = -errno;
		goto exit;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != want.len)
		goto exit;
	have = malloc(want.len ? want.len : 1);
	if (!have) {
		ret = -ENOMEM;
		goto exit;
	}
	got = sf_pread_all(fd, have, want.len, 0);
	if (got < 0)
		ret = (int)got;
	else if ((size_t)got == want.len && memcmp(have, want.p, want.len) == 0)
		ret = 0;
exit:
	free(have);
	sf_buf_free(&want);
	if (fd >= 0)
		close(fd);
	close(dirfd);
	return ret;
}

int pgc_image_verify(const char *path, pgc_progress_fn progress, void *arg)
{
	struct verify_ctx v = { .progress = progress, .arg = arg };
	struct sf_image *img;
	size_t d;
	int ret;

	/*
	 * Opening checks the metadata and index checksum and every bound, of
	 * the image and of each ancestor, and that each is the recorded one.
	 */
	ret = sf_image_open(path, false, &img);
	if (ret)
		return ret;
	v.total = img->mem_bytes;
	for (d = 0; d < img->nanc; d++)
		v.total += img->anc[d]->mem_bytes;
	/* The image, then every ancestor: pagemap and every block. */
	for (d = 0; d <= img->nanc && !ret; d++) {
		const struct sf_image *x = d ? img->anc[d - 1] : img;

		v.img = x;
		ret = verify_pagemap(x->path, x);
		if (!ret)
			ret = sf_image_each_block(x, verify_fn, &v);
	}
	if (!ret && progress && !v.total)
		progress(arg, 0, 0);
	sf_image_close(img);
	return ret;
}
