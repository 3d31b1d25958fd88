/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pagemap.c - CRIU compatibility: the pagemap.img every image carries, and
 * pgc_image_export_criu(), which writes that pagemap and a raw
 * pages-1.img (the stored pages decoded, in order; for a child, every
 * page of its chain, as a restore writes them) into a directory, the
 * pair CRIU's tools (`crit decode -i pagemap.img`) understand. Both are
 * written as new files (O_EXCL | O_NOFOLLOW, mode 0600) under temporary
 * names and renamed into place: an existing file or symlink at either
 * name is never opened, only replaced as a directory entry when forced.
 *
 * A CRIU pagemap is CRIU's common magic, PAGEMAP_MAGIC, a pagemap_head
 * {pages_id} record, then one pagemap_entry {vaddr, nr_pages, flags} per
 * stretch of pages; here vaddr is the memory-file offset, adjacent runs
 * are merged, and nr_pages goes in both field 2 (older CRIU, u32) and
 * field 5 (newer CRIU, u64).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sf_internal.h"
#include "statefile/pagemap.pb-c.h"

/* Largest entry: field 2 is a u32 count of pages. */
#define SF_PAGEMAP_MAX_PAGES UINT32_MAX

static int put_entry(struct sf_buf *out, uint64_t off, uint64_t pages)
{
	Pgckpt__PagemapEntry e = PGCKPT__PAGEMAP_ENTRY__INIT;

	e.vaddr = off;
	e.compat_nr_pages = (uint32_t)pages;
	e.has_flags = 1;
	e.flags = SF_PE_PRESENT;
	e.has_nr_pages = 1;
	e.nr_pages = pages;
	return sf_buf_put_record(out, &e.base);
}

int sf_pagemap_encode(const struct sf_run *runs, size_t nruns, struct sf_buf *out)
{
	Pgckpt__PagemapHead head = PGCKPT__PAGEMAP_HEAD__INIT;
	uint64_t start = 0, end = 0, pages;
	size_t i;
	int ret;

	sf_buf_put_u32(out, SF_CRIU_COMMON_MAGIC);
	sf_buf_put_u32(out, SF_CRIU_PAGEMAP_MAGIC);
	head.pages_id = 1;
	ret = sf_buf_put_record(out, &head.base);
	for (i = 0; i <= nruns && !ret; i++) {
		if (i < nruns && i > 0 && runs[i].off == end) {
			end += runs[i].len;
			continue;
		}
		/* Flush the merged stretch [start, end), in u32-sized pieces. */
		while (start < end && !ret) {
			pages = (end - start) >> SF_PAGE_SHIFT;
			if (pages > SF_PAGEMAP_MAX_PAGES)
				pages = SF_PAGEMAP_MAX_PAGES;
			ret = put_entry(out, start, pages);
			start += pages << SF_PAGE_SHIFT;
		}
		if (i < nruns) {
			start = runs[i].off;
			end = runs[i].off + runs[i].len;
		}
	}
	return ret ? ret : out->err;
}

/*
 * What an export writes is the image's pieces (for a standalone image,
 * its runs; for a child, its chain resolved: every page from the image
 * that holds it), in offset order, back to back in pages-1.img. Each
 * block is read and decoded once, and its pieces are written at their
 * places in the file: a parent's block may hold pieces on both sides of
 * a child's.
 */
struct export_ctx {
	const struct sf_image *img;
	uint64_t *at;           /* each piece's offset in pages-1.img */
	uint32_t *order;        /* piece indices by block, then offset */
};

