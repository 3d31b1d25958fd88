/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ws_merge.c - pgc_ws_merge: several working-set recordings of one image
 * (restores driven by different runs of a workload) merged into one. A
 * block's place in the result is decided by how many recordings demanded
 * it (the blocks every run needs come first: REAP's working set is what
 * runs have in common), then by where they demanded it on average, then
 * by offset. Every input is checked as a load checks its working set, but
 * here a bad one is an error: merging is asked for, not a hint.
 */
#include <errno.h>
#include <stdlib.h>

#include "pgckpt.h"
#include "statefile/statefile.h"

struct merge_entry {
	uint32_t block;
	uint32_t count;         /* recordings that hold the block */
	uint64_t rank_sum;      /* its positions in them, summed */
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
	return x->block < y->block ? -1 : x->block > y->block;
}

/* Count and rank the blocks of every input into @e. Returns 0 or an input's error (*@bad). */
static int merge_read(const struct sf_image *img, const char *const *inputs, size_t n,
		      struct merge_entry *e, size_t *bad)
{
	uint32_t *blocks;
	size_t i, j, nb;
	int ret;

	for (i = 0; i < n; i++) {
		if (!inputs[i])
			return -EINVAL;
		ret = sf_ws_read(inputs[i], img->identity, img->nblocks, &blocks, &nb);
		if (ret) {
			if (bad && ret != -ENOMEM)
				*bad = i;
			return ret;
		}
		for (j = 0; j < nb; j++) {
			e[blocks[j]].count++;
			e[blocks[j]].rank_sum += j;
		}
		free(blocks);
	}
	return 0;
}

int pgc_ws_merge(const char *image, const char *const *inputs, size_t n, const char *out,
		 size_t *bad)
{
	struct sf_image *img = NULL;
	struct merge_entry *e = NULL;
	uint32_t *order = NULL;
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
	order = calloc(img->nblocks ? img->nblocks : 1, sizeof(*order));
	if (!e || !order)
		goto exit;
	ret = merge_read(img, inputs, n, e, bad);
	if (ret)
		goto exit;
	for (b = 0; b < img->nblocks; b++) {
		if (!e[b].count)
			continue;
		e[m] = e[b];
		e[m++].block = (uint32_t)b;
	}
	qsort(e, m, sizeof(*e), cmp_entry);
	for (b = 0; b < m; b++)
		order[b] = e[b].block;
	/* Every input held at least one block: m > 0. */
	ret = sf_ws_write(out, img->identity, img->nblocks, order, m);
exit:
	free(order);
	free(e);
	sf_image_close(img);
	return ret;
}
