/* SPDX-License-Identifier: Apache-2.0 */
/*
 * chain.c - opening an image together with its ancestors. A child image
 * (format version 2, depth > 0) stores only the pages that differ from its
 * parent's and references the rest (its refs, each naming the ancestor
 * that stores the pages). sf_image_open follows the parent links: each
 * parent is found by the path the child recorded (relative to the
 * directory holding the child) and must be the very image the child was
 * saved against (its identity, the checksum in its memfile.img trailer,
 * and its depth one less), else -PGC_EPARENT. It then resolves every ref
 * to the ancestor's blocks, so a load sees one table of blocks, each with
 * the fd of the pages.img that stores it, and one sorted table of pieces
 * saying which block writes which memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sf_internal.h"

char *sf_parent_path(const char *path, const struct sf_image *img)
{
	const char *slash;
	size_t dlen;
	char *out;

	if (!img->depth || !img->parent_path)
		return NULL;
	if (img->parent_path[0] == '/')
		return strdup(img->parent_path);
	/* The directory holding the image: @path without its last component. */
	dlen = strlen(path);
	while (dlen > 1 && path[dlen - 1] == '/')
		dlen--;
	slash = memrchr(path, '/', dlen);
	dlen = slash ? (size_t)(slash - path) + 1 : 0;
	out = malloc(dlen + strlen(img->parent_path) + 1);
	if (!out)
		return NULL;
	memcpy(out, path, dlen);
	strcpy(out + dlen, img->parent_path);
	return out;
}

/* Open @img's parent and check it is the recorded one. */
static int open_parent(const struct sf_image *img, bool direct, struct sf_image **out)
{
	struct sf_image *p = NULL;
	char *ppath = sf_parent_path(img->path, img);
	int ret;

	if (!ppath)
		return -ENOMEM;
	ret = sf_image_open_one(ppath, direct, &p);
	free(ppath);
	if (ret == -ENOMEM)
		return ret;
	if (!ret && (p->identity != img->parent_id || p->depth + 1 != img->depth ||
		     p->compress != img->compress))
		ret = -1;
	if (ret) {
		sf_image_close(p);
		return -PGC_EPARENT;
	}
	*out = p;
	return 0;
}

/* The block of @a holding the page at @off (a stores it), or -1. */
static long holding_run(const struct sf_image *a, uint64_t off)
{
	size_t lo = 0, hi = a->nruns_own;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a->runs[mid].off + a->runs[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == a->nruns_own || a->runs[lo].off > off)
		return -1;
	return (long)lo;
}

/* Where the blocks of the ancestors go in the merged table. */
struct merge {
	struct sf_image *img;
	uint32_t *remap[SF_MAX_DEPTH];  /* ancestor block -> merged index + 1 */
	uint32_t *run_block[SF_MAX_DEPTH]; /* ancestor run -> its block */
	size_t blocks_cap, runs_cap, pieces_cap;
};

