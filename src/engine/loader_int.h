/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader_int.h - the inside of the page loader, shared by its two files:
 * loader.c (threads, picking reads, waiting, cancelling) and
 * loader_read.c (decoders; building reads, reading, checking and placing
 * blocks), and loader_ws.c (working sets).
 * Locking: everything marked "under mu" needs l->mu; see loader.c.
 */
#ifndef PGC_LOADER_INT_H
#define PGC_LOADER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "aio/aio.h"
#include "alloc/memfile_hooks.h"
#include "alloc/rangeset.h"
#include "loader.h"
#include "statefile/statefile.h"
#include "util/util.h"

enum { BLK_UNSTARTED = 0, BLK_STARTED, BLK_DONE };

/* Memory for compressed reads in flight. */
#define LOADER_BUFFER_BYTES (8u << 20)

/*
 * Blocks a waiter placed in part (ld_read_decode_first) that may wait for
 * a decode worker to end them at once; each holds a decoder (a block of
 * scratch) and its read's buffer meanwhile. The fill's workers yield the
 * CPU to the waiters, so under a storm of faults these would pile up, a
 * block's worth of memory each (measured: 50 MiB for 2000 random reads of
 * a 256 MiB image), allocated as the faults come. Past the limit a waiter
 * decodes its block whole (about 1 ms for 1 MiB).
 */
#define LD_PARTIAL_MAX 4

/* A decoder: a codec and, for zstd, one block of scratch (loader.c). */
struct ld_decoder {
	struct ld_decoder *next;        /* the pool of demand decoders (under mu) */
	struct sf_codec *codec;
	uint8_t *scratch;
};

/* One read in flight: consecutive blocks [b0, b1) of pages.img. */
struct ld_read {
	struct ld_read *next;           /* worker queue */
	struct ld_read *q_next, *q_prev;/* submitted to the aio queue (under mu) */
	uint32_t b0, b1;
	int fd;                         /* pages.img of the image storing them */
	uint64_t file_off, len;
	bool fill;                      /* started by the fill, not a waiter */
	bool ws;                        /* a block of the replayed working set */
	uint8_t *buf;                   /* zstd: the stored bytes */
	uint8_t *scratch;               /* raw: cancelled pages, each block its own */
	struct iovec *iov;              /* destinations, block after block */
	uint64_t *ioff;                 /* their file offsets (UINT64_MAX: scratch) */
	int niov;
	int *blk_iov;                   /* first iovec of each block, + end */
	int blk_first;                  /* first iovec of the block being built */
	int err;
	/* A demand's block placed in part (ld_read_decode_first), for a worker to end. */
	struct ld_decoder *dec;         /* its decoder, mid-block */
	size_t dec_pos;                 /* bytes of the block decoded so far */
	uint64_t early_lo, early_hi;    /* bytes of the block placed already */
	/*
	 * Set by the thread about to decode: a waiter's writes skip write_mu,
	 * so they never queue behind a (lower-priority) worker's.
	 */
	bool waiter_decodes;
};

/* A thread in loader_wait. */
struct ld_waiter {
	struct ld_waiter *next, *prev;
	pgc_range r;
	uint64_t cursor;                /* where the next unstarted piece may be */
};

/* The working set (loader_ws.c): recorded demands, and the one replayed. */
struct ld_ws {
	_Atomic uint64_t *seen;         /* recording: a bit per block first demanded */
	pthread_mutex_t mu;             /* recording: rec, nrec */
	uint32_t *rec;                  /* blocks in order of first demand */
	uint32_t nrec;
	uint64_t mem_pages;             /* pages of the memory the image restores */
	_Atomic uint64_t *pseen;        /* recording: a bit per page first demanded */
	uint64_t *prec;                 /* recording: pages in order of first demand (under mu) */
	uint64_t nprec;
	atomic_bool pages_by_faults;    /* a lazy server notes the exact pages it is asked for */
	uint32_t *replay;               /* the working set loaded first, in order */
	size_t nreplay;
	uint64_t *rpages;               /* the replayed pages, in order (none: blocks only) */
	size_t nrpages;
	size_t replay_next;             /* under l->mu: first entry not yet started */
};

struct loader {
	struct pgc_memfile *mf;
	struct sf_image *img;
	struct pgc_load_opts opts;
	struct aio_queue *q;
	int jobs;
	int fill_nice;                  /* background: the decode workers' nice increment */

