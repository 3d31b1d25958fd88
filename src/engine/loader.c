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
 * - the loader thread (background loads) picks blocks, reads them
 *   through the aio queue and hands completed reads to the decode
 *   workers. Waiters come first, served round-robin one read each per
 *   turn, so one huge wait cannot starve a small one; then the fill goes
 *   on in offset order, merging consecutive blocks into reads of up to
 *   max_read bytes and max_iovecs iovecs. The fill keeps only jobs + 1
 *   reads in flight, so a waiter's read never queues behind a deep fill.
 *   An eager load uses no queue: each decode worker picks its own read
 *   the same way and does it synchronously (ld_read_sync).
 *   Reads land in recycled buffers of one mapping, 8 MiB for the fill.
 *   A load from a pages source (pgc_load_opts.pages_source: an image
 *   read by range from elsewhere, such as S3) reads like an eager one,
 *   background or not: each worker blocks in its own source read, so
 *   jobs reads are in flight, one buffer each.
 * - decode workers take waiters' reads before the fill's, check each
 *   block's checksum, decode a zstd block into their own scratch buffer
 *   (a raw block is used where it was read) and pwrite the pages still
 *   wanted into the backing file. Only where the file refuses pwrite
 *   (hugetlbfs) do they populate the mapping in bulk and decode, or read
 *   raw blocks, straight into it. Then they drop the block's pages from
 *   the unloaded set and wake waiters.
 * - waiters (pgc_map_internal) name the range they need; in the
 *   background, a waiter whose range holds a block nobody started reads
 *   and decodes it itself at once (a demand never queues behind the
 *   fill), as it does a read of its range waiting for a worker; it
 *   decodes only as far as its pages, places them, and leaves the rest
 *   of the block to a worker. Then it sleeps until no unloaded page
 *   intersects its range; once
 *   everything is loaded a lock-free check (the lowest unloaded offset,
 *   the done flag) lets them through.
 *
 * Pages whose block has not started can be cancelled (pgc_decref); their
 * bytes are then decoded into scratch memory. Started pages are waited
 * for by the reclaimer (loader_quiesce) before it punches them out.
 * The first error (read error, short read, checksum or decode failure) is
 * recorded once: every waiter wakes with it, no new read starts, and the
 * loader drains what is in flight and stops.
 *
 * This file holds the threads, the choice of reads, waiting and
 * cancelling; building, reading and placing a read is loader_read.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "loader_int.h"
#include "util/options.h"

static const struct rs_ops block_ops = { .value_size = sizeof(uint32_t) };

/* ---- small helpers (caller holds l->mu) --------------------------------- */

static void update_lowest_locked(struct loader *l)
{
	rs_node *n = rs_first(&l->unloaded);

	atomic_store_explicit(&l->lowest, n ? rs_range(n).start : UINT64_MAX,
			      memory_order_release);
}

static bool range_pending_locked(struct loader *l, pgc_range r)
{
	rs_node *n = rs_lower_bound(&l->unloaded, r.start);

	return n && rs_range(n).start < r.end;
}

/* The block holding the first unstarted page of @w's range, or -1. */
static int64_t waiter_next_block_locked(struct loader *l, struct ld_waiter *w)
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
static struct ld_read *pick_locked(struct loader *l, unsigned max_reads)
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
			return ld_read_start_locked(l, (uint32_t)b, (uint32_t)b + 1, false);
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
		int64_t wb = ld_ws_next_locked(l);

		/* A replayed working set goes first, block by block, in its order. */
		if (wb >= 0) {
			struct ld_read *rd = ld_read_start_locked(l, (uint32_t)wb, (uint32_t)wb + 1,
								  true);

			if (rd)
				rd->ws = true;
			return rd;
		}
		while (l->fill_next < l->img->nblocks && l->bstate[l->fill_next] != BLK_UNSTARTED)
			l->fill_next++;
		if (l->fill_next >= l->img->nblocks)
			return NULL;
		b0 = b1 = l->fill_next;
		bytes = 0;
		iovs = 0;
		do {
			const struct sf_block *sb = ld_blk(l, b1);

			if (b1 > b0 && (bytes + sb->stored_len > l->opts.max_read ||
					iovs + (int)sb->nruns > (int)l->opts.max_iovecs ||
					sb->fd != ld_blk(l, b1 - 1)->fd ||
					sb->file_off != ld_blk(l, b1 - 1)->file_off + ld_blk(l, b1 - 1)->stored_len))
				break;
			bytes += sb->stored_len;
			iovs += (int)sb->nruns;
			b1++;
		} while (b1 < l->img->nblocks && l->bstate[b1] == BLK_UNSTARTED);
		l->fill_next = b1;
		return ld_read_start_locked(l, b0, b1, true);
	}
	return NULL;
}