static int grow_arr(void **arr, size_t *cap, size_t need, size_t size)
{
	size_t ncap = *cap;
	void *p;

	if (need <= ncap)
		return 0;
	while (ncap < need)
		ncap = ncap ? ncap * 2 : 64;
	p = realloc(*arr, ncap * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* The merged index of block @b of ancestor @d (1-based), appending it on first use. */
static int use_block(struct merge *m, uint32_t d, uint32_t b, uint32_t *out)
{
	struct sf_image *img = m->img, *a = img->anc[d - 1];
	struct sf_block sb = a->blocks[b];
	int ret;

	if (m->remap[d - 1][b]) {
		*out = m->remap[d - 1][b] - 1;
		return 0;
	}
	ret = grow_arr((void **)&img->blocks, &m->blocks_cap, img->nblocks + 1, sizeof(sb));
	if (!ret)
		ret = grow_arr((void **)&img->runs, &m->runs_cap, img->nruns + sb.nruns,
			       sizeof(*img->runs));
	if (ret)
		return ret;
	memcpy(img->runs + img->nruns, a->runs + sb.first_run, sb.nruns * sizeof(*img->runs));
	sb.first_run = (uint32_t)img->nruns;
	img->nruns += sb.nruns;
	img->blocks[img->nblocks] = sb;
	*out = (uint32_t)img->nblocks++;
	m->remap[d - 1][b] = *out + 1;
	if (a->block_size > img->load_block)
		img->load_block = a->block_size;
	return 0;
}

/* Add the pieces of ref @f: the runs of its ancestor that hold it. */
static int add_ref(struct merge *m, const struct sf_ref *f)
{
	struct sf_image *img = m->img, *a = img->anc[f->depth - 1];
	uint64_t at = f->off, end = f->off + f->len;
	int ret;

	while (at < end) {
		long r = holding_run(a, at);
		uint64_t upto;
		uint32_t b;

		if (r < 0)
			return -PGC_ECORRUPT;  /* the ancestor does not store it */
		upto = a->runs[r].off + a->runs[r].len < end ? a->runs[r].off + a->runs[r].len : end;
		ret = use_block(m, f->depth, m->run_block[f->depth - 1][r], &b);
		if (!ret)
			ret = grow_arr((void **)&img->pieces, &m->pieces_cap, img->npieces + 1,
				       sizeof(*img->pieces));
		if (ret)
			return ret;
		img->pieces[img->npieces++] = (struct sf_piece){ at, upto - at, b };
		img->load_bytes += upto - at;
		at = upto;
	}
	return 0;
}

static int piece_cmp(const void *a, const void *b)
{
	const struct sf_piece *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Resolve every ref of @img to its ancestors' blocks. */
static int merge_chain(struct sf_image *img)
{
	struct merge m = { .img = img, .blocks_cap = img->nblocks, .runs_cap = img->nruns,
			   .pieces_cap = img->npieces };
	size_t d, i, k;
	int ret = -ENOMEM;

	for (d = 0; d < img->nanc; d++) {
		struct sf_image *a = img->anc[d];

		m.remap[d] = calloc(a->nblocks + 1, sizeof(uint32_t));
		m.run_block[d] = calloc(a->nruns + 1, sizeof(uint32_t));
		if (!m.remap[d] || !m.run_block[d])
			goto exit;
		for (i = 0; i < a->nblocks; i++)
			for (k = a->blocks[i].first_run; k < a->blocks[i].first_run + a->blocks[i].nruns; k++)
				m.run_block[d][k] = (uint32_t)i;
	}
	ret = 0;
	for (i = 0; i < img->nrefs && !ret; i++)
		ret = add_ref(&m, &img->refs[i]);
	if (!ret)
		qsort(img->pieces, img->npieces, sizeof(*img->pieces), piece_cmp);
exit:
	for (d = 0; d < img->nanc; d++) {
		free(m.remap[d]);
		free(m.run_block[d]);
	}
	return ret;
}

int sf_image_open(const char *path, bool direct, struct sf_image **out)
{
	struct sf_image *img, *cur;
	int ret;

	ret = sf_image_open_one(path, direct, &img);
	if (ret || !img->depth) {
		if (!ret)
			*out = img;
		return ret;
	}
	ret = -ENOMEM;
	img->anc = calloc(img->depth, sizeof(*img->anc));
	if (!img->anc)
		goto fail;
	/* Depths fall by one per link: the walk ends, and a cycle cannot pass. */
	for (cur = img; cur->depth; cur = img->anc[img->nanc++]) {
		ret = open_parent(cur, direct, &img->anc[img->nanc]);
		if (ret)
			goto fail;
	}
	ret = merge_chain(img);
	if (ret)
		goto fail;
	*out = img;
	return 0;
fail:
	sf_image_close(img);
	return ret;
}

int pgc_image_parent(const char *path, char *buf, size_t len)
{
	struct sf_image *img = NULL, *p = NULL;
	char *ppath = NULL;
	int ret;

	if (!path || !buf || !len)
		return -EINVAL;
	ret = sf_image_open_one(path, false, &img);
	if (ret)
		return ret;
	ret = -ENODATA;
	if (!img->depth)
		goto exit;
	ret = -ENOMEM;
	ppath = sf_parent_path(path, img);
	if (!ppath)
		goto exit;
	ret = -ERANGE;
	if (strlen(ppath) >= len)
		goto exit;
	strcpy(buf, ppath);
	ret = open_parent(img, false, &p);
exit:
	sf_image_close(p);
	sf_image_close(img);
	free(ppath);
	return ret;
}
