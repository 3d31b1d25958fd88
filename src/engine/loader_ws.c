/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader_ws.c - working sets (REAP's record and prefetch): while a load
 * records, every block and every page that pgc_map_internal or
 * pgc_load_wait demands is noted in the order it is first demanded
 * (PGC_ACCESS_NOWAIT mappings, the lazy server's push, are no demand;
 * of a lazy fault only the faulting page counts, not the range mapped
 * around it); pgc_load_ws_write saves that order as a working-set file
 * (statefile/ws.c). A load given a working set reads its blocks first, in
 * the order its pages were demanded, right after the waiters' (a demand
 * still jumps ahead), and pgc_load_working_set tells a lazy server which
 * pages to place before its consumer asks: exactly the recorded pages. A working set that does
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

/* The block that holds the page at @off, or -1 (a page between blocks: a hole or zeros). */
static int64_t block_of(const struct sf_image *img, uint64_t off)
{
	uint32_t b = block_after(img, off);

	if (b >= img->nblocks || img->runs[img->blocks[b].first_run].off > off)
		return -1;
	return b;
}

/*
 * Take @set as the replay: its pages as they are, its blocks in the order
 * of the first page each holds, then the blocks no page is in, as
 * recorded. Returns 0 or -ENOMEM (@set is freed either way).
 */
static int replay_order(struct loader *l, struct sf_ws *set)
{
	uint8_t *in = calloc(l->img->nblocks ? l->img->nblocks : 1, 1);
	uint32_t *order = malloc((l->img->nblocks ? l->img->nblocks : 1) * sizeof(*order));
	size_t i, n = 0;

	if (!in || !order) {
		free(in);
		free(order);
		sf_ws_free(set);
		return -ENOMEM;
	}
	for (i = 0; i < set->npages; i++) {
		int64_t b = block_of(l->img, set->pages[i] * PGC_PAGE_SIZE);

		if (b >= 0 && !in[b]) {
			in[b] = 1;
			order[n++] = (uint32_t)b;
		}
	}
	for (i = 0; i < set->n; i++) {
		if (!in[set->blocks[i]]) {
			in[set->blocks[i]] = 1;
			order[n++] = set->blocks[i];
		}
	}
	free(in);
	free(set->blocks);
	l->ws.replay = order;
	l->ws.nreplay = n;
	l->ws.rpages = set->pages;
	l->ws.nrpages = set->npages;
	return 0;
}

int ld_ws_init(struct loader *l)
{
	struct ld_ws *ws = &l->ws;
	size_t words = (l->img->nblocks + 63) / 64;
	struct sf_ws set;
	int ret;

	ws->mem_pages = sf_ws_mem_pages(l->img);
	if (l->opts.record_working_set && l->img->nblocks) {
		ws->seen = calloc(words, sizeof(*ws->seen));
		ws->rec = malloc(l->img->nblocks * sizeof(*ws->rec));
		ws->pseen = calloc(ws->mem_pages / 64 + 1, sizeof(*ws->pseen));
		ws->prec = malloc((ws->mem_pages ? ws->mem_pages : 1) * sizeof(*ws->prec));
		if (!ws->seen || !ws->rec || !ws->pseen || !ws->prec)
			return -ENOMEM;
	}
	if (!l->opts.working_set)
		return 0;
	ret = sf_ws_read_set(l->opts.working_set, l->img->identity, l->img->nblocks,
			     ws->mem_pages, &set);
	if (!ret)
		ret = replay_order(l, &set);
	if (ret == -ENOMEM)
		return ret;
	l->stats.working_set_error = ret;
	l->stats.working_set_blocks = ws->nreplay;
	return 0;
}