/* A load under $PGCKPT_LOADER_SLOW_BLOCK0_MS decodes its block 0 late. */
static void slow_block0_init(struct loader *l)
{
	const char *v = test_hook(HOOK_LOADER_SLOW_BLOCK0_MS);
	long ms = v ? strtol(v, NULL, 10) : 0;

	if (ms > 0 && ms <= 60000)
		l->slow_block0_ns = (uint64_t)ms * 1000000;
}

/* The test hook: a worker sleeps before decoding a read of block 0. */
static void slow_block0(const struct loader *l, const struct ld_read *rd)
{
	struct timespec ts;

	if (!l->slow_block0_ns || rd->b0 != 0)
		return;
	ts.tv_sec = (time_t)(l->slow_block0_ns / 1000000000);
	ts.tv_nsec = (long)(l->slow_block0_ns % 1000000000);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- decode workers ------------------------------------------------------ */

/* @rd is no longer in flight: tell the loader thread, which may start another. */
static void read_retire_locked(struct loader *l, const struct ld_read *rd)
{
	l->reads--;
	if (rd->fill)
		l->fill_reads--;
	pthread_cond_signal(&l->loader_cv);
}

/* Free @rd, out of flight, its buffer back in the pool; l->mu is dropped meanwhile. */
static void read_release_locked(struct loader *l, struct ld_read *rd)
{
	ld_buf_put_locked(l, rd);
	pthread_mutex_unlock(&l->mu);
	ld_read_free(rd);
	pthread_mutex_lock(&l->mu);
}

/* Drop the pages of @rd's blocks from the unloaded set and wake waiters. */
static void read_finish_locked(struct loader *l, struct ld_read *rd)
{
	uint32_t b, i;

	for (b = rd->b0; b < rd->b1; b++) {
		const struct sf_block *sb = ld_blk(l, b);

		for (i = 0; i < sb->nruns; i++) {
			const struct sf_run *run = &l->img->runs[sb->first_run + i];
			pgc_range r = { run->off, run->off + run->len };
			rs_node *n = rs_lower_bound(&l->unloaded, r.start);

			/*
			 * Only this block's nodes (cancels never split a started
			 * block); in a chain, other blocks may hold pages inside
			 * its runs (a child's changes), and keep them.
			 */
			while (n && rs_range(n).start < r.end) {
				pgc_range nr = rs_range(n);

				if (!ld_node_is(n, b)) {
					n = rs_next(n);
					continue;
				}
				l->stats.bytes_loaded += nr.end - nr.start;
				n = rs_remove(&l->unloaded, n);
			}
		}
		l->bstate[b] = BLK_DONE;
	}
	update_lowest_locked(l);
	pthread_cond_broadcast(&l->wait_cv);
	read_retire_locked(l, rd);
}

/* @rd was decoded (@ret 0) or failed: finish or retire it, then free it. Holds l->mu. */
static void read_end_locked(struct loader *l, struct ld_read *rd, int ret)
{
	if (ret)
		ld_fail_locked(l, ret);
	if (!ret && !l->error)
		read_finish_locked(l, rd);
	else
		read_retire_locked(l, rd);
	read_release_locked(l, rd);
}

/* @rd's block is ended: the decoder a waiter left with it goes back to the pool. */
static void read_drop_decoder_locked(struct loader *l, struct ld_read *rd)
{
	if (!rd->dec)
		return;
	l->partials--;
	ld_decoder_put_locked(l, rd->dec);
	rd->dec = NULL;
}

static void *worker_main(void *arg)
{
	struct loader *l = arg;
	struct ld_decoder *dec = NULL;
	struct ld_read *rd;
	bool niced = false;
	int ret;

	ret = ld_decoder_new(l, &dec);
	pthread_mutex_lock(&l->mu);
	if (ret)
		ld_fail_locked(l, ret);
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
			if (ld_self_read(l) && !l->error &&
			    (rd = pick_locked(l, l->max_reads)) != NULL) {
				pthread_mutex_unlock(&l->mu);
				rd->err = ld_read_sync(l, rd);
				pthread_mutex_lock(&l->mu);
				break;
			}
			pthread_cond_wait(&l->work_cv, &l->mu);
		}
		if (!rd)
			break;
		/*
		 * The fill yields the CPU to the threads that wait for pages;
		 * a replayed working set, what they ask for next, is decoded
		 * before at full priority (raising nice is one-way).
		 */
		if (!niced && rd->fill && !rd->ws) {
			util_thread_nice(l->fill_nice);
			niced = true;
		}
		ret = rd->err;
		if (!ret && !l->error && dec) {
			pthread_mutex_unlock(&l->mu);
			rd->waiter_decodes = false;
			if (rd->dec) {
				/* A waiter has its pages: the rest of its block. */
				ret = ld_read_decode_rest(l, rd);
			} else {
				slow_block0(l, rd);
				ret = ld_read_decode(l, rd, dec->codec, dec->scratch);
			}
			pthread_mutex_lock(&l->mu);
		}
		read_drop_decoder_locked(l, rd);
		read_end_locked(l, rd, ret);
	}
	pthread_mutex_unlock(&l->mu);
	ld_decoder_free(dec);
	return NULL;
}

