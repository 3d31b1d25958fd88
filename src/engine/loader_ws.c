/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader_ws.c - working sets (REAP's record and prefetch): while a load
 * records, every block that pgc_map_internal or pgc_load_wait demands is
 * noted in the order it is first demanded (PGC_ACCESS_NOWAIT mappings,
 * the lazy server's push, are no demand); pgc_load_ws_write saves that
 * order as a working-set file (statefile/ws.c). A load given a working
 * set reads its blocks first, in order, right after the waiters' (a
 * demand still jumps ahead), and pgc_load_working_set tells a lazy server
 * which pages to place before its consumer asks. A working set that does
 * not decode (another image's, damaged, truncated, empty) is a hint only:
 * it is ignored and its error reported in the load's statistics.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "loader.h"
#include "loader_int.h"
#include "statefile/statefile.h"

int ld_ws_init(struct pgc_loader *l)
{
	struct ld_ws *ws = &l->ws;
	size_t words = (l->img->nblocks + 63) / 64;
	int ret;

	if (l->opts.record_working_set && l->img->nblocks) {
		ws->seen = calloc(words, sizeof(*ws->seen));
		ws->rec = malloc(l->img->nblocks * sizeof(*ws->rec));
		if (!ws->seen || !ws->rec)
			return -ENOMEM;
	}
	if (!l->opts.working_set)
		return 0;
	ret = sf_ws_read(l->opts.working_set, l->img->identity, l->img->nblocks, &ws->replay,
			 &ws->nreplay);
	if (ret == -ENOMEM)
		return ret;
	l->stats.working_set_error = ret;
	l->stats.working_set_blocks = ws->nreplay;
	return 0;
}

void ld_ws_free(struct pgc_loader *l)
{
	free((void *)l->ws.seen);
	free(l->ws.rec);
	free(l->ws.replay);
	pthread_mutex_destroy(&l->ws.mu);
}

/* The first block whose pages end after @off (nblocks if none). */
static uint32_t block_after(const struct sf_image *img, uint64_t off)
{
	uint32_t lo = 0, hi = (uint32_t)img->nblocks;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct sf_block *b = &img->blocks[mid];
		const struct sf_run *last = &img->runs[b->first_run + b->nruns - 1];

		if (last->off + last->len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Append block @b to the recording unless it is there already. */
static void note_block(struct ld_ws *ws, uint32_t b)
{
	_Atomic uint64_t *w = &ws->seen[b / 64];
	uint64_t bit = 1ULL << (b % 64);

	if (atomic_load_explicit(w, memory_order_relaxed) & bit)
		return;
	pthread_mutex_lock(&ws->mu);
	if (!(atomic_fetch_or_explicit(w, bit, memory_order_relaxed) & bit))
		ws->rec[ws->nrec++] = b;
	pthread_mutex_unlock(&ws->mu);
}

void ld_ws_note(struct pgc_loader *l, pgc_range r)
{
	const struct sf_image *img = l->img;
	uint32_t b;

	for (b = block_after(img, r.start); b < img->nblocks; b++) {
		const struct sf_block *sb = &img->blocks[b];

		if (img->runs[sb->first_run].off >= r.end)
			break;
		note_block(&l->ws, b);
	}
}

int64_t ld_ws_next_locked(struct pgc_loader *l)
{
	struct ld_ws *ws = &l->ws;

	while (ws->replay_next < ws->nreplay &&
	       l->bstate[ws->replay[ws->replay_next]] != BLK_UNSTARTED)
		ws->replay_next++;
	return ws->replay_next < ws->nreplay ? (int64_t)ws->replay[ws->replay_next] : -1;
}

int pgc_load_ws_write(pgc_memfile *mf, const char *path)
{
	struct pgc_loader *l;
	uint32_t *copy, n;
	int ret;

	if (!mf || !path)
		return -EINVAL;
	l = loader_of(mf);
	if (!l || !l->ws.seen)
		return -EINVAL;
	pthread_mutex_lock(&l->ws.mu);
	n = l->ws.nrec;
	copy = n ? malloc(n * sizeof(*copy)) : NULL;
	if (copy)
		memcpy(copy, l->ws.rec, n * sizeof(*copy));
	pthread_mutex_unlock(&l->ws.mu);
	if (!n)
		return -ENODATA;
	if (!copy)
		return -ENOMEM;
	ret = sf_ws_write(path, l->img->identity, l->img->nblocks, copy, n);
	free(copy);
	return ret;
}

int pgc_load_working_set(pgc_memfile *mf, pgc_range *out, size_t max)
{
	struct pgc_loader *l;
	size_t i, n = 0;

	if (!mf || (max && !out))
		return -EINVAL;
	l = loader_of(mf);
	for (i = 0; l && i < l->ws.nreplay; i++, n++) {
		const struct sf_block *sb = ld_blk(l, l->ws.replay[i]);
		const struct sf_run *first = &l->img->runs[sb->first_run];
		const struct sf_run *last = first + sb->nruns - 1;

		/* The block's extent, holes between its runs included. */
		if (n < max)
			out[n] = (pgc_range){ first->off, last->off + last->len };
	}
	return n > INT32_MAX ? -EOVERFLOW : (int)n;
}
