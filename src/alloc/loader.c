/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader.c - the page loader: fills a MemoryFile from an image, eagerly
 * or in the background (gVisor's async page loading, with random access
 * into compressed images).
 *
 * What is not loaded yet lives in a range set keyed by memory-file offset
 * whose value is the index of the block holding those pages. A block is
 * the unit of I/O (what a checksum covers and zstd decodes); each block
 * is unstarted, started or finished. Three kinds of thread cooperate:
 *
 * - the loader thread picks blocks, reads them through the aio queue and
 *   hands completed reads to the decode workers. Waiters come first,
 *   served round-robin one read each per turn, so one huge wait cannot
 *   starve a small one; then the fill goes on in offset order, merging
 *   consecutive blocks into reads of up to max_read bytes and max_iovecs
 *   iovecs. In background mode the fill keeps only jobs + 1 reads in
 *   flight, so a waiter's read never queues behind a deep fill.
 *   Compressed reads land in recycled buffers, 8 MiB in flight at most.
 * - decode workers take waiters' reads before the fill's, check each
 *   block's checksum and decode it straight
 *   into the mapping (raw blocks were read straight into it), populating
 *   the destination in bulk first; then they drop the block's pages from
 *   the unloaded set and wake waiters.
 * - waiters (pgc_map_internal) name the range they need and sleep until
 *   no unloaded page intersects it; once everything is loaded a lock-free
 *   check (the lowest unloaded offset, the done flag) lets them through.
 *
 * Pages whose block has not started can be cancelled (pgc_decref); their
 * bytes are then decoded into scratch memory. Started pages are waited
 * for by the reclaimer (loader_quiesce) before it punches them out.
 * The first error (read error, short read, checksum or decode failure) is
 * recorded once: every waiter wakes with it, no new read starts, and the
 * loader drains what is in flight and stops.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "aio/aio.h"
#include "engine.h"
#include "loader.h"
#include "memfile.h"
#include "statefile/statefile.h"

enum { BLK_UNSTARTED = 0, BLK_STARTED, BLK_DONE };

/* Memory for compressed reads in flight. */
#define LOADER_BUFFER_BYTES (8u << 20)

/* One read in flight: consecutive blocks [b0, b1) of pages.img. */
struct ld_read {
	struct ld_read *next;           /* worker queue */
	uint32_t b0, b1;
	uint64_t file_off, len;
	bool fill;                      /* started by the fill, not a waiter */
	uint8_t *buf;                   /* zstd: the stored bytes */
	uint8_t *scratch;               /* raw: destination of cancelled pages */
	struct iovec *iov;              /* destinations, block after block */
	uint64_t *ioff;                 /* their file offsets (UINT64_MAX: scratch) */
	int niov;
	int *blk_iov;                   /* first iovec of each block, + end */
	int blk_first;                  /* first iovec of the block being built */
	int err;
};

/* A thread in loader_wait. */
struct ld_waiter {
	struct ld_waiter *next, *prev;
	pgc_range r;
	uint64_t cursor;                /* where the next unstarted piece may be */
};

struct pgc_loader {
	struct pgc_memfile *mf;
	struct sf_image *img;
	struct pgc_load_opts opts;
	struct aio_queue *q;
	int jobs;