/* ---- the loader thread --------------------------------------------------- */

/* Track @rd as in the aio queue (until reaped or the queue is dropped). */
static void submitted_add_locked(struct loader *l, struct ld_read *rd)
{
	rd->q_prev = NULL;
	rd->q_next = l->submitted;
	if (l->submitted)
		l->submitted->q_prev = rd;
	l->submitted = rd;
}

static void submitted_del_locked(struct loader *l, struct ld_read *rd)
{
	if (rd->q_prev)
		rd->q_prev->q_next = rd->q_next;
	else
		l->submitted = rd->q_next;
	if (rd->q_next)
		rd->q_next->q_prev = rd->q_prev;
	rd->q_next = rd->q_prev = NULL;
}

/*
 * The queue failed (aio_wait): its completions can no longer be reaped.
 * Destroying it cancels or finishes every read in it, so that nothing
 * writes into the mapping afterwards; only then do those reads leave
 * flight (until here they count in l->reads, and loader_quiesce waits).
 * Caller holds l->mu; it is dropped around the destruction.
 */
static void drop_queue_locked(struct loader *l)
{
	struct aio_queue *q = l->q;
	struct ld_read *rd;

	pthread_mutex_unlock(&l->mu);
	aio_queue_destroy(q);
	pthread_mutex_lock(&l->mu);
	l->q = NULL;
	while ((rd = l->submitted) != NULL) {
		submitted_del_locked(l, rd);
		read_retire_locked(l, rd);
		read_release_locked(l, rd);
	}
	pthread_cond_broadcast(&l->wait_cv);
}