void ld_ws_free(struct loader *l)
{
	free((void *)l->ws.seen);
	free(l->ws.rec);
	free((void *)l->ws.pseen);
	free(l->ws.prec);
	free(l->ws.replay);
	free(l->ws.rpages);
	pthread_mutex_destroy(&l->ws.mu);
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

/* Append the page at @off to the recording unless it is there already. */
static void note_page(struct ld_ws *ws, uint64_t off)
{
	uint64_t p = off / PGC_PAGE_SIZE, bit = 1ULL << (p % 64);
	_Atomic uint64_t *w = &ws->pseen[p / 64];

	if (p >= ws->mem_pages || (atomic_load_explicit(w, memory_order_relaxed) & bit))
		return;
	pthread_mutex_lock(&ws->mu);
	if (!(atomic_fetch_or_explicit(w, bit, memory_order_relaxed) & bit))
		ws->prec[ws->nprec++] = p;
	pthread_mutex_unlock(&ws->mu);
}

int pgc_load_ws_demand(pgc_memfile *mf, uint64_t off)
{
	struct loader *l;

	if (!mf)
		return -EINVAL;
	l = loader_of(mf);
	if (!l || !l->ws.seen)
		return 0;
	if (off == UINT64_MAX)
		return 1;
	if (!atomic_load_explicit(&l->ws.pages_by_faults, memory_order_relaxed))
		atomic_store_explicit(&l->ws.pages_by_faults, true, memory_order_relaxed);
	note_page(&l->ws, off);
	return 1;
}

void ld_ws_note(struct loader *l, pgc_range r)
{
	const struct sf_image *img = l->img;
	uint64_t off;
	uint32_t b;

	/* A lazy server notes the faulting page itself, not the range around it. */
	if (!atomic_load_explicit(&l->ws.pages_by_faults, memory_order_relaxed)) {
		for (off = r.start; off < r.end; off += PGC_PAGE_SIZE)
			note_page(&l->ws, off);
	}

	for (b = block_after(img, r.start); b < img->nblocks; b++) {
		const struct sf_block *sb = &img->blocks[b];

		if (img->runs[sb->first_run].off >= r.end)
			break;
		note_block(&l->ws, b);
	}
}

int64_t ld_ws_next_locked(struct loader *l)
{
	struct ld_ws *ws = &l->ws;

	while (ws->replay_next < ws->nreplay &&
	       l->bstate[ws->replay[ws->replay_next]] != BLK_UNSTARTED)
		ws->replay_next++;
	return ws->replay_next < ws->nreplay ? (int64_t)ws->replay[ws->replay_next] : -1;
}

int pgc_load_ws_write(pgc_memfile *mf, const char *path)
{
	struct sf_ws set = { 0 };
	struct loader *l;
	int ret;

	if (!mf || !path)
		return -EINVAL;
	l = loader_of(mf);
	if (!l || !l->ws.seen)
		return -EINVAL;
	pthread_mutex_lock(&l->ws.mu);
	set.n = l->ws.nrec;
	set.npages = l->ws.nprec;
	set.blocks = set.n ? malloc(set.n * sizeof(*set.blocks)) : NULL;
	set.pages = set.npages ? malloc(set.npages * sizeof(*set.pages)) : NULL;
	if (set.blocks)
		memcpy(set.blocks, l->ws.rec, set.n * sizeof(*set.blocks));
	if (set.pages)
		memcpy(set.pages, l->ws.prec, set.npages * sizeof(*set.pages));
	pthread_mutex_unlock(&l->ws.mu);
	if (!set.n)
		ret = -ENODATA;
	else if (!set.blocks || (set.npages && !set.pages))
		ret = -ENOMEM;
	else
		ret = sf_ws_write_set(path, l->img->identity, l->img->nblocks, l->ws.mem_pages,
				      &set);
	sf_ws_free(&set);
	return ret;
}

/* The replayed pages as ranges in their order, consecutive pages in one. */
static int page_runs(const struct ld_ws *ws, pgc_range *out, size_t max)
{
	uint64_t end = 0;
	size_t i, n = 0;

	for (i = 0; i < ws->nrpages; i++) {
		uint64_t off = ws->rpages[i] * PGC_PAGE_SIZE;

		if (n && end == off) {
			end += PGC_PAGE_SIZE;
			if (n <= max)
				out[n - 1].end = end;
			continue;
		}
		end = off + PGC_PAGE_SIZE;
		if (n < max)
			out[n] = (pgc_range){ off, end };
		n++;
	}
	return n > INT32_MAX ? -EOVERFLOW : (int)n;
}

int pgc_load_working_set(pgc_memfile *mf, pgc_range *out, size_t max)
{
	struct loader *l;
	size_t i, n = 0;

	if (!mf || (max && !out))
		return -EINVAL;
	l = loader_of(mf);
	if (l && l->ws.nrpages)
		return page_runs(&l->ws, out, max);
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