	pthread_mutex_t mu;
	/*
	 * Background loads, and eager loads of a chain (many small pieces):
	 * one block's pwrites into the backing file at a time. The
	 * host serialises writes to one file anyway (tmpfs: the inode lock)
	 * and a worker waiting for the kernel's lock spins on a core the
	 * application could use; waiting here it sleeps. (Measured: -20%
	 * CPU, +3..5% wall time for a standalone image, whose eager loads
	 * keep the kernel's hand-off; a chain's: -7% CPU, and faster.)
	 */
	pthread_mutex_t write_mu;
	pthread_cond_t wait_cv;         /* waiters: pages loaded, or failure */
	pthread_cond_t loader_cv;       /* loader thread: new waiter, read decoded */
	pthread_cond_t work_cv;         /* workers: read queued, or stop */

	/* --- under mu ------------------------------------------------------ */
	struct rangeset unloaded;       /* value: uint32_t block index */
	uint8_t *bstate;                /* per block */
	uint32_t fill_next;             /* first block the fill has not passed */
	struct ld_waiter *waiters;      /* round-robin list */
	struct ld_waiter *rr;           /* whose turn it is */
	struct ld_read *work_head, *work_tail;
	struct ld_read *submitted;      /* in the aio queue, not yet reaped */
	uint8_t *arena;                 /* pool_cap read buffers of pool_size bytes */
	void **pool;                    /* the free ones */
	unsigned npool;
	unsigned pool_cap;              /* max_reads + the waiters' */
	size_t pool_size;
	unsigned max_reads;             /* reads in flight (buffers bound memory) */
	unsigned reads;                 /* reads started, not yet decoded */
	unsigned fill_reads;
	unsigned partials;              /* reads holding a decoder mid-block (LD_PARTIAL_MAX) */
	bool stopping;                  /* workers: exit when the queue is empty */
	bool ended;                     /* the loader thread has finished */
	int error;
	struct pgc_load_stats stats;
	uint64_t start_ns;
	uint64_t slow_block0_ns;        /* test hook: block 0 is decoded this late */
	struct ld_ws ws;
	struct ld_decoder *decoders;    /* free demand decoders */

	/* --- lock-free fast path -------------------------------------------- */
	_Atomic uint64_t lowest;        /* lowest unloaded offset (UINT64_MAX: none) */
	atomic_bool done;               /* loaded completely, or failed */
	atomic_bool use_pwrite;         /* decoded blocks go in with pwrite */
	atomic_int result;


	pthread_t thread;
	pthread_t *workers;
	int nworkers;
	bool thread_started;
};

/*
 * loader_install - install @l's hooks on @mf (loader_hooks.c): from then
 * on the MemoryFile calls loader_wait, loader_cancel, loader_quiesce,
 * loader_stop and loader_destroy as alloc/memfile_hooks.h describes.
 * Returns 0 or -ENOMEM (not installed).
 */
int loader_install(struct pgc_memfile *mf, struct loader *l);

/*
 * ld_ws_init - set up recording (opts.record_working_set) and read the
 * working set to replay (opts.working_set; one that does not decode is
 * ignored, its error in stats.working_set_error). Returns 0 or -ENOMEM.
 */
int ld_ws_init(struct loader *l);

/* ld_ws_free - free what ld_ws_init allocated and destroy ws.mu (loader_free). */
void ld_ws_free(struct loader *l);

/* ld_ws_note - record a demand for @r (loader_wait, when recording). Lock-free once seen. */
void ld_ws_note(struct loader *l, pgc_range r);

/* ld_ws_next_locked - the next unstarted block of the replay, or -1. Caller holds l->mu. */
int64_t ld_ws_next_locked(struct loader *l);

/* The index entry of block @b. */
static inline const struct sf_block *ld_blk(const struct loader *l, uint32_t b)
{
	return &l->img->blocks[b];
}

/*
 * Whether the decode workers pick and read for themselves (eager loads,
 * and any load from a pages source, whose reads block in the source)
 * rather than through the loader thread's aio queue.
 */
static inline bool ld_self_read(const struct loader *l)
{
	return !l->opts.background || l->opts.pages_source;
}

/*
 * The depth in the chain of the image whose pages.img @rd reads (0: the
 * image loaded), for a load from a pages source; -1 for a file read.
 */
static inline int ld_source_depth(const struct loader *l, const struct ld_read *rd)
{
	size_t d;

	if (!l->opts.pages_source)
		return -1;
	if (rd->fd == l->img->pages_fd)
		return 0;
	for (d = 0; d < l->img->nanc; d++)
		if (rd->fd == l->img->anc[d]->pages_fd)
			return (int)d + 1;
	return -1;
}