static int by_block(const void *a, const void *b, void *arg)
{
	const struct sf_piece *p = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	if (p[x].block != p[y].block)
		return p[x].block < p[y].block ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int export_plan(const struct sf_image *img, struct export_ctx *e)
{
	uint64_t pos = 0;
	size_t k;

	e->img = img;
	e->at = malloc((img->npieces ? img->npieces : 1) * sizeof(*e->at));
	e->order = malloc((img->npieces ? img->npieces : 1) * sizeof(*e->order));
	if (!e->at || !e->order)
		return -ENOMEM;
	for (k = 0; k < img->npieces; k++) {
		e->at[k] = pos;
		pos += img->pieces[k].len;
		e->order[k] = (uint32_t)k;
	}
	qsort_r(e->order, img->npieces, sizeof(*e->order), by_block, img->pieces);
	return 0;
}

/* Write the pieces order[*@k ..] of block @b (decoded at @mem) into @fd. */
static int export_block(const struct export_ctx *e, size_t *k, uint32_t b, const uint8_t *mem,
			int fd)
{
	const struct sf_image *img = e->img;
	const struct sf_block *sb = &img->blocks[b];
	uint32_t r = sb->first_run;
	uint64_t in = 0;           /* offset in the block of runs[r] */
	int ret = 0;

	for (; *k < img->npieces && img->pieces[e->order[*k]].block == b && !ret; (*k)++) {
		const struct sf_piece *p = &img->pieces[e->order[*k]];

		/* Pieces lie inside one of the block's runs, in offset order. */
		while (img->runs[r].off + img->runs[r].len <= p->off)
			in += img->runs[r++].len;
		ret = sf_pwrite_all(fd, mem + in + (p->off - img->runs[r].off), p->len,
				    e->at[e->order[*k]]);
	}
	return ret;
}

/* Decode every block @img's pieces use, once, writing the pieces into @fd. */
static int export_pages(const struct sf_image *img, int fd)
{
	struct export_ctx e = { 0 };
	struct sf_block_reader r = { 0 };
	size_t k = 0;
	int ret;

	ret = export_plan(img, &e);
	if (!ret)
		ret = sf_block_reader_init(&r, img);
	while (k < img->npieces && !ret) {
		uint32_t b = img->pieces[e.order[k]].block;

		ret = sf_block_read(&r, b);
		if (!ret)
			ret = export_block(&e, &k, b, r.mem, fd);
	}
	if (!ret && fsync(fd) != 0)
		ret = -errno;
	sf_block_reader_free(&r);
	free(e.at);
	free(e.order);
	return ret;
}

/* The pagemap of what an export writes: @img's pieces as runs. */
static int export_pagemap(const struct sf_image *img, struct sf_buf *buf)
{
	struct sf_run *runs = malloc((img->npieces ? img->npieces : 1) * sizeof(*runs));
	size_t k;
	int ret;

	if (!runs)
		return -ENOMEM;
	for (k = 0; k < img->npieces; k++)
		runs[k] = (struct sf_run){ img->pieces[k].off, img->pieces[k].len };
	ret = sf_pagemap_encode(runs, img->npieces, buf);
	free(runs);
	return ret;
}

#define EXPORT_PAGES_NAME "pages-1.img"

/* -EEXIST if @name exists in @dirfd (as anything, a dangling symlink too). */
static int check_absent(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST;
	return errno == ENOENT ? 0 : -errno;
}

/* Write the pagemap of @img and its pages into new temporary files. */
static int export_tmp(const struct sf_image *img, int dirfd, char *tmp_map, char *tmp_pages,
		      size_t len)
{
	struct sf_buf buf = { 0 };
	int fd, ret;

	ret = export_pagemap(img, &buf);
	if (ret)
		goto exit;
	fd = sf_create_tmp(dirfd, SF_PAGEMAP_NAME, tmp_map, len);
	if (fd < 0) {
		ret = fd;
		goto exit;
	}
	ret = sf_pwrite_all(fd, buf.p, buf.len, 0);
	if (!ret && fsync(fd) != 0)
		ret = -errno;
	if (close(fd) != 0 && !ret && errno != EINTR)
		ret = -errno;
	if (ret)
		goto exit;
	fd = sf_create_tmp(dirfd, EXPORT_PAGES_NAME, tmp_pages, len);
	if (fd < 0) {
		ret = fd;
		goto exit;
	}
	ret = export_pages(img, fd);
	if (close(fd) != 0 && !ret && errno != EINTR)
		ret = -errno;
exit:
	sf_buf_free(&buf);
	return ret;
}

int pgc_image_export_criu(const char *path, const char *dir, unsigned flags)
{
	bool force = flags & PGC_EXPORT_FORCE;
	char tmp_map[128] = "", tmp_pages[128] = "";
	struct sf_image *img = NULL;
	int dirfd = -1, ret;

	if (flags & ~PGC_EXPORT_FORCE)
		return -EINVAL;
	ret = sf_image_open(path, false, &img);
	if (ret)
		return ret;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		ret = -errno;
		goto exit;
	}
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = -errno;
		goto exit;
	}
	if (!force) {
		ret = check_absent(dirfd, SF_PAGEMAP_NAME);
		if (!ret)
			ret = check_absent(dirfd, EXPORT_PAGES_NAME);
		if (ret)
			goto exit;
	}
	ret = export_tmp(img, dirfd, tmp_map, tmp_pages, sizeof(tmp_map));
	/* The pages first: a pagemap never describes pages that are not there. */
	if (!ret)
		ret = sf_install(dirfd, tmp_pages, EXPORT_PAGES_NAME, force);
	if (!ret) {
		tmp_pages[0] = '\0';
		ret = sf_install(dirfd, tmp_map, SF_PAGEMAP_NAME, force);
		if (ret)
			unlinkat(dirfd, EXPORT_PAGES_NAME, 0);
	}
	if (!ret) {
		tmp_map[0] = '\0';
		if (fsync(dirfd) != 0)
			ret = -errno;
	}
exit:
	if (dirfd >= 0) {
		if (tmp_map[0])
			unlinkat(dirfd, tmp_map, 0);
		if (tmp_pages[0])
			unlinkat(dirfd, tmp_pages, 0);
		close(dirfd);
	}
	sf_image_close(img);
	return ret;
}