	pthread_mutex_t mu;
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
	void **pool;                    /* free read buffers of pool_size bytes */
	unsigned npool;
	size_t pool_size;
	unsigned max_reads;             /* reads in flight (buffers bound memory) */
	unsigned reads;                 /* reads started, not yet decoded */
	unsigned fill_reads;
	bool stopping;                  /* workers: exit when the queue is empty */
	bool ended;                     /* the loader thread has finished */
	int error;
	struct pgc_load_stats stats;
	uint64_t start_ns;

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

static const struct rs_ops block_ops = { .value_size = sizeof(uint32_t) };

/* ---- small helpers (caller holds l->mu) --------------------------------- */

static void update_lowest_locked(struct pgc_loader *l)
{
	rs_node *n = rs_first(&l->unloaded);

	atomic_store_explicit(&l->lowest, n ? rs_range(n).start : UINT64_MAX,
			      memory_order_release);
}

static void fail_locked(struct pgc_loader *l, int err)
{
	if (l->error)
		return;
	l->error = err;
	l->stats.error = err;
	pthread_cond_broadcast(&l->wait_cv);
	pthread_cond_broadcast(&l->loader_cv);
}

static bool range_pending_locked(struct pgc_loader *l, pgc_range r)
{
	rs_node *n = rs_lower_bound(&l->unloaded, r.start);

	return n && rs_range(n).start < r.end;
}

static const struct sf_block *blk(const struct pgc_loader *l, uint32_t b)
{
	return &l->img->blocks[b];
}

/* ---- building reads ------------------------------------------------------ */

/*
 * Append one destination (@len bytes at @base, file offset @off or
 * UINT64_MAX for scratch) to @rd, growing its arrays as needed.
 * Returns 0 or -ENOMEM.
 */
static int push_iov(struct ld_read *rd, int *cap, void *base, size_t len, uint64_t off)
{
	int last = rd->niov - 1;

	if (!len)
		return 0;
	/* Merge with the previous iovec, but never across blocks. */
	if (rd->niov > rd->blk_first &&
	    (uint8_t *)rd->iov[last].iov_base + rd->iov[last].iov_len == (uint8_t *)base &&
	    (off == UINT64_MAX ? rd->ioff[last] == UINT64_MAX
			       : rd->ioff[last] + rd->iov[last].iov_len == off)) {
		rd->iov[last].iov_len += len;
		return 0;
	}
	if (rd->niov == *cap) {
		int ncap = *cap ? *cap * 2 : 16;
		struct iovec *n = realloc(rd->iov, (size_t)ncap * sizeof(*n));
		uint64_t *o;

		if (!n)
			return -ENOMEM;
		rd->iov = n;
		o = realloc(rd->ioff, (size_t)ncap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		rd->ioff = o;
		*cap = ncap;
	}
	rd->iov[rd->niov].iov_base = base;
	rd->iov[rd->niov].iov_len = len;
	rd->ioff[rd->niov] = off;
	rd->niov++;
	return 0;
}

/*
 * Destinations of block @b, appended to @rd: its pages still in the
 * unloaded set go to the mapping, cancelled ones to @scratch (at the same
 * offset within the block). Returns 0 or -errno.
 */
static int block_dests_locked(struct pgc_loader *l, struct ld_read *rd, int *cap,
			      uint32_t b, uint8_t *scratch)
{
	const struct sf_block *sb = blk(l, b);
	uint64_t pos = 0;
	uint32_t i;
	int ret;

	for (i = 0; i < sb->nruns; i++) {
		const struct sf_run *run = &l->img->runs[sb->first_run + i];
		uint64_t at = run->off, end = run->off + run->len;
		rs_node *n = rs_lower_bound(&l->unloaded, at);

		while (at < end) {
			uint64_t upto = end;
			bool present = false;

			if (n && rs_range(n).start <= at) {
				upto = rs_range(n).end < end ? rs_range(n).end : end;
				present = true;
			} else if (n && rs_range(n).start < end) {
				upto = rs_range(n).start;
			}
			if (present) {
				struct iovec v[2];
				int k, nv = memfile_map(l->mf, (pgc_range){ at, upto },
							PGC_ACCESS_WRITE, v, 2);

				if (nv < 0)
					return nv;
				for (k = 0; k < nv; k++) {
					ret = push_iov(rd, cap, v[k].iov_base, v[k].iov_len,
						       k ? at + v[0].iov_len : at);
					if (ret)
						return ret;
				}
				n = rs_next(n);
			} else {
				/*
				 * Cancelled pages: raw blocks read them into the
				 * read's scratch; zstd blocks record their offset in
				 * the block, rebased on a worker's scratch at decode.
				 */
				uint64_t o = pos + (at - run->off);
				void *base = scratch ? (void *)(scratch + o) : (void *)(uintptr_t)o;

				ret = push_iov(rd, cap, base, upto - at, UINT64_MAX);
				if (ret)
					return ret;
			}
			at = upto;
		}
		pos += run->len;
	}
	return 0;
}

/*
 * Read buffers are recycled: a fresh malloc of this size is a fresh
 * mmap, and faulting its pages in costs more than the read itself.
 */
static void *buf_get_locked(struct pgc_loader *l, size_t len)
{
	/* Page-aligned: raw reads may use O_DIRECT. */
	if (len > l->pool_size)
		return aligned_alloc(PGC_PAGE_SIZE, (len + MF_PAGE_MASK) & ~MF_PAGE_MASK);
	if (l->npool)
		return l->pool[--l->npool];
	return aligned_alloc(PGC_PAGE_SIZE, l->pool_size);
}

static void buf_put_locked(struct pgc_loader *l, struct ld_read *rd)
{
	if (rd->buf && rd->len <= l->pool_size && l->npool < l->max_reads)
		l->pool[l->npool++] = rd->buf;
	else
		free(rd->buf);
	rd->buf = NULL;
}

static void read_free(struct ld_read *rd)
{
	if (!rd)
		return;
	free(rd->buf);
	free(rd->scratch);
	free(rd->iov);
	free(rd->ioff);
	free(rd->blk_iov);
	free(rd);
}

/* Whether every page of block @b is still wanted (nothing cancelled). */
static bool block_whole_locked(struct pgc_loader *l, uint32_t b)
{
	const struct sf_block *sb = blk(l, b);
	uint32_t i;

	for (i = 0; i < sb->nruns; i++) {
		const struct sf_run *run = &l->img->runs[sb->first_run + i];

		if (!rs_covered(&l->unloaded, (pgc_range){ run->off, run->off + run->len }))
			return false;
	}
	return true;
}

/*
 * Start a read of blocks [b0, b1) (all unstarted): mark them started and
 * build their destinations. Returns the read, or NULL after recording an
 * error.
 */
static struct ld_read *read_start_locked(struct pgc_loader *l, uint32_t b0, uint32_t b1,
					 bool fill)
{
	bool raw = l->img->compress == PGC_COMPRESS_NONE;
	struct ld_read *rd = calloc(1, sizeof(*rd));
	int cap = 0, ret = -ENOMEM;
	uint32_t b;

	if (!rd)
		goto fail;
	rd->b0 = b0;
	rd->b1 = b1;
	rd->fill = fill;
	rd->file_off = blk(l, b0)->file_off;
	rd->len = blk(l, b1 - 1)->file_off + blk(l, b1 - 1)->stored_len - rd->file_off;
	rd->blk_iov = calloc(b1 - b0 + 1, sizeof(*rd->blk_iov));
	if (!rd->blk_iov)
		goto fail;
	/* Raw blocks are read straight into the mapping unless pwritten. */
	if (!raw || atomic_load_explicit(&l->use_pwrite, memory_order_relaxed)) {
		rd->buf = buf_get_locked(l, rd->len);
		if (!rd->buf)
			goto fail;
	}
	for (b = b0; b < b1; b++) {
		rd->blk_iov[b - b0] = rd->blk_first = rd->niov;
		if (raw && !rd->buf && !rd->scratch && !block_whole_locked(l, b)) {
			/* Page-aligned: pages.img may be open with O_DIRECT. */
			rd->scratch = aligned_alloc(PGC_PAGE_SIZE, l->img->block_size);
			if (!rd->scratch)
				goto fail;
		}
		/* zstd blocks decode into a worker's own scratch when cancelled. */
		ret = block_dests_locked(l, rd, &cap, b, rd->scratch);
		if (ret)
			goto fail;
		l->bstate[b] = BLK_STARTED;
	}
	rd->blk_iov[b1 - b0] = rd->niov;
	l->reads++;
	if (fill)
		l->fill_reads++;
	return rd;
fail:
	if (rd)
		buf_put_locked(l, rd);
	read_free(rd);
	fail_locked(l, ret);
	return NULL;
}

/* The block holding the first unstarted page of @w's range, or -1. */
static int64_t waiter_next_block_locked(struct pgc_loader *l, struct ld_waiter *w)
{
	rs_node *n = rs_lower_bound(&l->unloaded, w->cursor);

	for (; n && rs_range(n).start < w->r.end; n = rs_next(n)) {
		uint32_t b = *(uint32_t *)rs_value(n);

		if (l->bstate[b] == BLK_UNSTARTED) {
			w->cursor = rs_range(n).start;
			return b;
		}
	}
	w->cursor = w->r.end;
	return -1;
}

/*
 * Pick the next read: a waiter's (round-robin), else the fill's. Returns
 * a started read or NULL (nothing to do now, or an error was recorded).
 */
static struct ld_read *pick_locked(struct pgc_loader *l, unsigned max_reads)
{
	struct ld_waiter *w, *first;
	uint32_t b0, b1;
	uint64_t bytes;
	int iovs;

	if (l->reads >= max_reads)
		return NULL;
	/* Waiters first: one block per waiter per turn. */
	first = l->rr ? l->rr : l->waiters;
	for (w = first; w;) {
		int64_t b = waiter_next_block_locked(l, w);

		w = w->next ? w->next : l->waiters;
		if (b >= 0) {
			l->rr = w;
			return read_start_locked(l, (uint32_t)b, (uint32_t)b + 1, false);
		}
		if (w == first)
			break;
	}
	/* The fill: in offset order, merging consecutive unstarted blocks. */
	/*
	 * In the background, the fill keeps just enough reads in flight to
	 * feed the decode workers, so that a waiter's read never queues
	 * behind a deep fill.
	 */
	if (!l->opts.background || l->fill_reads < (unsigned)l->jobs + 1) {
		while (l->fill_next < l->img->nblocks && l->bstate[l->fill_next] != BLK_UNSTARTED)
			l->fill_next++;
		if (l->fill_next >= l->img->nblocks)
			return NULL;
		b0 = b1 = l->fill_next;
		bytes = 0;
		iovs = 0;
		do {
			const struct sf_block *sb = blk(l, b1);

			if (b1 > b0 && (bytes + sb->stored_len > l->opts.max_read ||
					iovs + (int)sb->nruns > (int)l->opts.max_iovecs ||
					sb->file_off != blk(l, b1 - 1)->file_off + blk(l, b1 - 1)->stored_len))
				break;
			bytes += sb->stored_len;
			iovs += (int)sb->nruns;
			b1++;
		} while (b1 < l->img->nblocks && l->bstate[b1] == BLK_UNSTARTED);
		l->fill_next = b1;
		return read_start_locked(l, b0, b1, true);
	}
	return NULL;
}

/* ---- decode workers ------------------------------------------------------ */

/* Check and decode every block of @rd. Returns 0 or the first error. */
/* pwrite all of @len bytes. Returns 0 or -errno. */
static int pwrite_full(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -EIO;
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/*
 * Place block @sb (stored bytes at @src, in memory) at its destinations
 * @iov/@ioff[0..n). Into a file the host can write (tmpfs, disk), a zstd
 * block is decoded into @scratch (a raw one is used where it is) and
 * pwritten: the host allocates the pages without page-table work, which
 * on VMs costs more than the copy. Where pwrite does not work
 * (hugetlbfs), zstd blocks are decoded straight into the mapping,
 * populated in bulk first, and raw ones copied into it.
 */
static int place_block(struct pgc_loader *l, const struct sf_block *sb, const uint8_t *src,
		       struct iovec *iov, const uint64_t *ioff, int n,
		       struct sf_codec *codec, uint8_t *scratch)
{
	uint64_t pos = 0;
	int i, ret;

	if (l->img->compress == PGC_COMPRESS_NONE) {
		/* Raw: the stored bytes are the pages; check them, then place them. */
		if (sf_checksum(src, sb->stored_len) != sb->checksum)
			return -PGC_ECHECKSUM;
		scratch = (uint8_t *)src;
	}
	if (l->img->compress == PGC_COMPRESS_NONE ||
	    atomic_load_explicit(&l->use_pwrite, memory_order_relaxed)) {
		struct iovec whole = { scratch, sb->mem_len };

		if (l->img->compress != PGC_COMPRESS_NONE) {
			ret = sf_block_decode(codec, sb, src, &whole, 1);
			if (ret)
				return ret;
		}
		bool pw = atomic_load_explicit(&l->use_pwrite, memory_order_relaxed);

		for (i = 0; i < n; pos += iov[i].iov_len, i++) {
			if (ioff[i] == UINT64_MAX)
				continue;   /* cancelled */
			if (pw) {
				ret = pwrite_full(l->mf->fd, scratch + pos, iov[i].iov_len, ioff[i]);
				if (!ret)
					continue;
				if (ret != -EINVAL && ret != -EOPNOTSUPP && ret != -ENOTSUP)
					return ret;
				/* No write(2) here: use the mapping from now on. */
				atomic_store_explicit(&l->use_pwrite, false, memory_order_relaxed);
				pw = false;
			}
			memcpy(iov[i].iov_base, scratch + pos, iov[i].iov_len);
		}
		return 0;
	}
	/* Cancelled pieces were left NULL-based: point them at scratch. */
	for (i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)iov[i].iov_base;

		if (a < l->img->block_size)
			iov[i].iov_base = scratch + a;
		else
			engine_populate(iov[i].iov_base, iov[i].iov_len);
	}
	return sf_block_decode(codec, sb, src, iov, n);
}

/* Check and decode every block of @rd. Returns 0 or the first error. */
static int read_decode(struct pgc_loader *l, struct ld_read *rd, struct sf_codec *codec,
		       uint8_t *scratch)
{
	bool raw = l->img->compress == PGC_COMPRESS_NONE;
	uint32_t b;
	int ret;

	for (b = rd->b0; b < rd->b1; b++) {
		const struct sf_block *sb = blk(l, b);
		int first = rd->blk_iov[b - rd->b0];
		int n = rd->blk_iov[b - rd->b0 + 1] - first;

		if (raw && !rd->buf) {
			/* Read straight into the mapping: check it there. */
			if (sf_checksum_iov(rd->iov + first, n) != sb->checksum)
				return -PGC_ECHECKSUM;
			continue;
		}
		ret = place_block(l, sb, rd->buf + (sb->file_off - rd->file_off), rd->iov + first,
				  rd->ioff + first, n, codec, scratch);
		if (ret)
			return ret;
	}
	return 0;
}

/* Drop the pages of @rd's blocks from the unloaded set and wake waiters. */
static void read_finish_locked(struct pgc_loader *l, struct ld_read *rd)
{
	uint32_t b, i;

	for (b = rd->b0; b < rd->b1; b++) {
		const struct sf_block *sb = blk(l, b);

		for (i = 0; i < sb->nruns; i++) {
			const struct sf_run *run = &l->img->runs[sb->first_run + i];
			pgc_range r = { run->off, run->off + run->len };
			rs_node *n = rs_lower_bound(&l->unloaded, r.start);

			/* Only this block's nodes (cancels never split a started block). */
			while (n && rs_range(n).start < r.end) {
				pgc_range nr = rs_range(n);

				l->stats.bytes_loaded += nr.end - nr.start;
				n = rs_remove(&l->unloaded, n);
			}
		}
		l->bstate[b] = BLK_DONE;
	}
	update_lowest_locked(l);
	l->reads--;
	if (rd->fill)
		l->fill_reads--;
	pthread_cond_broadcast(&l->wait_cv);
	pthread_cond_signal(&l->loader_cv);
}

/*
 * Read @rd synchronously (eager loads): into its buffer, or for raw
 * blocks straight into the mapping after populating it in bulk.
 * Returns 0, -PGC_ETRUNCATED at a premature end of file, or -errno.
 */
static int read_sync(struct pgc_loader *l, struct ld_read *rd)
{
	int fd = l->img->pages_fd, i = 0;
	uint64_t done = 0, skip;
	ssize_t n;

	if (rd->buf) {
		while (done < rd->len) {
			n = pread(fd, rd->buf + done, rd->len - done, (off_t)(rd->file_off + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return n ? -errno : -PGC_ETRUNCATED;
			done += (uint64_t)n;
		}
		return 0;
	}
	for (i = 0; i < rd->niov; i++)
		engine_populate(rd->iov[i].iov_base, rd->iov[i].iov_len);
	/* One preadv; a short one is finished iovec by iovec. */
	n = preadv(fd, rd->iov, rd->niov < IOV_MAX ? rd->niov : IOV_MAX, (off_t)rd->file_off);
	done = n > 0 ? (uint64_t)n : 0;
	for (i = 0, skip = done; i < rd->niov; i++) {
		uint8_t *base = rd->iov[i].iov_base;
		uint64_t len = rd->iov[i].iov_len, at;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		for (at = skip, skip = 0; at < len;) {
			n = pread(fd, base + at, len - at, (off_t)(rd->file_off + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return n ? -errno : -PGC_ETRUNCATED;
			at += (uint64_t)n;
			done += (uint64_t)n;
		}
	}
	return 0;
}

static void *worker_main(void *arg)
{
	struct pgc_loader *l = arg;
	struct sf_codec *codec = NULL;
	uint8_t *scratch = NULL;
	struct ld_read *rd;
	int ret;

	ret = sf_codec_new(l->img->compress, 0, &codec);
	if (!ret && l->img->compress != PGC_COMPRESS_NONE) {
		scratch = malloc(l->img->block_size);
		if (!scratch)
			ret = -ENOMEM;
	}
	pthread_mutex_lock(&l->mu);
	if (ret)
		fail_locked(l, ret);
	for (;;) {
		rd = NULL;
		for (;;) {
			if (l->work_head) {
				rd = l->work_head;
				l->work_head = rd->next;
				if (!l->work_head)
					l->work_tail = NULL;
				break;
			}
			if (l->stopping)
				break;
			/*
			 * Eager loads read for themselves: no hand-offs, each
			 * worker reading and decoding on its own core.
			 */
			if (!l->opts.background && !l->error &&
			    (rd = pick_locked(l, l->max_reads)) != NULL) {
				pthread_mutex_unlock(&l->mu);
				rd->err = read_sync(l, rd);
				pthread_mutex_lock(&l->mu);
				break;
			}
			pthread_cond_wait(&l->work_cv, &l->mu);
		}
		if (!rd)
			break;
		ret = rd->err;
		if (!ret && !l->error && codec) {
			pthread_mutex_unlock(&l->mu);
			ret = read_decode(l, rd, codec, scratch);
			pthread_mutex_lock(&l->mu);
		}
		if (ret)
			fail_locked(l, ret);
		if (!ret && !l->error) {
			read_finish_locked(l, rd);
		} else {
			l->reads--;
			if (rd->fill)
				l->fill_reads--;
			pthread_cond_signal(&l->loader_cv);
		}
		buf_put_locked(l, rd);
		pthread_mutex_unlock(&l->mu);
		read_free(rd);
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	free(scratch);
	sf_codec_free(codec);
	return NULL;
}

/* ---- the loader thread --------------------------------------------------- */

static int read_submit(struct pgc_loader *l, struct ld_read *rd)
{
	struct aio_req req = { .id = (uintptr_t)rd, .fd = l->img->pages_fd, .off = rd->file_off };

	if (rd->buf) {
		req.op = AIO_OP_READ;
		req.buf = rd->buf;
		req.len = rd->len;
	} else {
		req.op = AIO_OP_READV;
		req.iov = rd->iov;
		req.len = (size_t)rd->niov;
	}
	return aio_add(l->q, &req);
}

/* Hand a completed read to the decode workers; a waiter's read goes first. */
static void queue_work_locked(struct pgc_loader *l, struct ld_read *rd)
{
	if (!rd->fill) {
		rd->next = l->work_head;
		l->work_head = rd;
		if (!l->work_tail)
			l->work_tail = rd;
	} else {
		rd->next = NULL;
		if (l->work_tail)
			l->work_tail->next = rd;
		else
			l->work_head = rd;
		l->work_tail = rd;
	}
	pthread_cond_signal(&l->work_cv);
}

static void report_progress(struct pgc_loader *l, uint64_t *last_ns)
{
	uint64_t now = engine_now_ns(), done;

	if (!l->opts.progress || now - *last_ns < 100000000ull)
		return;
	*last_ns = now;
	pthread_mutex_lock(&l->mu);
	done = l->stats.bytes_loaded + l->stats.bytes_cancelled;
	pthread_mutex_unlock(&l->mu);
	l->opts.progress(l->opts.progress_arg, done, l->stats.bytes_total);
}

static void *loader_main(void *arg)
{
	struct pgc_loader *l = arg;
	struct aio_completion comp[64];
	unsigned cap = l->max_reads;
	uint64_t last_ns = 0;
	int n, i, ret;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		struct ld_read *rd;
		unsigned added = 0;

		/* Start what may be started. */
		/* Background loads read here; eager workers read for themselves. */
		while (l->q && !l->error && aio_inflight(l->q) + added < cap &&
		       (rd = pick_locked(l, cap)) != NULL) {
			ret = read_submit(l, rd);
			if (ret) {
				fail_locked(l, ret);
				l->reads--;
				if (rd->fill)
					l->fill_reads--;
				buf_put_locked(l, rd);
				read_free(rd);
				break;
			}
			added++;
		}
		if (l->reads == 0 && (l->error || rs_empty(&l->unloaded)))
			break;
		if (added || (l->q && aio_inflight(l->q))) {
			pthread_mutex_unlock(&l->mu);
			ret = added ? aio_submit(l->q) : 0;
			n = ret ? ret : aio_wait(l->q, 1, comp, 64);
			pthread_mutex_lock(&l->mu);
			if (n < 0) {
				/* The queue is unusable: nothing more can complete. */
				fail_locked(l, n);
				l->reads -= aio_inflight(l->q);
				break;
			}
			for (i = 0; i < n; i++) {
				rd = (struct ld_read *)(uintptr_t)comp[i].id;
				if (comp[i].res < 0)
					rd->err = (int)comp[i].res;
				else if ((uint64_t)comp[i].res != rd->len)
					rd->err = -PGC_ETRUNCATED;
				queue_work_locked(l, rd);
			}
		} else {
			/* Reads are being decoded, or nothing to do until a waiter comes. */
			pthread_cond_wait(&l->loader_cv, &l->mu);
		}
		pthread_mutex_unlock(&l->mu);
		report_progress(l, &last_ns);
		pthread_mutex_lock(&l->mu);
	}
	/* Let the workers finish and exit. */
	l->stopping = true;
	pthread_cond_broadcast(&l->work_cv);
	pthread_mutex_unlock(&l->mu);
	for (i = 0; i < l->nworkers; i++)
		pthread_join(l->workers[i], NULL);
	l->nworkers = 0;

	pthread_mutex_lock(&l->mu);
	l->stats.ns_elapsed = engine_now_ns() - l->start_ns;
	l->stats.done = true;
	ret = l->error;
	atomic_store_explicit(&l->result, ret, memory_order_relaxed);
	atomic_store_explicit(&l->done, true, memory_order_release);
	l->ended = true;
	pthread_cond_broadcast(&l->wait_cv);
	pthread_mutex_unlock(&l->mu);
	if (l->opts.progress && !ret)
		l->opts.progress(l->opts.progress_arg, l->stats.bytes_total, l->stats.bytes_total);
	if (l->opts.done)
		l->opts.done(l->opts.done_arg, ret);
	return NULL;
}

/* ---- the interface --------------------------------------------------------- */

static void loader_free(struct pgc_loader *l)
{
	while (l->npool)
		free(l->pool[--l->npool]);
	free(l->pool);
	rs_clear(&l->unloaded);
	free(l->bstate);
	free(l->workers);
	aio_queue_destroy(l->q);
	sf_image_close(l->img);
	pthread_cond_destroy(&l->wait_cv);
	pthread_cond_destroy(&l->loader_cv);
	pthread_cond_destroy(&l->work_cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

int loader_start(struct pgc_memfile *mf, struct sf_image *img,
		 const struct pgc_load_opts *opts)
{
	struct pgc_loader *l;
	enum aio_backend backend;
	size_t i;
	int ret;

	l = calloc(1, sizeof(*l));
	if (!l) {
		sf_image_close(img);
		return -ENOMEM;
	}
	l->mf = mf;
	l->img = img;
	l->opts = *opts;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->wait_cv, NULL);
	pthread_cond_init(&l->loader_cv, NULL);
	pthread_cond_init(&l->work_cv, NULL);
	rs_init(&l->unloaded, &block_ops);
	atomic_init(&l->lowest, UINT64_MAX);
	atomic_init(&l->done, false);
	/* Test hook: exercise the mapping path that hugetlbfs files take. */
	atomic_init(&l->use_pwrite, !getenv("PGCKPT_LOADER_NO_PWRITE"));
	atomic_init(&l->result, 0);
	l->stats.bytes_total = img->mem_bytes;
	l->start_ns = engine_now_ns();

	ret = -ENOMEM;
	l->bstate = calloc(img->nblocks ? img->nblocks : 1, 1);
	if (!l->bstate)
		goto fail;
	for (i = 0; i < img->nblocks; i++) {
		const struct sf_block *sb = &img->blocks[i];
		uint32_t b = (uint32_t)i, k;

		for (k = 0; k < sb->nruns; k++) {
			const struct sf_run *run = &img->runs[sb->first_run + k];

			ret = rs_insert(&l->unloaded, (pgc_range){ run->off, run->off + run->len }, &b);
			if (ret)
				goto fail;
		}
	}
	update_lowest_locked(l);

	/*
	 * Compressed reads land in recycled buffers big enough for a merged
	 * read or the largest block; their number bounds the reads in flight
	 * so that buffers stay within LOADER_BUFFER_BYTES.
	 */
	l->pool_size = opts->max_read;
	for (i = 0; i < img->nblocks; i++)
		if (img->blocks[i].stored_len > l->pool_size)
			l->pool_size = img->blocks[i].stored_len;
	l->pool_size = (l->pool_size + MF_PAGE_MASK) & ~MF_PAGE_MASK;
	l->max_reads = opts->max_inflight;
	if (l->max_reads > LOADER_BUFFER_BYTES / l->pool_size)
		l->max_reads = LOADER_BUFFER_BYTES / l->pool_size;
	if (l->max_reads < 2)
		l->max_reads = 2;
	ret = -ENOMEM;
	l->pool = calloc(l->max_reads, sizeof(*l->pool));
	if (!l->pool)
		goto fail;
	ret = aio_parse_backend(opts->aio, &backend);
	if (ret)
		goto fail;
	/* Only the background loader thread reads through the queue. */
	if (opts->background) {
		ret = aio_queue_new(backend, l->max_reads, &l->q, NULL);
		if (ret)
			goto fail;
	}
	l->jobs = engine_jobs(opts->jobs);
	l->workers = calloc((size_t)l->jobs, sizeof(*l->workers));
	ret = -ENOMEM;
	if (!l->workers)
		goto fail;
	for (i = 0; i < (size_t)l->jobs; i++) {
		ret = memfile_thread_create(&l->workers[i], worker_main, l);
		if (ret)
			goto fail_workers;
		l->nworkers++;
	}
	ret = memfile_thread_create(&l->thread, loader_main, l);
	if (ret)
		goto fail_workers;
	l->thread_started = true;
	atomic_store_explicit(&mf->loader, l, memory_order_release);
	return 0;
fail_workers:
	pthread_mutex_lock(&l->mu);
	l->stopping = true;
	pthread_cond_broadcast(&l->work_cv);
	pthread_mutex_unlock(&l->mu);
	for (i = 0; i < (size_t)l->nworkers; i++)
		pthread_join(l->workers[i], NULL);
fail:
	loader_free(l);
	return ret;
}

int loader_wait(struct pgc_loader *l, pgc_range r)
{
	struct ld_waiter w = { .r = r, .cursor = r.start };
	uint64_t t0 = 0, pending = 0;
	int ret;

	/* The fast path: everything loaded, or at least everything below r.end. */
	if (r.end <= atomic_load_explicit(&l->lowest, memory_order_acquire))
		return 0;
	if (atomic_load_explicit(&l->done, memory_order_acquire) &&
	    !atomic_load_explicit(&l->result, memory_order_relaxed))
		return 0;

	pthread_mutex_lock(&l->mu);
	while (!l->error && range_pending_locked(l, r)) {
		if (!t0) {
			rs_node *n = rs_lower_bound(&l->unloaded, r.start);

			for (; n && rs_range(n).start < r.end; n = rs_next(n)) {
				pgc_range nr = rs_range(n);

				pending += (nr.end < r.end ? nr.end : r.end) -
					   (nr.start > r.start ? nr.start : r.start);
			}
			t0 = engine_now_ns();
			w.next = l->waiters;
			if (l->waiters)
				l->waiters->prev = &w;
			l->waiters = &w;
			pthread_cond_signal(&l->loader_cv);
		}
		pthread_cond_wait(&l->wait_cv, &l->mu);
	}
	ret = range_pending_locked(l, r) ? (l->error ? l->error : -PGC_ELOADFAIL) : 0;
	if (t0) {
		if (w.prev)
			w.prev->next = w.next;
		else
			l->waiters = w.next;
		if (w.next)
			w.next->prev = w.prev;
		if (l->rr == &w)
			l->rr = w.next;
		l->stats.waits++;
		l->stats.bytes_waited += pending;
		l->stats.ns_waited += engine_now_ns() - t0;
	}
	pthread_mutex_unlock(&l->mu);
	return ret;
}

void loader_cancel(struct pgc_loader *l, pgc_range r)
{
	rs_node *n;

	if (atomic_load_explicit(&l->done, memory_order_acquire) ||
	    r.end <= atomic_load_explicit(&l->lowest, memory_order_acquire))
		return;
	pthread_mutex_lock(&l->mu);
	n = rs_lower_bound(&l->unloaded, r.start);
	while (n && rs_range(n).start < r.end) {
		uint32_t b = *(uint32_t *)rs_value(n);
		rs_node *iso;

		if (l->bstate[b] != BLK_UNSTARTED) {
			n = rs_next(n);
			continue;
		}
		/* On -ENOMEM the piece stays: it is loaded, and quiesce waits for it. */
		iso = rs_isolate(&l->unloaded, n, r);
		if (!iso) {
			n = rs_next(n);
			continue;
		}
		l->stats.bytes_cancelled += rs_range(iso).end - rs_range(iso).start;
		n = rs_remove(&l->unloaded, iso);
	}
	update_lowest_locked(l);
	pthread_cond_broadcast(&l->wait_cv);
	pthread_mutex_unlock(&l->mu);
}

void loader_quiesce(struct pgc_loader *l, pgc_range r)
{
	if (atomic_load_explicit(&l->done, memory_order_acquire) ||
	    r.end <= atomic_load_explicit(&l->lowest, memory_order_acquire))
		return;
	pthread_mutex_lock(&l->mu);
	/* After a failure, wait only for the reads still in flight. */
	while (range_pending_locked(l, r) && !l->ended && !(l->error && !l->reads))
		pthread_cond_wait(&l->wait_cv, &l->mu);
	pthread_mutex_unlock(&l->mu);
}

int loader_await(struct pgc_loader *l)
{
	int ret;

	pthread_mutex_lock(&l->mu);
	while (!l->ended)
		pthread_cond_wait(&l->wait_cv, &l->mu);
	ret = l->error;
	pthread_mutex_unlock(&l->mu);
	return ret;
}

void loader_stats(struct pgc_loader *l, struct pgc_load_stats *out)
{
	pthread_mutex_lock(&l->mu);
	*out = l->stats;
	if (!out->done)
		out->ns_elapsed = engine_now_ns() - l->start_ns;
	pthread_mutex_unlock(&l->mu);
}

void loader_stop(struct pgc_loader *l)
{
	pthread_mutex_lock(&l->mu);
	if (!l->ended)
		fail_locked(l, -ECANCELED);
	pthread_mutex_unlock(&l->mu);
	if (l->thread_started) {
		pthread_join(l->thread, NULL);
		l->thread_started = false;
	}
}

void loader_destroy(struct pgc_loader *l)
{
	if (!l)
		return;
	loader_stop(l);
	loader_free(l);
}