static int read_submit(struct loader *l, struct ld_read *rd)
{
	struct aio_req req = { .id = (uintptr_t)rd, .fd = rd->fd, .off = rd->file_off };

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

/*
 * Hand a completed read to the decode workers; a waiter's read, and the
 * rest of a block a waiter placed in part, go first.
 */
static void queue_work_locked(struct loader *l, struct ld_read *rd)
{
	if (!rd->fill || rd->dec) {
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

static void report_progress(struct loader *l, uint64_t *last_ns)
{
	uint64_t now = util_now_ns(), done;

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
	struct loader *l = arg;
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
				ld_fail_locked(l, ret);
				read_retire_locked(l, rd);
				read_release_locked(l, rd);
				break;
			}
			submitted_add_locked(l, rd);
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
				/* The queue is unusable: end its reads, then drain the rest. */
				ld_fail_locked(l, n);
				drop_queue_locked(l);
				continue;
			}
			for (i = 0; i < n; i++) {
				rd = (struct ld_read *)(uintptr_t)comp[i].id;
				submitted_del_locked(l, rd);
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
	ld_decoders_free_locked(l);
	l->stats.ns_elapsed = util_now_ns() - l->start_ns;
	l->stats.done = true;
	ret = l->error;
	atomic_store_explicit(&l->result, ret, memory_order_relaxed);
	atomic_store_explicit(&l->done, true, memory_order_release);
	pthread_cond_broadcast(&l->wait_cv);
	pthread_mutex_unlock(&l->mu);
	/* The callbacks run before pgc_load_await returns, with no lock held. */
	if (l->opts.progress && !ret)
		l->opts.progress(l->opts.progress_arg, l->stats.bytes_total, l->stats.bytes_total);
	if (l->opts.done)
		l->opts.done(l->opts.done_arg, ret);
	pthread_mutex_lock(&l->mu);
	l->ended = true;
	pthread_cond_broadcast(&l->wait_cv);
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* ---- the interface --------------------------------------------------------- */

static void loader_free(struct loader *l)
{
	ld_decoders_free_locked(l);
	ld_pool_free(l);
	rs_clear(&l->unloaded);
	free(l->bstate);
	free(l->workers);
	aio_queue_destroy(l->q);
	sf_image_close(l->img);
	pthread_cond_destroy(&l->wait_cv);
	pthread_cond_destroy(&l->loader_cv);
	pthread_cond_destroy(&l->work_cv);
	pthread_mutex_destroy(&l->write_mu);
	pthread_mutex_destroy(&l->mu);
	ld_ws_free(l);
	free(l);
}

int loader_start(struct pgc_memfile *mf, struct sf_image *img,
		 const struct pgc_load_opts *opts)
{
	struct loader *l;
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
	pthread_mutex_init(&l->write_mu, NULL);
	pthread_mutex_init(&l->ws.mu, NULL);
	pthread_cond_init(&l->wait_cv, NULL);
	pthread_cond_init(&l->loader_cv, NULL);
	pthread_cond_init(&l->work_cv, NULL);
	rs_init(&l->unloaded, &block_ops);
	atomic_init(&l->lowest, UINT64_MAX);
	atomic_init(&l->done, false);
	/* Test hook: exercise the mapping path that hugetlbfs files take. */
	atomic_init(&l->use_pwrite, !test_hook(HOOK_LOADER_NO_PWRITE));
	atomic_init(&l->result, 0);
	l->stats.bytes_total = img->load_bytes;
	l->start_ns = util_now_ns();
	slow_block0_init(l);
	ret = ld_ws_init(l);
	if (ret)
		goto fail;

	/*
	 * The demand decoders made now, not as faults come (an allocation
	 * then takes the address space's lock for writing): one per block
	 * placed in part and one more; the first taken (the last made) with
	 * its scratch in memory.
	 */
	for (i = 0; opts->background && img->compress == PGC_COMPRESS_ZSTD &&
		    i <= LD_PARTIAL_MAX; i++) {
		struct ld_decoder *d;

		ret = ld_decoder_new(l, &d);
		if (ret)
			goto fail;
		if (i == LD_PARTIAL_MAX)
			memset(d->scratch, 0, img->load_block);
		ld_decoder_put_locked(l, d);
	}
	ret = -ENOMEM;
	l->bstate = calloc(img->nblocks ? img->nblocks : 1, 1);
	if (!l->bstate)
		goto fail;
	/* What each block loads (a chain's blocks may hold more than that). */
	for (i = 0; i < img->npieces; i++) {
		const struct sf_piece *p = &img->pieces[i];

		ret = rs_insert(&l->unloaded, (pgc_range){ p->off, p->off + p->len }, &p->block);
		if (ret)
			goto fail;
	}
	update_lowest_locked(l);

	/*
	 * Reads land in recycled buffers (all but raw reads straight into
	 * the mapping) big enough for a merged read or the largest block;
	 * their number bounds the reads in flight so that buffers stay
	 * within LOADER_BUFFER_BYTES.
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
	/* A pages source is slow to answer: every worker keeps a read in flight. */
	if (opts->pages_source && l->max_reads < (unsigned)engine_jobs(opts->jobs) + 1)
		l->max_reads = (unsigned)engine_jobs(opts->jobs) + 1;
	/* Waiters' reads, a block placed in part each, or one whole each (2 waiters). */
	l->pool_cap = l->max_reads + LD_PARTIAL_MAX + 2;
	ret = ld_pool_init(l);
	if (ret)
		goto fail;
	ret = aio_parse_backend(opts->aio, &backend);
	if (ret)
		goto fail;
	/* Only the background loader thread reads through the queue. */
	if (!ld_self_read(l)) {
		ret = aio_queue_new(backend, l->max_reads, &l->q, NULL);
		if (ret)
			goto fail;
	}
	l->jobs = engine_jobs(opts->jobs);
	l->fill_nice = opts->background ? (int)opt_env_int(OPT_LOAD_FILL_NICE) : 0;
	l->workers = calloc((size_t)l->jobs, sizeof(*l->workers));
	ret = -ENOMEM;
	if (!l->workers)
		goto fail;
	for (i = 0; i < (size_t)l->jobs; i++) {
		ret = util_thread_create(&l->workers[i], worker_main, l);
		if (ret)
			goto fail_workers;
		l->nworkers++;
	}
	ret = util_thread_create(&l->thread, loader_main, l);
	if (ret)
		goto fail_workers;
	l->thread_started = true;
	ret = loader_install(mf, l);
	if (ret)
		loader_destroy(l);    /* stops the load it began, joins every thread */
	return ret;
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

/* Bytes of @r not loaded yet. Caller holds l->mu. */
static uint64_t pending_bytes_locked(struct loader *l, pgc_range r)
{
	rs_node *n = rs_lower_bound(&l->unloaded, r.start);
	uint64_t pending = 0;

	for (; n && rs_range(n).start < r.end; n = rs_next(n)) {
		pgc_range nr = rs_range(n);

		pending += (nr.end < r.end ? nr.end : r.end) - (nr.start > r.start ? nr.start : r.start);
	}
	return pending;
}

/* Queue @w for the loader thread (round-robin) and wake it. Caller holds l->mu. */
static void waiter_add_locked(struct loader *l, struct ld_waiter *w)
{
	w->next = l->waiters;
	if (l->waiters)
		l->waiters->prev = w;
	l->waiters = w;
	pthread_cond_signal(&l->loader_cv);
}

/* Take @w off the loader thread's list. Caller holds l->mu. */
static void waiter_del_locked(struct loader *l, struct ld_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		l->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	if (l->rr == w)
		l->rr = w->next;
}

/*
 * Take the parts inside @r of unloaded pieces out of the set, adding
 * their bytes to *@count: of block @block (its pages placed), or with
 * @block < 0 of any block not started yet (cancelled). A piece that
 * cannot be split (-ENOMEM) stays. Caller holds l->mu.
 */
static void unloaded_drop_locked(struct loader *l, pgc_range r, int64_t block,
				 uint64_t *count)
{
	rs_node *n = rs_lower_bound(&l->unloaded, r.start), *iso;

	while (n && rs_range(n).start < r.end) {
		uint32_t b = *(uint32_t *)rs_value(n);
		bool take = block < 0 ? l->bstate[b] == BLK_UNSTARTED : b == (uint64_t)block;

		iso = take ? rs_isolate(&l->unloaded, n, r) : NULL;
		if (!iso) {
			n = rs_next(n);
			continue;
		}
		*count += rs_range(iso).end - rs_range(iso).start;
		n = rs_remove(&l->unloaded, iso);
	}
}

/*
 * Pages of a waiter's block placed early (ld_read_decode_first: block
 * bytes rd->early_lo..early_hi) leave the unloaded set now; the rest of
 * the block stays started until a worker ends it. Caller holds l->mu.
 */
static void read_release_early_locked(struct loader *l, const struct ld_read *rd)
{
	const struct sf_block *sb = ld_blk(l, rd->b0);
	uint64_t pos = 0, a, e;
	uint32_t i;

	for (i = 0; i < sb->nruns; pos += l->img->runs[sb->first_run + i].len, i++) {
		const struct sf_run *run = &l->img->runs[sb->first_run + i];
		pgc_range mr;

		a = pos > rd->early_lo ? pos : rd->early_lo;
		e = pos + run->len < rd->early_hi ? pos + run->len : rd->early_hi;
		if (a >= e)
			continue;
		mr = (pgc_range){ run->off + (a - pos), run->off + (e - pos) };
		/* On -ENOMEM a piece stays until its block ends. */
		unloaded_drop_locked(l, mr, rd->b0, &l->stats.bytes_loaded);
	}
	update_lowest_locked(l);
	pthread_cond_broadcast(&l->wait_cv);
}

/* Whether read @rd holds a block with pages of @r still loading. Caller holds l->mu. */
static bool read_holds_locked(struct loader *l, const struct ld_read *rd, pgc_range r)
{
	rs_node *n = rs_lower_bound(&l->unloaded, r.start);

	for (; n && rs_range(n).start < r.end; n = rs_next(n)) {
		uint32_t b = *(uint32_t *)rs_value(n);

		if (b >= rd->b0 && b < rd->b1)
			return true;
	}
	return false;
}

/*
 * Take a read that holds pages of @r off the workers' queue (read, not
 * yet decoded), or NULL. Caller holds l->mu.
 */
static struct ld_read *work_take_locked(struct loader *l, pgc_range r)
{
	struct ld_read **pp, *prev = NULL;

	for (pp = &l->work_head; *pp; prev = *pp, pp = &(*pp)->next) {
		struct ld_read *rd = *pp;

		if (!read_holds_locked(l, rd, r))
			continue;
		*pp = rd->next;
		if (l->work_tail == rd)
			l->work_tail = prev;
		rd->next = NULL;
		return rd;
	}
	return NULL;
}

/*
 * Decode @rd for waiter @w (without l->mu; @fresh: not read yet): the
 * rest of a block placed in part, else as far as @w's pages (one block,
 * if @part), else every block. *@dec is the decoder used, taken from the
 * pool or made. Returns as ld_read_decode_first.
 */
static int wait_decode(struct loader *l, struct ld_waiter *w, struct ld_read *rd, bool fresh,
		       bool part, struct ld_decoder **dec)
{
	int ret = fresh ? ld_read_sync(l, rd) : rd->err;

	rd->waiter_decodes = true;
	if (!ret && rd->dec)
		return ld_read_decode_rest(l, rd);
	if (!ret && !*dec)
		ret = ld_decoder_new(l, dec);
	if (ret)
		return ret;
	slow_block0(l, rd);
	if (part && rd->b1 == rd->b0 + 1)
		return ld_read_decode_first(l, rd, w->r, *dec);
	return ld_read_decode(l, rd, (*dec)->codec, (*dec)->scratch);
}

/*
 * A background load's waiter does not queue behind the fill: it reads
 * and decodes itself, at once, a block of its range nobody has started,
 * or else takes a read of its range that waits for a decode worker. It
 * decodes a block only as far as its pages and places them first; a
 * decode worker ends the block (that read goes to the head of their
 * queue). While LD_PARTIAL_MAX blocks wait for that, it decodes its
 * block whole. Caller holds l->mu, dropped meanwhile. Returns whether it
 * decoded anything.
 */
static bool wait_decode_self_locked(struct loader *l, struct ld_waiter *w)
{
	struct ld_decoder *dec;
	struct ld_read *rd;
	bool fresh = true, part;
	int64_t b;
	int ret;

	if (!l->opts.background || l->error)
		return false;
	b = waiter_next_block_locked(l, w);
	if (b >= 0) {
		rd = ld_read_start_locked(l, (uint32_t)b, (uint32_t)b + 1, false);
		if (!rd)
			return false;   /* the error is recorded: the caller sees it */
	} else {
		rd = work_take_locked(l, w->r);
		if (!rd)
			return false;
		fresh = false;
	}
	l->stats.demand_decodes++;
	part = l->partials < LD_PARTIAL_MAX;
	if (part)
		l->partials++;   /* reserved: its decoder may stay with the block */
	dec = ld_decoder_get_locked(l);
	pthread_mutex_unlock(&l->mu);
	ret = wait_decode(l, w, rd, fresh, part, &dec);
	pthread_mutex_lock(&l->mu);
	if (ret == 1 && !l->error) {
		read_release_early_locked(l, rd);
		rd->dec = dec;
		l->stats.demand_partial++;
		queue_work_locked(l, rd);
		return true;
	}
	if (part)
		l->partials--;
	ld_decoder_put_locked(l, dec);
	read_drop_decoder_locked(l, rd);
	read_end_locked(l, rd, ret == 1 ? 0 : ret);
	return true;
}

int loader_wait(struct loader *l, pgc_range r)
{
	struct ld_waiter w = { .r = r, .cursor = r.start };
	uint64_t t0 = 0, pending = 0;
	bool listed = false;
	int ret;

	if (l->ws.seen)
		ld_ws_note(l, r);
	/* The fast path: everything loaded, or at least everything below r.end. */
	if (r.end <= atomic_load_explicit(&l->lowest, memory_order_acquire))
		return 0;
	if (atomic_load_explicit(&l->done, memory_order_acquire) &&
	    !atomic_load_explicit(&l->result, memory_order_relaxed))
		return 0;

	pthread_mutex_lock(&l->mu);
	while (!l->error && range_pending_locked(l, r)) {
		if (!t0) {
			pending = pending_bytes_locked(l, r);
			t0 = util_now_ns();
		}
		/* Unstarted blocks: this thread decodes them, one by one. */
		if (wait_decode_self_locked(l, &w))
			continue;
		/* Then (or in eager loads) the loader's turn, and sleep. */
		if (!listed) {
			waiter_add_locked(l, &w);
			listed = true;
		}
		pthread_cond_wait(&l->wait_cv, &l->mu);
	}
	ret = range_pending_locked(l, r) ? (l->error ? l->error : -PGC_ELOADFAIL) : 0;
	if (listed)
		waiter_del_locked(l, &w);
	if (t0) {
		l->stats.waits++;
		l->stats.bytes_waited += pending;
		l->stats.ns_waited += util_now_ns() - t0;
	}
	pthread_mutex_unlock(&l->mu);
	return ret;
}

int loader_ready(struct loader *l, pgc_range r)
{
	int ret;

	if (r.end <= atomic_load_explicit(&l->lowest, memory_order_acquire))
		return 1;
	if (atomic_load_explicit(&l->done, memory_order_acquire) &&
	    !atomic_load_explicit(&l->result, memory_order_relaxed))
		return 1;
	pthread_mutex_lock(&l->mu);
	ret = !range_pending_locked(l, r) ? 1 : l->error ? l->error : 0;
	pthread_mutex_unlock(&l->mu);
	return ret;
}

void loader_cancel(struct loader *l, pgc_range r)
{
	if (atomic_load_explicit(&l->done, memory_order_acquire) ||
	    r.end <= atomic_load_explicit(&l->lowest, memory_order_acquire))
		return;
	pthread_mutex_lock(&l->mu);
	/* On -ENOMEM a piece stays: it is loaded, and quiesce waits for it. */
	unloaded_drop_locked(l, r, -1, &l->stats.bytes_cancelled);
	update_lowest_locked(l);
	pthread_cond_broadcast(&l->wait_cv);
	pthread_mutex_unlock(&l->mu);
}

void loader_quiesce(struct loader *l, pgc_range r)
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

int loader_await(struct loader *l)
{
	int ret;

	pthread_mutex_lock(&l->mu);
	while (!l->ended)
		pthread_cond_wait(&l->wait_cv, &l->mu);
	ret = l->error;
	pthread_mutex_unlock(&l->mu);
	return ret;
}

void loader_stats(struct loader *l, struct pgc_load_stats *out)
{
	pthread_mutex_lock(&l->mu);
	*out = l->stats;
	if (!out->done)
		out->ns_elapsed = util_now_ns() - l->start_ns;
	pthread_mutex_unlock(&l->mu);
}

void loader_stop(struct loader *l)
{
	pthread_mutex_lock(&l->mu);
	/* A load that has finished (its callbacks may still run) keeps its result. */
	if (!atomic_load_explicit(&l->done, memory_order_relaxed))
		ld_fail_locked(l, -ECANCELED);
	pthread_mutex_unlock(&l->mu);
	if (l->thread_started) {
		pthread_join(l->thread, NULL);
		l->thread_started = false;
	}
}

void loader_destroy(struct loader *l)
{
	if (!l)
		return;
	loader_stop(l);
	loader_free(l);
}

void loader_retire(struct loader *l)
{
	struct pgc_memfile *mf = l->mf;

	loader_stop(l);
	/* Nothing is pending any more: a late loader_quiesce returns at once. */
	pthread_mutex_lock(&l->mu);
	rs_clear(&l->unloaded);
	update_lowest_locked(l);
	ld_pool_free(l);
	pthread_mutex_unlock(&l->mu);
	sf_image_close(l->img);
	l->img = NULL;
	/* The MemoryFile keeps @l, and destroys it with itself. */
	memfile_hooks_retire(mf);
}
