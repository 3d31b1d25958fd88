/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memfile.h - the inside of a MemoryFile (struct pgc_memfile), private to
 * src/alloc: allocation and mappings (memfile.c), reference counting
 * (refs.c), usage scans and accounting (usage.c), the reclaimer
 * (reclaim.c), evictions (evict.c) and installing and calling the
 * engine's hooks (hooks.c). The engine (src/engine) sees only
 * memfile_hooks.h.
 *
 * Lock order, complete for the library (each lock may be taken while
 * holding the ones above it, never the other way round):
 *
 *   mf->mu            usage, reclaim and evictable sets, accounting
 *   loader l->mu      the cancel hook (loader_cancel) runs under mf->mu
 *   mf->mappings_mu   mapping a chunk (memfile_chunk_base's slow path):
 *                     under mf->mu (growth, usage scans, manual zeroing
 *                     in pgc_allocate) and under l->mu (the loader maps
 *                     a read's destinations as it builds the read)
 *
 * These are leaves, taken with no other lock held: the loader's write_mu
 * (one pwrite at a time in background loads), the save engine's context
 * lock, and the aio thread pool's lock (aio_add takes no lock; the loader
 * calls aio_submit and aio_wait without l->mu). The wait, quiesce, stop
 * and destroy hooks are called with no lock held; no hook takes mf->mu.
 * Callbacks into the application run with no library lock held (reader,
 * eviction, progress and done callbacks), except pgc_for_each_segment's,
 * which runs under mf->mu and must not call back into the MemoryFile.
 * pgc_update_usage drops mf->mu around each mincore call; an eviction
 * thread drops it around each evict callback.
 */
#ifndef PGC_MEMFILE_H
#define PGC_MEMFILE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "memfile_hooks.h"
#include "pgckpt.h"
#include "rangeset.h"

#ifdef PGC_DEBUG
#include <assert.h>
#define PGC_ASSERT(cond) assert(cond)
#else
#define PGC_ASSERT(cond) ((void)0)
#endif

#define MF_CHUNK_SHIFT 30
#define MF_CHUNK_SIZE  PGC_CHUNK_SIZE
#define MF_CHUNK_MASK  (MF_CHUNK_SIZE - 1)
#define MF_HUGE_MASK   (PGC_HUGE_PAGE_SIZE - 1)
/* MF_PAGE_MASK is in memfile_hooks.h: the engine uses it too. */

/*
 * The value of a usage segment (gVisor's usageInfo). Compared field by
 * field (usage_ops.merge), so padding does not matter.
 */
struct usage_info {
	uint64_t refs;          /* 0: freed, waiting in the reclaim set */
	uint32_t memcg_id;
	uint8_t kind;           /* enum pgc_kind */
	bool known_committed;
};

/* Range-set operations of mf->usage. */
extern const struct rs_ops usage_ops;
/* Range-set operations of value-less sets (reclaim, evictable ranges). */
extern const struct rs_ops flag_ops;

/*
 * The chunk mapping table: chunk[i] is the address of the 1 GiB MAP_SHARED
 * mapping of chunk i, or 0. Read lock-free; replaced (never resized in
 * place) under mappings_mu when the file grows, and superseded tables are
 * kept on a list until destroy so lock-free readers never see freed memory.
 */
struct memfile_mappings {
	struct memfile_mappings *retired_next;
	size_t nchunks;
	_Atomic uintptr_t chunk[];
};

/* Committed bytes of one memcg id, by kind (usage.MemoryAccounting). */
struct memfile_acct {
	uint32_t memcg_id;
	uint64_t kind[PGC_KIND_COUNT];
};

struct evict_user;
struct evict_thread;

struct pgc_memfile {
	struct pgc_memfile_opts opts;   /* immutable after creation */
	int fd;
	bool readonly;                  /* fd opened O_RDONLY (adopt mode) */
	atomic_bool savable;            /* pgc_mark_savable was called */

	pthread_mutex_t mu;

	/* --- protected by mu ------------------------------------------ */
	struct rangeset usage;          /* struct usage_info per page */
	uint64_t usage_expected;        /* bytes known committed */
	uint64_t usage_swapped;         /* fstat blocks beyond what mincore saw */
	uint64_t usage_last_ns;         /* CLOCK_MONOTONIC start of last full scan */
	bool usage_scanned;             /* usage_last_ns is meaningful */

	struct memfile_acct *acct;      /* sorted by memcg_id */
	size_t nacct, acct_cap;

	bool destroyed;
	bool reclaimable;               /* reclaim may be non-empty */
	bool reclaim_rebuild;           /* reclaim lost ranges (ENOMEM): rebuild it */
	struct rangeset reclaim;        /* freed ranges waiting for the reclaimer */
	pthread_cond_t reclaim_cond;
	pthread_t reclaimer;
	bool reclaimer_started;

	struct evict_user **evict_buckets;  /* hash of users by pointer */
	size_t evict_nbuckets, evict_nusers;
	struct evict_thread *evict_threads; /* started threads, joined lazily */
	unsigned evictions_running;
	pthread_cond_t evict_cond;      /* evictions_running dropped to 0 */

	/* --- written under mu (and mappings_mu), read lock-free --------- */
	_Atomic uint64_t file_size;

	pthread_mutex_t mappings_mu;
	_Atomic(struct memfile_mappings *) mappings;
	struct memfile_mappings *retired;   /* under mappings_mu */

	/* PSI memory-pressure trigger (evict.c). */
	int psi_fd, psi_stop_fd;
	pthread_t psi_thread;
	bool psi_started;

	/*
	 * The engine filling the file (memfile_hooks.h): hooks is written
	 * once, under mu, before hook_ctx is published (release); a reader
	 * that sees hook_ctx (acquire) may call the hooks. NULL: none.
	 * Retired contexts (of failed loads) are kept, under mu, until
	 * destroy: a hook call that read hook_ctx before it was retired may
	 * still be running.
	 */
	const struct memfile_hooks *hooks;
	_Atomic(void *) hook_ctx;
	void **retired_ctx;             /* under mu; room for one more once installed */
	size_t nretired, retired_cap;
};

/* Whether @r is non-empty and page-aligned. */
static inline bool memfile_range_ok(pgc_range r)
{
	return r.start < r.end && !(r.start & MF_PAGE_MASK) && !(r.end & MF_PAGE_MASK);
}

/* ---- calling the hooks (memfile_hooks.h has their preconditions) ------- */

/* The installed hooks' context, or NULL. */
static inline void *memfile_hook_ctx(struct pgc_memfile *mf)
{
	return atomic_load_explicit(&mf->hook_ctx, memory_order_acquire);
}

/* The wait hook, for pgc_map_internal. Returns 0 or its error. */
static inline int memfile_hook_wait(struct pgc_memfile *mf, pgc_range r)
{
	void *ctx = memfile_hook_ctx(mf);

	return ctx ? mf->hooks->wait(ctx, r) : 0;
}

/* The ready hook, for PGC_ACCESS_NOWAIT. Returns 1 (nothing installed), 0 or an error. */
static inline int memfile_hook_ready(struct pgc_memfile *mf, pgc_range r)
{
	void *ctx = memfile_hook_ctx(mf);

	return ctx ? mf->hooks->ready(ctx, r) : 1;
}

/* The cancel hook, for pgc_decref. Caller holds mf->mu. */
static inline void memfile_hook_cancel_locked(struct pgc_memfile *mf, pgc_range r)
{
	void *ctx = memfile_hook_ctx(mf);

	if (ctx)
		mf->hooks->cancel(ctx, r);
}

/* The quiesce hook, for the reclaimer. Called without mf->mu. */
static inline void memfile_hook_quiesce(struct pgc_memfile *mf, pgc_range r)
{
	void *ctx = memfile_hook_ctx(mf);

	if (ctx)
		mf->hooks->quiesce(ctx, r);
}

/* hooks.c: the stop hook, then (once the threads are joined) destroy. */
void memfile_hooks_stop(struct pgc_memfile *mf);
void memfile_hooks_release(struct pgc_memfile *mf);

/* ---- memfile.c -------------------------------------------------------- */

/*
 * memfile_chunk_base - the address of chunk @chunk's mapping, mapping it
 * first if needed. Callable with or without mf->mu.
 * Returns 0, -EINVAL (chunk past the mapping table) or -errno from mmap.
 */
int memfile_chunk_base(struct pgc_memfile *mf, uint64_t chunk, uint8_t **base);

/*
 * memfile_grow_locked - grow the file to @new_size (ftruncate) and publish
 * a larger chunk mapping table if needed. Caller holds mf->mu.
 * Returns 0 or -errno; on failure nothing changed.
 */
int memfile_grow_locked(struct pgc_memfile *mf, uint64_t new_size);

/* memfile_decommit_file - punch a hole over @r. Returns 0 or -errno. */
int memfile_decommit_file(struct pgc_memfile *mf, pgc_range r);

/*
 * memfile_manually_zero - zero @r through the chunk mappings (for
 * manual_zeroing files). @r must lie inside the file. Returns 0 or -errno.
 */
int memfile_manually_zero(struct pgc_memfile *mf, pgc_range r);

/*
 * memfile_mark_decommitted_locked - after @r was decommitted: drop
 * known_committed (and its accounting) and the memcg id of every segment
 * in @r. Caller holds mf->mu. Returns 0 or -ENOMEM (a split failed;
 * nothing changed).
 */
int memfile_mark_decommitted_locked(struct pgc_memfile *mf, pgc_range r);

/* ---- usage.c ---------------------------------------------------------- */

/*
 * Accounting of committed bytes by (kind, memcg id); caller holds mf->mu.
 * memfile_acct_ensure makes sure an entry for @memcg_id exists, so that
 * later updates never allocate (returns 0 or -ENOMEM). inc/dec/move never
 * fail: an update for a missing entry that cannot be created is dropped.
 */
int memfile_acct_ensure(struct pgc_memfile *mf, uint32_t memcg_id);
void memfile_acct_inc(struct pgc_memfile *mf, uint64_t bytes, enum pgc_kind kind,
		      uint32_t memcg_id);
void memfile_acct_dec(struct pgc_memfile *mf, uint64_t bytes, enum pgc_kind kind,
		      uint32_t memcg_id);
void memfile_acct_move(struct pgc_memfile *mf, uint64_t bytes, enum pgc_kind to,
		       enum pgc_kind from, uint32_t memcg_id);

/* memfile_check_fn (the commit check of a usage scan) is in memfile_hooks.h. */

/*
 * memfile_update_usage_locked - gVisor's updateUsageLocked: scan the
 * segments (with refs > 0, and of the memcg ids @ids[0..n) unless @ids is
 * NULL) that are not known committed (and, if @also_scan_committed, those
 * that are) with @check (NULL: mincore), flip known_committed where the
 * answer differs, adjust the accounting and then the swap discrepancy
 * against @current_usage (fstat bytes). Caller holds mf->mu; it is dropped
 * around each @check call. Returns 0 or -errno.
 */
int memfile_update_usage_locked(struct pgc_memfile *mf, uint64_t current_usage,
				const uint32_t *ids, size_t n,
				bool also_scan_committed,
				memfile_check_fn check, void *arg);

/* ---- reclaim.c -------------------------------------------------------- */

/* memfile_reclaim_start - start the reclaimer thread. Returns 0 or -errno. */
int memfile_reclaim_start(struct pgc_memfile *mf);

/* memfile_reclaim_stop - set mf->destroyed and join the reclaimer thread. */
void memfile_reclaim_stop(struct pgc_memfile *mf);

/*
 * memfile_reclaim_add_locked - hand the freed range @r (refs 0, kind
 * SYSTEM in mf->usage) to the reclaimer. Caller holds mf->mu. Never fails:
 * if the reclaim set cannot grow, the reclaimer rebuilds it from the
 * usage set later.
 */
void memfile_reclaim_add_locked(struct pgc_memfile *mf, pgc_range r);

/* ---- evict.c ---------------------------------------------------------- */

/*
 * memfile_evict_init - set up eviction state and, when delayed eviction
 * waits for host memory pressure, the PSI trigger thread.
 * Returns 0 or -errno (-ENOENT/-EOPNOTSUPP when PSI is unavailable).
 */
int memfile_evict_init(struct pgc_memfile *mf);

/*
 * memfile_evict_fini - stop the PSI thread, wait for running evictions,
 * join eviction threads and free the evictable sets. Called without mu.
 */
void memfile_evict_fini(struct pgc_memfile *mf);

/*
 * memfile_start_evictions_locked - start an eviction thread for every
 * user with evictable ranges not already being evicted. Caller holds
 * mf->mu. Returns whether any was started.
 */
bool memfile_start_evictions_locked(struct pgc_memfile *mf);

#endif /* PGC_MEMFILE_H */
