/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ws_merge.c - pgc_ws_merge: several working-set recordings of one image
 * (restores driven by different runs of a workload) merged into one. A
 * block's place in the result is decided by how many recordings demanded
 * it (the blocks every run needs come first: REAP's working set is what
 * runs have in common), then by where they demanded it on average, then
 * by offset; the recorded pages are ranked the same way, on their own
 * (a recording from before pages were recorded adds blocks only). Every input is checked as a load checks its working set, but
 * here a bad one is an error: merging is asked for, not a hint.
 */
#include <errno.h>
#include <stdlib.h>

#include "pgckpt.h"
#include "statefile/statefile.h"

struct merge_entry {
	uint64_t key;           /* the block, or the page */
	uint32_t count;         /* recordings that hold it */
	uint64_t rank_sum;      /* its positions in them, summed */
};

/* The recorded pages of every input, then merged per page. */
struct merge_pages {
	struct merge_entry *e;
	size_t n, cap;
};

static int cmp_entry(const void *a, const void *b)
{
	const struct merge_entry *x = a, *y = b;
	/* Mean positions compared without division: sums < 2^44, counts <= 2^12. */
	uint64_t xm = x->rank_sum * y->count, ym = y->rank_sum * x->count;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	if (xm != ym)
		return xm < ym ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key;
}

static int cmp_key(const void *a, const void *b)
{
	const struct merge_entry *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

/* Append the @n pages of one input (positions 0..n-1). Returns 0 or -ENOMEM. */
static int pages_add(struct merge_pages *mp, const uint64_t *pages, size_t n)
{
	size_t i;

	if (mp->n + n > mp->cap) {
		size_t cap = mp->cap * 2 > mp->n + n ? mp->cap * 2 : mp->n + n;
		struct merge_entry *e = realloc(mp->e, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		mp->e = e;
		mp->cap = cap;
	}
	for (i = 0; i < n; i++)
		mp->e[mp->n++] = (struct merge_entry){ pages[i], 1, i };
	return 0;
}

/* One entry per page (counts and positions summed), in the order of the result. */
static void pages_rank(struct merge_pages *mp)
{
	size_t i, m = 0;

	if (!mp->n)
		return;   /* blocks-only recordings: mp->e is NULL, which qsort may not take */
	qsort(mp->e, mp->n, sizeof(*mp->e), cmp_key);
	for (i = 0; i < mp->n; i++) {
		if (m && mp->e[m - 1].key == mp->e[i].key) {
			mp->e[m - 1].count++;
			mp->e[m - 1].rank_sum += mp->e[i].rank_sum;
		} else {
			mp->e[m++] = mp->e[i];
		}
	}
	mp->n = m;
	qsort(mp->e, mp->n, sizeof(*mp->e), cmp_entry);
}

/*
 * Count and rank the blocks of every input into @e, and collect their
 * pages into @mp. Returns 0 or an input's error (*@bad).
 */
static int merge_read(const struct sf_image *img, const char *const *inputs, size_t n,
		      struct merge_entry *e, struct merge_pages *mp, size_t *bad)
{
	struct sf_ws set;
	size_t i, j;
	int ret;

	for (i = 0; i < n; i++) {
		if (!inputs[i])
			return -EINVAL;
		ret = sf_ws_read_set(inputs[i], img->identity, img->nblocks, sf_ws_mem_pages(img),
				     &set);
		if (ret) {
			if (bad && ret != -ENOMEM)
				*bad = i;
			return ret;
		}
		for (j = 0; j < set.n; j++) {
			e[set.blocks[j]].count++;
			e[set.blocks[j]].rank_sum += j;
		}
		ret = pages_add(mp, set.pages, set.npages);
		sf_ws_free(&set);
		if (ret)
			return ret;
	}
	return 0;
}

int pgc_ws_merge(const char *image, const char *const *inputs, size_t n, const char *out,
		 size_t *bad)
{
	struct merge_pages mp = { 0 };
	struct sf_image *img = NULL;
	struct merge_entry *e = NULL;
	struct sf_ws set = { 0 };
	size_t b, m = 0;
	int ret;

	if (bad)
		*bad = n;
	if (!image || !inputs || !n || n > PGC_WS_MERGE_MAX || !out)
		return -EINVAL;
	ret = sf_image_open(image, false, &img);
	if (ret)
		return ret;
	ret = -ENOMEM;
	e = calloc(img->nblocks ? img->nblocks : 1, sizeof(*e));
	set.blocks = calloc(img->nblocks ? img->nblocks : 1, sizeof(*set.blocks));
	if (!e || !set.blocks)
		goto exit;
	ret = merge_read(img, inputs, n, e, &mp, bad);
	if (ret)
		goto exit;
	ret = -ENOMEM;
	set.pages = malloc((mp.n ? mp.n : 1) * sizeof(*set.pages));
	if (!set.pages)
		goto exit;
	for (b = 0; b < img->nblocks; b++) {
		if (!e[b].count)
			continue;
		e[m] = e[b];
		e[m++].key = b;
	}
	qsort(e, m, sizeof(*e), cmp_entry);
	for (b = 0; b < m; b++)
		set.blocks[b] = (uint32_t)e[b].key;
	pages_rank(&mp);
	for (b = 0; b < mp.n; b++)
		set.pages[b] = mp.e[b].key;
	/* Every input held at least one block: m > 0. */
	set.n = m;
	set.npages = mp.n;
	ret = sf_ws_write_set(out, img->identity, img->nblocks, sf_ws_mem_pages(img), &set);
exit:
	sf_ws_free(&set);
	free(mp.e);
	free(e);
	sf_image_close(img);
	return ret;
}
