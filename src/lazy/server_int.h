/* SPDX-License-Identifier: Apache-2.0 */
/*
 * server_int.h - the inside of the page server, shared by its two files:
 * server.c (a session: the handoff's regions, faults, the uffd messages,
 * the serving loop, placing a span of pages) and push.c (what is placed
 * between faults, and in which order). One thread per session, no locks.
 */
#ifndef PGC_LAZY_SERVER_INT_H
#define PGC_LAZY_SERVER_INT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lazy/lazy.h"

#define PAGE            PGC_PAGE_SIZE
#define PUSH_END        1       /* push_span: nothing left in the region */
#define PUSH_NOT_LOADED 2       /* push_span: the next span is still loading */
#define PUSH_YIELD      3       /* lazy_place_span: a push stopped for a waiting fault */
#define PUSH_SLICE      16      /* pages a push places between looks for a fault */

struct region {
	uint64_t base;
	uint64_t size;
	uint64_t offset;
	uint64_t pages;
	uint64_t *done;     /* page placed, or nothing left to place (removed) */
	uint64_t *removed;  /* page removed by the consumer: serve zeros */
};

struct session {
	pgc_memfile *mf;
	struct pgc_lazy_serve_opts o;
	struct pgc_lazy_stats *st;
	int uffd;
	int datafd;          /* for SEEK_DATA / SEEK_HOLE on the memory file */
	bool own_datafd;
	int pidfd;           /* the peer process, when it is another one */
	struct region *r;    /* sorted by base */
	size_t nr;
	size_t *order;       /* region indices by memory-file offset: push order */
	size_t push_i;       /* the offset-order push: s->order[push_i], from push_page */
	uint64_t push_page;
	struct region *near; /* the push near the last fault, while near_left */
	uint64_t near_page;
	unsigned near_left;
	bool push_waiting;   /* the next span of the push is still loading */
	pgc_range *ws;       /* the load's working set, placed first (memory-file offsets) */
	size_t nws;
	size_t ws_i;         /* its first range not placed whole */
	bool ws_burst;       /* placing it: no wake per span (push_ws wakes once) */
	uint64_t record_until; /* recording window (lazy.record_ms): faults page by page, no push */
	uint64_t spin_ns;      /* look for a message this long before sleeping (lazy.spin_us) */
	uint64_t ws_wait_since; /* the push waits for the working set's next span since (ns) */
	uint64_t pages_total;
	uint64_t pages_done;
	unsigned char *act;  /* per-page actions of one span */
	uint64_t *stalled;   /* fault addresses to retry after EAGAIN */
	size_t nstalled;
	size_t stall_cap;
	uint64_t t0;
};

/* Whether a uffd message (a fault) is waiting to be read. */
static inline bool msg_waiting(const struct session *s)
{
	struct pollfd p = { .fd = s->uffd, .events = POLLIN };

	return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* The @span-aligned (in memory-file offsets) pages around page @p of @rg. */
static inline void span_around(const struct region *rg, uint64_t p, uint64_t span,
			       uint64_t *p0, uint64_t *p1)
{
	uint64_t off = rg->offset + p * PAGE;
	uint64_t cs = off & ~(span - 1), ce = cs + span;

	if (cs < rg->offset)
		cs = rg->offset;
	if (ce > rg->offset + rg->size)
		ce = rg->offset + rg->size;
	*p0 = (cs - rg->offset) / PAGE;
	*p1 = (ce - rg->offset) / PAGE;
}

/*
 * lazy_place_span - place the pages [@p0, @p1) of @rg that are not placed
 * yet, and page @force (or UINT64_MAX) even if it is marked placed; for a
 * push (@push), only if they are loaded. server.c.
 * Returns 0, PUSH_NOT_LOADED, PUSH_YIELD, -EAGAIN, -ESRCH or -errno.
 */
int lazy_place_span(struct session *s, struct region *rg, uint64_t p0, uint64_t p1,
		    uint64_t force, bool push);

/* lazy_push_near - after a fault at page @p of @rg, push near it next (push.c). */
void lazy_push_near(struct session *s, struct region *rg, uint64_t p);

/*
 * lazy_push_step - place the next span of the push (push.c). Returns 0
 * (one placed, or all still loading: s->push_waiting), 1 when nothing is
 * left to push, or as lazy_place_span.
 */
int lazy_push_step(struct session *s);

/* lazy_load_ws - the load's working set, for the push to place first (push.c). */
void lazy_load_ws(struct session *s);

#endif /* PGC_LAZY_SERVER_INT_H */
