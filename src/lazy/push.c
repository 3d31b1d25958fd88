/* SPDX-License-Identifier: Apache-2.0 */
/*
 * push.c - the page server's push: between faults, place the pages the
 * consumer has not touched yet, but only those the loader has in memory
 * already (PGC_ACCESS_NOWAIT), so that a fault never waits behind it.
 * First the load's working set (pgc_load_working_set), in one burst with
 * one wake per region; then a few spans after the last fault (access is
 * local); then every region in memory-file offset order. server.c calls
 * lazy_push_step between faults and places each span (lazy_place_span).
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "lazy/server_int.h"
#include "util/util.h"

#define PUSH_NEAR       4        /* spans pushed from a fault's before the offset order */
#define WS_LOOKAHEAD    64       /* working-set ranges still loading a burst passes over */
#define WS_WAIT_NS      20000000 /* the push waits at most this long for the working set's next span */

/* The first clear bit of @b in [@from, @n), or @n. */
static uint64_t next_clear(const uint64_t *b, uint64_t from, uint64_t n)
{
	while (from < n) {
		uint64_t w = ~b[from / 64] >> (from % 64);

		if (w)
			return from + (uint64_t)__builtin_ctzll(w) < n ?
			       from + (uint64_t)__builtin_ctzll(w) : n;
		from = (from / 64 + 1) * 64;
	}
	return n;
}

/*
 * After a fault at page @p of @rg, the push goes on from the span that
 * holds it (its block is loaded now) for PUSH_NEAR spans: access is local.
 */
void lazy_push_near(struct session *s, struct region *rg, uint64_t p)
{
	uint64_t p0, p1;

	span_around(rg, p, s->o.push_bytes, &p0, &p1);
	s->near = rg;
	s->near_page = p0;
	s->near_left = PUSH_NEAR;
}

/*
 * Push the next span of @rg from page *@page on, if the loader has it
 * already: the push never waits for the loader, so a fault never waits
 * behind it. Returns 0 (a span placed, *@page past it), PUSH_END (nothing
 * left in @rg from *@page), PUSH_NOT_LOADED, PUSH_YIELD (part of the span
 * placed, *@page where it was), or as lazy_place_span.
 */
static int push_span(struct session *s, struct region *rg, uint64_t *page)
{
	uint64_t p = next_clear(rg->done, *page, rg->pages), p0, p1;
	int ret;

	if (p >= rg->pages)
		return PUSH_END;
	span_around(rg, p, s->o.push_bytes, &p0, &p1);
	ret = lazy_place_span(s, rg, p, p1, UINT64_MAX, true);
	if (!ret)
		*page = p1;
	return ret;
}

/*
 * The pages of the working-set range @w in @rg that are not placed yet,
 * in spans of push_bytes; *@placed is set once one is. Returns 0 (all
 * placed), PUSH_NOT_LOADED, PUSH_YIELD, or as lazy_place_span.
 */
static int push_ws_range(struct session *s, pgc_range w, struct region *rg, bool *placed)
{
	uint64_t lo = w.start > rg->offset ? w.start : rg->offset;
	uint64_t hi = w.end < rg->offset + rg->size ? w.end : rg->offset + rg->size;
	uint64_t p, p1, q0, q1, before;
	int ret;

	if (hi <= lo)
		return 0;
	p = (lo - rg->offset) / PAGE;
	p1 = (hi - rg->offset) / PAGE;
	while ((p = next_clear(rg->done, p, p1)) < p1) {
		span_around(rg, p, s->o.push_bytes, &q0, &q1);
		q1 = q1 < p1 ? q1 : p1;
		before = s->st->bytes_copied + s->st->bytes_zeroed;
		ret = lazy_place_span(s, rg, p, q1, UINT64_MAX, true);
		s->st->bytes_prefetched += s->st->bytes_copied + s->st->bytes_zeroed - before;
		if (s->st->bytes_copied + s->st->bytes_zeroed != before)
			*placed = true;
		if (ret)
			return ret;
		p = q1;
	}
	return 0;
}

/*
 * The load's working set (pgc_load_working_set), in its order, into every
 * region that maps it, in one burst: every range whose pages are loaded
 * now (one still loading is passed over, not waited for, up to
 * WS_LOOKAHEAD of them: the loader reads them in this order), each placed
 * without a wake (nobody waits for them: a fault on one arrives as a
 * message and is served), then one wake per region. Returns 0 (placed
 * some), PUSH_END (all placed), PUSH_NOT_LOADED (none loaded yet),
 * PUSH_YIELD, or as lazy_place_span.
 */