/* Whether @rd reads through the pages source. */
static inline bool ld_from_source(const struct loader *l, const struct ld_read *rd)
{
	return ld_source_depth(l, rd) >= 0;
}

/* Whether unloaded-set node @n is block @b's to load. */
static inline bool ld_node_is(rs_node *n, uint32_t b)
{
	return *(const uint32_t *)rs_value(n) == b;
}

/* Record the load's first error and wake everyone. Caller holds l->mu. */
static inline void ld_fail_locked(struct loader *l, int err)
{
	if (l->error)
		return;
	l->error = err;
	l->stats.error = err;
	pthread_cond_broadcast(&l->wait_cv);
	pthread_cond_broadcast(&l->loader_cv);
}

/* ld_decoder_new - a decoder of @l's blocks. Returns 0 and *@out, or -ENOMEM. */
int ld_decoder_new(const struct loader *l, struct ld_decoder **out);

/* ld_decoder_free - free @d (NULL is fine). */
void ld_decoder_free(struct ld_decoder *d);

/*
 * ld_decoder_get_locked, ld_decoder_put_locked - take a demand decoder
 * from l->decoders (NULL if none: the caller makes one) and give one
 * back (NULL is fine). Caller holds l->mu.
 */
struct ld_decoder *ld_decoder_get_locked(struct loader *l);
void ld_decoder_put_locked(struct loader *l, struct ld_decoder *d);

/* ld_decoders_free_locked - free the pool (the load has ended). Caller holds l->mu. */
void ld_decoders_free_locked(struct loader *l);

/*
 * ld_read_start_locked - start a read of blocks [b0, b1) (all
 * unstarted): mark them started, build their destinations, take a buffer.
 * Returns the read, or NULL after recording an error. Caller holds l->mu.
 */
struct ld_read *ld_read_start_locked(struct loader *l, uint32_t b0, uint32_t b1,
				     bool fill);

/*
 * ld_pool_init - map the read buffers, l->pool_cap of l->pool_size bytes,
 * in one mapping (its pages are touched as reads first use them).
 * Returns 0 or -ENOMEM.
 */
int ld_pool_init(struct loader *l);

/* ld_pool_free - unmap them (every read has ended); again, nothing. */
void ld_pool_free(struct loader *l);

/* ld_buf_put_locked - give @rd's buffer back to the pool. Caller holds l->mu. */
void ld_buf_put_locked(struct loader *l, struct ld_read *rd);

/* ld_read_free - free @rd (its buffer already returned); @rd may be NULL. */
void ld_read_free(struct ld_read *rd);

/*
 * ld_read_sync - read @rd synchronously (eager loads, demands, and every
 * read from a pages source), without l->mu.
 * Returns 0, -PGC_ETRUNCATED at a premature end of file, or -errno.
 */
int ld_read_sync(struct loader *l, struct ld_read *rd);

/*
 * ld_read_decode - check every block of @rd and place its pages, without
 * l->mu. @codec and @scratch (block_size bytes) are the worker's own.
 * Returns 0, -PGC_ECHECKSUM, -PGC_ECORRUPT or -errno.
 */
int ld_read_decode(struct loader *l, struct ld_read *rd, struct sf_codec *codec,
		   uint8_t *scratch);

/*
 * ld_read_decode_first - check and decode a waiter's read @rd (one block)
 * with @dec only as far as the pages of @want need, and place those
 * pages first: a zstd block placed with pwrite is decoded in parts, so a
 * waiter need not wait for its whole block (others are placed whole, as
 * ld_read_decode does). Without l->mu.
 * Returns 0 (every page placed), 1 (the pages of rd->early_lo..early_hi
 * placed; ld_read_decode_rest ends the block with @dec, which stays
 * mid-block meanwhile), or as ld_read_decode.
 */
int ld_read_decode_first(struct loader *l, struct ld_read *rd, pgc_range want,
			 struct ld_decoder *dec);

/*
 * ld_read_decode_rest - end the block of @rd that ld_read_decode_first
 * placed in part (with rd->dec): decode the rest and place every page
 * not placed yet. Without l->mu. Returns 0 or as ld_read_decode.
 */
int ld_read_decode_rest(struct loader *l, struct ld_read *rd);

#endif /* PGC_LOADER_INT_H */