static int push_ws(struct session *s)
{
	bool placed = false, pending = false;
	size_t i, j, skipped = 0;
	uint64_t looked = s->st->bytes_prefetched;
	int ret = 0;

	s->ws_burst = true;
	for (i = s->ws_i; i < s->nws && !ret && skipped < WS_LOOKAHEAD; i++) {
		for (j = 0; j < s->nr && !ret; j++) {
			ret = push_ws_range(s, s->ws[i], &s->r[j], &placed);
			if (ret == PUSH_NOT_LOADED) {
				pending = true;
				skipped++;
				ret = 0;
			}
		}
		if (!ret && !pending)
			s->ws_i = i + 1;   /* everything up to here is placed */
		/*
		 * A fault goes first: look for one after each slice placed. Not
		 * after each range: a consumer touching the working set in its
		 * order faults on the page after the one just placed, so looking
		 * that often served every second page as a fault (251 faults for
		 * 400 pages), at a round trip each. A fault on a page of this
		 * burst is answered by its wake.
		 */
		if (!ret && s->st->bytes_prefetched - looked >= PUSH_SLICE * PAGE &&
		    i + 1 < s->nws) {
			looked = s->st->bytes_prefetched;
			if (msg_waiting(s)) {
				s->st->push_yields++;
				ret = PUSH_YIELD;
			}
		}
	}
	s->ws_burst = false;
	for (j = 0; placed && j < s->nr; j++) {
		struct uffdio_range w = { .start = s->r[j].base, .len = s->r[j].size };

		(void)ioctl(s->uffd, UFFDIO_WAKE, &w);
	}
	if (ret)
		return ret;
	if (placed)
		return 0;
	return s->ws_i < s->nws ? PUSH_NOT_LOADED : PUSH_END;
}

/*
 * One push step: the working set first, then the spans near the last
 * fault, then memory-file offset order; the first of them that is loaded.
 * Returns 0 (placed one span, or all are still loading: s->push_waiting),
 * 1 when nothing is left to push, else as lazy_place_span.
 */
int lazy_push_step(struct session *s)
{
	int ret;

	s->push_waiting = false;
	ret = push_ws(s);
	if (ret != PUSH_END && ret != PUSH_NOT_LOADED) {
		s->ws_wait_since = 0;
		return ret == PUSH_YIELD ? 0 : ret;
	}
	/*
	 * The loader reads the working set first, in this order: its next
	 * pages come soon, and pushing others meanwhile would only take the
	 * CPU from their decode. Waiting is bounded, in case they do not.
	 */
	if (ret == PUSH_NOT_LOADED) {
		uint64_t now = util_now_ns();

		if (!s->ws_wait_since)
			s->ws_wait_since = now;
		if (now - s->ws_wait_since < WS_WAIT_NS) {
			s->push_waiting = true;
			return 0;
		}
	}
	while (s->near_left) {
		ret = push_span(s, s->near, &s->near_page);
		if (ret == PUSH_END || ret == PUSH_NOT_LOADED) {
			/* A neighbour still loading is dropped: the offset order takes it. */
			s->near_left = 0;
			break;
		}
		if (!ret)
			s->near_left--;
		return ret == PUSH_YIELD ? 0 : ret;
	}
	while (s->push_i < s->nr) {
		ret = push_span(s, &s->r[s->order[s->push_i]], &s->push_page);
		if (ret == PUSH_END) {
			s->push_i++;
			s->push_page = 0;
			continue;
		}
		if (ret == PUSH_NOT_LOADED) {
			s->push_waiting = true;
			return 0;
		}
		return ret == PUSH_YIELD ? 0 : ret;
	}
	return 1;
}

/* The load's working set, to place first; none if it has none (or no memory). */
void lazy_load_ws(struct session *s)
{
	int n = pgc_load_working_set(s->mf, NULL, 0);

	if (n <= 0)
		return;
	s->ws = malloc((size_t)n * sizeof(*s->ws));
	if (s->ws && pgc_load_working_set(s->mf, s->ws, (size_t)n) == n)
		s->nws = (size_t)n;
}
