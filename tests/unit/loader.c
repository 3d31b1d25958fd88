/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader.c - unit tests of background loading: pgc_load returns before
 * the pages are in; concurrent pgc_map_internal calls on random ranges
 * see exactly the saved contents; waits are counted, jump the fill's
 * queue and take turns (a huge wait does not starve small ones); once
 * loaded, waiting takes no lock; pgc_load_wait serves users of the raw
 * fd; PGC_ACCESS_NOWAIT maps only what is loaded; a waiter decodes an
 * unstarted block itself rather than queue behind the fill; decref and decommit cancel unstarted loads (and decommit waits for
 * started ones); cancelled pages of neighbouring blocks read raw into the
 * mapping keep apart; a damaged block fails every waiter and every later
 * wait with the error, and nothing hangs; save during a background load
 * waits for it; destroy in the middle of a load cancels it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "engine/loader_int.h"
#include "alloc/memfile.h"
#include "memgen.h"
#include "pgckpt.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE
#define MIB (1ULL << 20)

static uint64_t seed;
static pgc_range whole;

/* Save one @len allocation of generated contents as @path, in @block blocks. */
static void make_image_bs(const char *path, uint64_t len, enum pgc_compress c, uint32_t block)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_save_opts so;

	CHECK_EQ(pgc_allocate(mf, len, &o, &whole), 0);
	CHECK_EQ(memgen_fill(mf, seed, whole), 0);
	pgc_save_opts_init(&so);
	so.compress = c;
	so.block_size = block;
	CHECK_EQ(pgc_save(mf, path, &so), 0);
	pgc_memfile_destroy(mf);
}

static void make_image(const char *path, uint64_t len, enum pgc_compress c)
{
	make_image_bs(path, len, c, 0);
}

static pgc_memfile *load_bg_jobs(const char *path, uint32_t inflight, int jobs, int *ret)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_load_opts lo;

	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.max_inflight = inflight;
	lo.jobs = jobs;
	*ret = pgc_load(mf, path, &lo);
	return mf;
}

static pgc_memfile *load_bg(const char *path, uint32_t inflight, int *ret)
{
	return load_bg_jobs(path, inflight, 0, ret);
}

static void damage_pages(const char *path);

/* Whether the @len bytes at @p are all zero. */
static bool all_zero(const uint8_t *p, uint64_t len)
{
	uint64_t i;

	for (i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

struct reader {
	pgc_memfile *mf;
	uint64_t rng;
	int bad;
	int errors;
};

static uint64_t rng_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 11;
}

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	int i;

	for (i = 0; i < 200; i++) {
		uint64_t pages = (whole.end - whole.start) / PAGE;
		uint64_t a = rng_next(&rd->rng) % pages, n = 1 + rng_next(&rd->rng) % 64;
		pgc_range r = { whole.start + a * PAGE, whole.start + (a + n) * PAGE };
		struct iovec iov[2];
		int k, cnt;
		uint64_t off = r.start;

		if (r.end > whole.end)
			r.end = whole.end;
		/* Unaligned starts and ends are fine too. */
		r.start += rng_next(&rd->rng) % 100;
		off = r.start;
		cnt = pgc_map_internal(rd->mf, r, PGC_ACCESS_READ, iov, 2);
		if (cnt < 0) {
			rd->errors++;
			continue;
		}
		for (k = 0; k < cnt; k++) {
			if (memgen_check(seed, off, iov[k].iov_base, iov[k].iov_len) != UINT64_MAX)
				rd->bad++;
			off += iov[k].iov_len;
		}
	}
	return NULL;
}

static void concurrent(enum pgc_compress c)
{
	struct pgc_load_stats st;
	struct reader rd[4];
	pthread_t t[4];
	pgc_memfile *mf;
	int ret, i;

	make_image("img", 96 * MIB, c);
	mf = load_bg("img", 16, &ret);
	CHECK_EQ(ret, 0);
	for (i = 0; i < 4; i++) {
		rd[i] = (struct reader){ .mf = mf, .rng = test_rand() };
		CHECK_EQ(pthread_create(&t[i], NULL, reader_main, &rd[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(rd[i].bad, 0);
		CHECK_EQ(rd[i].errors, 0);
	}
	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK(st.done);
	CHECK_EQ(st.error, 0);
	CHECK_EQ(st.bytes_loaded, st.bytes_total);
	printf("  %s: %llu waits, %llu bytes waited for, %.1f ms waited, load %.1f ms\n",
	       c == PGC_COMPRESS_NONE ? "raw" : "zstd", (unsigned long long)st.waits,
	       (unsigned long long)st.bytes_waited, st.ns_waited / 1e6, st.ns_elapsed / 1e6);
	/* Everything now readable on the fast path. */
	{
		pthread_t t1;
		struct reader r1 = { .mf = mf, .rng = 7 };

		pthread_create(&t1, NULL, reader_main, &r1);
		pthread_join(t1, NULL);
		CHECK_EQ(r1.bad + r1.errors, 0);
	}
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

static void test_concurrent_zstd(void) { concurrent(PGC_COMPRESS_ZSTD); }
static void test_concurrent_raw(void) { concurrent(PGC_COMPRESS_NONE); }

/* The same through the mapping path (files pwrite cannot fill: hugetlbfs). */
static void test_concurrent_mapped(void)
{
	setenv("PGCKPT_LOADER_NO_PWRITE", "1", 1);
	concurrent(PGC_COMPRESS_ZSTD);
	concurrent(PGC_COMPRESS_NONE);
	unsetenv("PGCKPT_LOADER_NO_PWRITE");
}

static void test_wait_jumps_queue(void)
{
	struct pgc_load_stats st;
	pgc_memfile *mf;
	struct iovec iov;
	pgc_range last;
	int ret;

	/* Small blocks: a slow load, so the order shows through any stall. */
	make_image_bs("img", 64 * MIB, PGC_COMPRESS_ZSTD, 16 << 10);
	mf = load_bg_jobs("img", 4, 1, &ret);
	CHECK_EQ(ret, 0);
	/* The very last pages: the fill would reach them last. */
	last = (pgc_range){ whole.end - 8 * PAGE, whole.end };
	CHECK_EQ(pgc_map_internal(mf, last, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, last.start, iov.iov_base, iov.iov_len), UINT64_MAX);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	/*
	 * Served out of order: the fill (one decode worker, a few reads
	 * ahead) had not come near the end. Without the jump the wait ends
	 * only once the fill has loaded everything.
	 */
	printf("  last pages ready with %llu of %llu bytes loaded\n",
	       (unsigned long long)st.bytes_loaded, (unsigned long long)st.bytes_total);
	CHECK(st.bytes_loaded < st.bytes_total / 2);
	CHECK_EQ(st.waits, 1);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

/* A small wait in its own thread: how much was loaded when it began and ended. */
struct small_wait {
	pgc_memfile *mf;
	pgc_range r;
	int ret;
	uint64_t loaded_at_start, loaded_at_end;
	pthread_t t;
};

static void *small_wait_main(void *arg)
{
	struct small_wait *w = arg;
	struct pgc_load_stats st;

	pgc_load_stats(w->mf, &st);
	w->loaded_at_start = st.bytes_loaded;
	w->ret = pgc_load_wait(w->mf, w->r);
	pgc_load_stats(w->mf, &st);
	w->loaded_at_end = st.bytes_loaded;
	return NULL;
}

struct big_wait {
	pgc_memfile *mf;
	atomic_bool started;
	int ret;
};

static void *big_wait_main(void *arg)
{
	struct big_wait *w = arg;
	struct iovec iov;

	atomic_store(&w->started, true);
	w->ret = pgc_map_internal(w->mf, whole, PGC_ACCESS_READ, &iov, 1);
	return NULL;
}

/*
 * Round-robin: one wait for the whole file and then many small waits at
 * its far end. Each waiter gets one read per turn, so the small ones are
 * served long before the big one (or the fill) could reach their pages.
 */
static void test_wait_round_robin(void)
{
	enum { NSMALL = 8 };
	struct small_wait sw[NSMALL];
	struct big_wait bw = { 0 };
	struct pgc_load_stats st;
	pthread_t bt;
	pgc_memfile *mf;
	int i, ret;

	/* Small blocks: a slow load, one read per block, so turns are fine-grained. */
	make_image_bs("img", 64 * MIB, PGC_COMPRESS_ZSTD, 16 << 10);
	mf = load_bg_jobs("img", 4, 1, &ret);
	CHECK_EQ(ret, 0);
	bw.mf = mf;
	CHECK_EQ(pthread_create(&bt, NULL, big_wait_main, &bw), 0);
	while (!atomic_load(&bw.started))
		usleep(100);
	usleep(2000);   /* let the big one queue up first */
	for (i = 0; i < NSMALL; i++) {
		/* One page in each of the last MiBs of the file. */
		uint64_t at = whole.end - (uint64_t)(NSMALL - i) * MIB + 5 * PAGE;

		sw[i] = (struct small_wait){ .mf = mf, .r = { at, at + PAGE } };
		CHECK_EQ(pthread_create(&sw[i].t, NULL, small_wait_main, &sw[i]), 0);
	}
	for (i = 0; i < NSMALL; i++) {
		pthread_join(sw[i].t, NULL);
		CHECK_EQ(sw[i].ret, 0);
		/*
		 * Served within a few turns, not behind the big wait (which
		 * would have loaded nearly everything before their pages).
		 */
		CHECK(sw[i].loaded_at_end - sw[i].loaded_at_start < 24 * MIB);
		if (sw[i].loaded_at_end - sw[i].loaded_at_start >= 24 * MIB)
			printf("  small wait %d: %llu -> %llu bytes loaded\n", i,
			       (unsigned long long)sw[i].loaded_at_start,
			       (unsigned long long)sw[i].loaded_at_end);
	}
	pthread_join(bt, NULL);
	CHECK_EQ(bw.ret, 1);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	printf("  first small wait: %llu bytes loaded meanwhile, last: %llu (of %llu)\n",
	       (unsigned long long)(sw[0].loaded_at_end - sw[0].loaded_at_start),
	       (unsigned long long)(sw[NSMALL - 1].loaded_at_end - sw[NSMALL - 1].loaded_at_start),
	       (unsigned long long)st.bytes_total);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

struct map_call {
	pgc_memfile *mf;
	pgc_range r;
	int ret;
	atomic_bool done;
};

static void *map_call_main(void *arg)
{
	struct map_call *m = arg;
	struct iovec iov;

	m->ret = pgc_map_internal(m->mf, m->r, PGC_ACCESS_READ, &iov, 1);
	atomic_store(&m->done, true);
	return NULL;
}

/*
 * Once loaded, pgc_map_internal takes neither the MemoryFile's lock nor
 * the loader's: it returns while this thread holds both.
 */
static void test_fast_path_lock_free(void)
{
	struct map_call m = { 0 };
	struct loader *l;
	pgc_memfile *mf;
	pthread_t t;
	int i, ret;

	make_image("img", 8 * MIB, PGC_COMPRESS_ZSTD);
	mf = load_bg("img", 4, &ret);
	CHECK_EQ(ret, 0);
	CHECK_EQ(pgc_load_await(mf), 0);
	l = loader_of(mf);
	CHECK(l != NULL);
	if (!l)
		goto out;
	/* The chunk is mapped already (by the load), as on any fast path. */
	m.mf = mf;
	m.r = (pgc_range){ whole.start + 3 * PAGE, whole.start + 9 * PAGE };
	pthread_mutex_lock(&mf->mu);
	pthread_mutex_lock(&l->mu);
	CHECK_EQ(pthread_create(&t, NULL, map_call_main, &m), 0);
	for (i = 0; i < 5000 && !atomic_load(&m.done); i++)
		usleep(1000);
	CHECK(atomic_load(&m.done));
	pthread_mutex_unlock(&l->mu);
	pthread_mutex_unlock(&mf->mu);
	pthread_join(t, NULL);
	CHECK_EQ(m.ret, 1);
out:
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

/*
 * pgc_load_wait: the raw fd shows a range once it is waited for; bad
 * ranges are refused; without a load it returns at once.
 */
static void test_load_wait(void)
{
	pgc_memfile *mf, *empty = memgen_memfile();
	pgc_range last;
	uint8_t *buf;
	int ret;

	CHECK_EQ(pgc_load_wait(NULL, (pgc_range){ 0, PAGE }), -EINVAL);
	CHECK_EQ(pgc_load_wait(empty, (pgc_range){ 0, PAGE }), -EINVAL);   /* past the end */
	pgc_memfile_destroy(empty);

	make_image("img", 64 * MIB, PGC_COMPRESS_ZSTD);
	mf = load_bg_jobs("img", 4, 1, &ret);
	CHECK_EQ(ret, 0);
	CHECK_EQ(pgc_load_wait(mf, (pgc_range){ PAGE, PAGE }), -EINVAL);
	CHECK_EQ(pgc_load_wait(mf, (pgc_range){ 0, pgc_total_size(mf) + 1 }), -EINVAL);
	/* Unaligned: the whole pages around it are waited for. */
	last = (pgc_range){ whole.end - 3 * PAGE + 100, whole.end - 50 };
	CHECK_EQ(pgc_load_wait(mf, last), 0);
	buf = malloc(3 * PAGE);
	CHECK(buf != NULL);
	CHECK_EQ(pread(pgc_memfile_fd(mf), buf, 3 * PAGE, (off_t)(whole.end - 3 * PAGE)),
		 (ssize_t)(3 * PAGE));
	CHECK_EQ(memgen_check(seed, whole.end - 3 * PAGE, buf, 3 * PAGE), UINT64_MAX);
	free(buf);
	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_load_wait(mf, whole), 0);
	pgc_memfile_destroy(mf);

	/* A failed load: the wait returns its error. */
	make_image("img", 8 * MIB, PGC_COMPRESS_ZSTD);
	damage_pages("img");
	mf = load_bg("img", 4, &ret);
	CHECK_EQ(ret, 0);
	CHECK_EQ(pgc_load_wait(mf, whole), -PGC_ECHECKSUM);
	CHECK_EQ(pgc_load_await(mf), -PGC_ECHECKSUM);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

/*
 * PGC_ACCESS_NOWAIT maps only what is loaded: block 0 (decoded 500 ms
 * late by the test hook) is -EAGAIN at once, queues nothing and counts
 * no wait; once waited for, it maps.
 */
static void test_map_nowait(void)
{
	struct pgc_load_stats st;
	pgc_range first = { whole.start, whole.start + PAGE };
	struct iovec iov;
	pgc_memfile *mf;
	uint64_t t;
	int ret;

	make_image("img", 16 * MIB, PGC_COMPRESS_ZSTD);
	setenv("PGCKPT_LOADER_SLOW_BLOCK0_MS", "500", 1);
	mf = load_bg("img", 4, &ret);
	unsetenv("PGCKPT_LOADER_SLOW_BLOCK0_MS");
	CHECK_EQ(ret, 0);
	/* The first stored page (holes and zero pages are never pending). */
	t = test_now_ns();
	while (first.end <= whole.start + 2 * MIB &&
	       pgc_map_internal(mf, first, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1) == 1) {
		first.start += PAGE;
		first.end += PAGE;
	}
	CHECK_EQ(pgc_map_internal(mf, first, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1),
		 -EAGAIN);
	CHECK(test_now_ns() - t < 250000000ULL);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK_EQ(st.waits, 0);
	CHECK_EQ(pgc_load_wait(mf, first), 0);
	CHECK_EQ(pgc_map_internal(mf, first, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, first.start, iov.iov_base, PAGE), UINT64_MAX);
	CHECK_EQ(pgc_map_internal(mf, first, PGC_ACCESS_READ | 16, &iov, 1), -EINVAL);
	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1), 1);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

/*
 * A demand for a block not loaded yet is decoded at once by the waiter
 * itself: with one decode worker stuck 1.5 s on block 0 (test hook), a
 * wait for the last MiB is not queued behind it.
 */
static void test_wait_decodes_itself(void)
{
	struct pgc_load_stats st;
	pgc_range last;
	pgc_memfile *mf;
	uint64_t t;
	int ret;

	make_image("img", 16 * MIB, PGC_COMPRESS_ZSTD);
	/* The last MiB: some of it is stored (a single page may be a hole). */
	last = (pgc_range){ whole.end - MIB, whole.end };
	setenv("PGCKPT_LOADER_SLOW_BLOCK0_MS", "1500", 1);
	mf = load_bg_jobs("img", 4, 1, &ret);
	unsetenv("PGCKPT_LOADER_SLOW_BLOCK0_MS");
	CHECK_EQ(ret, 0);
	usleep(50 * 1000);   /* the fill's first read (block 0) holds the only worker */
	t = test_now_ns();
	CHECK_EQ(pgc_load_wait(mf, last), 0);
	t = test_now_ns() - t;
	printf("  wait for the last MiB behind a stuck worker: %.1f ms\n", t / 1e6);
	CHECK(t < 500000000ULL);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK(st.demand_decodes >= 1);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

/*
 * A background load of a fresh 16 MiB image whose only decode worker is
 * stuck 1.5 s on block 0 (test hook), returned once the worker holds it
 * (after 100 ms; it may have decoded the fill's next read first).
 */
static pgc_memfile *load_stuck_worker(void)
{
	pgc_memfile *mf;
	int ret;

	make_image("img", 16 * MIB, PGC_COMPRESS_ZSTD);
	setenv("PGCKPT_LOADER_SLOW_BLOCK0_MS", "1500", 1);
	mf = load_bg_jobs("img", 4, 1, &ret);
	unsetenv("PGCKPT_LOADER_SLOW_BLOCK0_MS");
	CHECK_EQ(ret, 0);
	usleep(100 * 1000);
	return mf;
}

/* Let the load into @mf end, check every byte, destroy it and the image. */
static void end_and_check(pgc_memfile *mf)
{
	struct iovec iov;

	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, whole.start, iov.iov_base, whole.end - whole.start),
		 UINT64_MAX);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

/* The first page at or after @from (backwards: at or before) that is still loading. */
static pgc_range pending_page(pgc_memfile *mf, uint64_t from, bool backwards)
{
	pgc_range r = { from, from + PAGE };
	struct iovec iov;

	while (r.start >= whole.start && r.end <= whole.end &&
	       pgc_map_internal(mf, r, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1) == 1) {
		r.start = backwards ? r.start - PAGE : r.start + PAGE;
		r.end = r.start + PAGE;
	}
	return r;
}

/*
 * A waiter decodes its block only as far as its pages and places them
 * first; a decode worker ends the block. With the only worker stuck 1.5 s
 * on block 0 (test hook), a wait for one page in the middle of the image
 * and one for the last page return with just those pages loaded, and
 * the load then ends with every byte right.
 */
static void test_wait_places_first(void)
{
	pgc_memfile *mf = load_stuck_worker();
	struct pgc_load_stats st;
	uint64_t before;
	pgc_range mid, last;
	struct iovec iov;

	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	before = st.bytes_loaded;
	mid = pending_page(mf, whole.start + 8 * MIB + 300 * 1024, false);
	last = pending_page(mf, whole.end - PAGE, true);
	CHECK(mid.end <= whole.end && last.start >= whole.start + 9 * MIB);

	CHECK_EQ(pgc_load_wait(mf, mid), 0);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK_EQ(st.demand_decodes, 1);
	CHECK_EQ(st.bytes_loaded - before, PAGE);    /* not its whole block */
	CHECK_EQ(pgc_map_internal(mf, mid, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, mid.start, iov.iov_base, PAGE), UINT64_MAX);
	/* The last page of the last block: decoded to the end of the frame. */
	CHECK_EQ(pgc_load_wait(mf, last), 0);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK_EQ(st.demand_decodes, 2);
	CHECK_EQ(st.bytes_loaded - before, 2 * PAGE);
	CHECK_EQ(pgc_map_internal(mf, last, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, last.start, iov.iov_base, PAGE), UINT64_MAX);
	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK_EQ(st.bytes_loaded + st.bytes_cancelled, st.bytes_total);
	end_and_check(mf);
}

/*
 * Blocks placed in part wait for a worker to end them, each holding a
 * decoder and a buffer; at most LD_PARTIAL_MAX at once. With the only
 * worker stuck on block 0, waits for a page in each of the last ten blocks:
 * the first LD_PARTIAL_MAX load one page each, the others their whole
 * block, and every byte is right in the end.
 */
static void test_partial_bounded(void)
{
	pgc_memfile *mf = load_stuck_worker();
	struct pgc_load_stats st;
	uint64_t before, whole_blocks = 0;
	pgc_range r;
	struct iovec iov;
	int i;

	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	before = st.bytes_loaded;
	for (i = 0; i < 10; i++) {
		const struct sf_image *img = loader_of(mf)->img;
		const struct sf_block *sb = &img->blocks[img->nblocks - 1 - i];

		/* The first page of one of the last ten blocks: ten different blocks. */
		r.start = img->runs[sb->first_run].off;
		r.end = r.start + PAGE;
		CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1),
			 -EAGAIN);
		CHECK_EQ(pgc_load_wait(mf, r), 0);
		CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1), 1);
		CHECK_EQ(memgen_check(seed, r.start, iov.iov_base, PAGE), UINT64_MAX);
		CHECK_EQ(pgc_load_stats(mf, &st), 0);
		if (i >= LD_PARTIAL_MAX)
			whole_blocks += st.bytes_loaded - before;
		before = st.bytes_loaded;
	}
	CHECK_EQ(st.demand_decodes, 10);
	CHECK_EQ(st.demand_partial, LD_PARTIAL_MAX);
	CHECK_EQ(loader_of(mf)->partials, LD_PARTIAL_MAX);
	CHECK(whole_blocks > (10 - LD_PARTIAL_MAX) * 64 * PAGE);   /* whole blocks, not pages */
	end_and_check(mf);
}

/*
 * The first page of the first block of a read waiting in the workers'
 * queue (only the worker is stuck, so it stays there), or an empty range.
 */
static pgc_range queued_block_page(pgc_memfile *mf)
{
	struct loader *l = loader_of(mf);
	pgc_range r = { 0, 0 };
	int tries;

	for (tries = 0; l && tries < 200 && !r.end; tries++) {
		pthread_mutex_lock(&l->mu);
		if (l->work_head) {
			const struct sf_block *b = &l->img->blocks[l->work_head->b0];

			r.start = l->img->runs[b->first_run].off;
			r.end = r.start + PAGE;
		}
		pthread_mutex_unlock(&l->mu);
		if (!r.end)
			usleep(10 * 1000);
	}
	return r;
}

/*
 * A waiter takes a read of its range that waits for a decode worker:
 * with the only worker stuck 1.5 s on block 0 (test hook), the fill's
 * next read is read and queued; a wait for a page of it decodes it at
 * once instead of queueing behind block 0.
 */
static void test_wait_takes_queued_read(void)
{
	pgc_memfile *mf = load_stuck_worker();
	struct pgc_load_stats st;
	struct iovec iov;
	pgc_range r;
	uint64_t t;

	r = queued_block_page(mf);
	CHECK(r.end != 0);
	CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1), -EAGAIN);
	t = test_now_ns();
	CHECK_EQ(pgc_load_wait(mf, r), 0);
	t = test_now_ns() - t;
	printf("  wait for a queued read behind a stuck worker: %.1f ms\n", t / 1e6);
	CHECK(t < 500000000ULL);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK_EQ(st.demand_decodes, 1);
	CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, r.start, iov.iov_base, PAGE), UINT64_MAX);
	end_and_check(mf);
}

/* Another stored page of the block that stores @page (not @page), or an empty range. */
static pgc_range block_neighbour(struct loader *l, uint64_t page)
{
	uint32_t b, i;

	for (b = 0; b < l->img->nblocks; b++) {
		const struct sf_block *sb = &l->img->blocks[b];
		const struct sf_run *first = &l->img->runs[sb->first_run];
		const struct sf_run *last = first + sb->nruns - 1;

		if (page < first->off || page >= last->off + last->len)
			continue;
		for (i = 0; i < sb->nruns; i++) {
			const struct sf_run *run = first + i;

			if (run->off != page)
				return (pgc_range){ run->off, run->off + PAGE };
			if (run->len > PAGE)
				return (pgc_range){ run->off + PAGE, run->off + 2 * PAGE };
		}
	}
	return (pgc_range){ 0, 0 };
}

/*
 * A waiter's writes never queue behind the workers' (write_mu, which a
 * lower-priority worker may hold): with the only worker stuck on block 0,
 * one waiter places its page and leaves the rest of its block queued; a
 * second waiter, for another page of that block, takes that rest and
 * places it while this thread holds write_mu.
 */
static void test_waiter_skips_write_lock(void)
{
	struct small_wait w = { .mf = load_stuck_worker() };
	struct loader *l = loader_of(w.mf);
	struct timespec until;
	pgc_range mid;
	int ret;

	CHECK(l != NULL);
	if (!l)
		goto out;
	mid = pending_page(w.mf, whole.start + 8 * MIB + 300 * 1024, false);
	CHECK_EQ(pgc_load_wait(w.mf, mid), 0);
	w.r = block_neighbour(l, mid.start);
	CHECK(w.r.end != 0);
	pthread_mutex_lock(&l->write_mu);
	CHECK_EQ(pthread_create(&w.t, NULL, small_wait_main, &w), 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	ret = pthread_timedjoin_np(w.t, NULL, &until);
	pthread_mutex_unlock(&l->write_mu);
	CHECK_EQ(ret, 0);   /* not ETIMEDOUT: the waiter did not take write_mu */
	if (ret)
		pthread_join(w.t, NULL);
	CHECK_EQ(w.ret, 0);
out:
	end_and_check(w.mf);
}

/* A thread's nice value, or INT_MIN if it cannot be read. */
static int thread_nice(pid_t tid)
{
	int n;

	errno = 0;
	n = getpriority(PRIO_PROCESS, (id_t)tid);
	return errno ? INT_MIN : n;
}

/* How many of this process's threads have @prop(tid) == @want. */
static int threads_with(int (*prop)(pid_t), int want)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)) != NULL) {
		long tid = strtol(e->d_name, NULL, 10);

		if (tid > 0 && prop((pid_t)tid) == want)
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

/*
 * A background load's decode workers run in the idle class by default
 * ($PGCKPT_FILL_NICE 20), or $PGCKPT_FILL_NICE nice steps below the
 * caller, so that waiting threads get the CPU first; 0 leaves them at
 * the caller's. (Workers are alive: block 0 decodes 300 ms late.)
 */
static void test_fill_workers_nice(void)
{
	int base = getpriority(PRIO_PROCESS, (id_t)gettid()), ret;
	pgc_memfile *mf;

	if (base > 12) {
		printf("  skipped: the tests run at nice %d already\n", base);
		return;
	}
	make_image("img", 4 * MIB, PGC_COMPRESS_ZSTD);
	setenv("PGCKPT_LOADER_SLOW_BLOCK0_MS", "300", 1);
	setenv("PGCKPT_FILL_NICE", "7", 1);
	mf = load_bg_jobs("img", 4, 2, &ret);
	CHECK_EQ(ret, 0);
	usleep(50 * 1000);
	CHECK_EQ(threads_with(thread_nice, base + 7), 2);
	CHECK_EQ(getpriority(PRIO_PROCESS, (id_t)gettid()), base);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);

	unsetenv("PGCKPT_FILL_NICE");
	mf = load_bg_jobs("img", 4, 2, &ret);
	CHECK_EQ(ret, 0);
	usleep(50 * 1000);
	CHECK_EQ(threads_with(sched_getscheduler, SCHED_IDLE), 2);
	CHECK(sched_getscheduler(0) != SCHED_IDLE);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);

	setenv("PGCKPT_FILL_NICE", "0", 1);
	mf = load_bg_jobs("img", 4, 2, &ret);
	CHECK_EQ(ret, 0);
	usleep(50 * 1000);
	CHECK_EQ(threads_with(thread_nice, base + 7), 0);
	CHECK_EQ(threads_with(sched_getscheduler, SCHED_IDLE), 0);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);
	unsetenv("PGCKPT_FILL_NICE");
	unsetenv("PGCKPT_LOADER_SLOW_BLOCK0_MS");
	CHECK_EQ(system("rm -rf img"), 0);
}

static int segment_committed_fn(void *arg, const struct pgc_segment *seg)
{
	const pgc_range *r = arg;

	/* Any known-committed page in @r is a failure. */
	return seg->range.start < r->end && seg->range.end > r->start && seg->known_committed;
}

/*
 * A decommit during a background load is not undone: the pages of the
 * range read back as zeroes after the load and are not known committed.
 */
static void decommit_case(enum pgc_compress c, bool mapped)
{
	pgc_memfile *mf;
	pgc_range tail;
	struct iovec iov;
	int ret;

	if (mapped)
		setenv("PGCKPT_LOADER_NO_PWRITE", "1", 1);
	make_image("img", 96 * MIB, c);
	mf = load_bg_jobs("img", 4, 1, &ret);
	CHECK_EQ(ret, 0);
	tail = (pgc_range){ whole.end - 4 * MIB, whole.end };
	CHECK_EQ(pgc_decommit(mf, tail), 0);
	CHECK_EQ(pgc_for_each_segment(mf, segment_committed_fn, &tail), 0);
	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_map_internal(mf, tail, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK(all_zero(iov.iov_base, iov.iov_len));
	CHECK_EQ(pgc_for_each_segment(mf, segment_committed_fn, &tail), 0);
	/* The rest is intact. */
	CHECK_EQ(pgc_map_internal(mf, (pgc_range){ whole.start, tail.start },
				  PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, whole.start, iov.iov_base, iov.iov_len), UINT64_MAX);
	pgc_memfile_destroy(mf);
	unsetenv("PGCKPT_LOADER_NO_PWRITE");
	CHECK_EQ(system("rm -rf img"), 0);
}

static void test_decommit_during_load(void)
{
	decommit_case(PGC_COMPRESS_ZSTD, false);
	decommit_case(PGC_COMPRESS_NONE, false);
	decommit_case(PGC_COMPRESS_NONE, true);
}

/*
 * Raw blocks read straight into the mapping (the hugetlbfs path, forced
 * here with the test hook): cancel the first page of two neighbouring
 * blocks that one merged read covers. Each block's cancelled pages need
 * their own scratch, or the checksum of one sees the other's bytes.
 */
static void test_cancel_neighbour_blocks(void)
{
	struct pgc_load_opts lo;
	pgc_memfile *mf = memgen_memfile();
	struct sf_image *img = NULL;
	struct iovec iov;
	uint64_t p0 = 0, p1 = 0;
	uint32_t b;

	setenv("PGCKPT_LOADER_NO_PWRITE", "1", 1);
	make_image_bs("img", 96 * MIB, PGC_COMPRESS_NONE, 64 << 10);
	/* The first pages of the block at 60 MiB and of the next one. */
	CHECK_EQ(sf_image_open("img", false, &img), 0);
	for (b = 0; img && b + 1 < img->nblocks; b++) {
		p0 = img->runs[img->blocks[b].first_run].off;
		p1 = img->runs[img->blocks[b + 1].first_run].off;
		if (p0 >= whole.start + 60 * MIB)
			break;
	}
	sf_image_close(img);
	CHECK(p0 >= whole.start + 60 * MIB && p1 > p0);
	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.jobs = 1;
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	CHECK_EQ(pgc_decref(mf, (pgc_range){ p0, p0 + PAGE }), 0);
	CHECK_EQ(pgc_decref(mf, (pgc_range){ p1, p1 + PAGE }), 0);
	CHECK_EQ(pgc_load_await(mf), 0);
	/* What is still allocated is intact. */
	CHECK_EQ(pgc_map_internal(mf, (pgc_range){ p0 + PAGE, p1 },
				  PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, p0 + PAGE, iov.iov_base, iov.iov_len), UINT64_MAX);
	pgc_memfile_destroy(mf);
	unsetenv("PGCKPT_LOADER_NO_PWRITE");
	CHECK_EQ(system("rm -rf img"), 0);
}

static void test_decref_cancels(void)
{
	struct pgc_load_stats st;
	pgc_memfile *mf;
	pgc_range tail;
	struct iovec iov;
	int ret;

	make_image("img", 128 * MIB, PGC_COMPRESS_ZSTD);
	mf = load_bg("img", 1, &ret);
	CHECK_EQ(ret, 0);
	tail = (pgc_range){ whole.start + 64 * MIB, whole.end };
	CHECK_EQ(pgc_decref(mf, tail), 0);
	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	printf("  cancelled %llu of %llu bytes\n", (unsigned long long)st.bytes_cancelled,
	       (unsigned long long)st.bytes_total);
	CHECK(st.bytes_cancelled > 0);
	CHECK_EQ(st.bytes_loaded + st.bytes_cancelled, st.bytes_total);
	/* The head is intact. */
	CHECK_EQ(pgc_map_internal(mf, (pgc_range){ whole.start, whole.start + 64 * MIB },
				  PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, whole.start, iov.iov_base, iov.iov_len), UINT64_MAX);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

/* Flip a byte in the middle of pages.img. */
static void damage_pages(const char *path)
{
	char p[256];
	struct stat st;
	uint8_t b;
	int fd;

	snprintf(p, sizeof(p), "%s/pages.img", path);
	fd = open(p, O_RDWR);
	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	CHECK_EQ(pread(fd, &b, 1, st.st_size / 2), 1);
	b ^= 0x5a;
	CHECK_EQ(pwrite(fd, &b, 1, st.st_size / 2), 1);
	close(fd);
}

static int done_calls, done_err;

static void on_done(void *arg, int err)
{
	(void)arg;
	__atomic_add_fetch(&done_calls, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&done_err, err, __ATOMIC_SEQ_CST);
}

static void test_error_wakes_everyone(void)
{
	struct pgc_load_opts lo;
	struct reader rd[3];
	pthread_t t[3];
	pgc_memfile *mf = memgen_memfile();
	struct iovec iov;
	int i, ret, errs = 0;

	make_image("img", 32 * MIB, PGC_COMPRESS_ZSTD);
	damage_pages("img");
	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.done = on_done;
	done_calls = 0;
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	for (i = 0; i < 3; i++) {
		rd[i] = (struct reader){ .mf = mf, .rng = test_rand() };
		pthread_create(&t[i], NULL, reader_main, &rd[i]);
	}
	for (i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		errs += rd[i].errors;
		CHECK_EQ(rd[i].bad, 0);   /* never wrong memory, only errors */
	}
	CHECK(errs > 0);
	ret = pgc_load_await(mf);
	CHECK_EQ(ret, -PGC_ECHECKSUM);
	/* A later wait on the whole file fails at once with the error. */
	CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_READ, &iov, 1), -PGC_ECHECKSUM);
	CHECK_EQ(__atomic_load_n(&done_calls, __ATOMIC_SEQ_CST), 1);
	CHECK_EQ(__atomic_load_n(&done_err, __ATOMIC_SEQ_CST), -PGC_ECHECKSUM);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

static void test_save_waits_for_load(void)
{
	pgc_memfile *mf, *mf2 = memgen_memfile();
	struct iovec iov;
	int ret;

	make_image("img", 64 * MIB, PGC_COMPRESS_NONE);
	mf = load_bg("img", 8, &ret);
	CHECK_EQ(ret, 0);
	CHECK_EQ(pgc_save(mf, "img2", NULL), 0);   /* waits for the load first */
	CHECK_EQ(pgc_load(mf2, "img2", NULL), 0);
	CHECK_EQ(pgc_map_internal(mf2, whole, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, whole.start, iov.iov_base, iov.iov_len), UINT64_MAX);
	pgc_memfile_destroy(mf);
	pgc_memfile_destroy(mf2);
	CHECK_EQ(system("rm -rf img img2"), 0);
}

static void test_destroy_mid_load(void)
{
	int i, ret;

	make_image("img", 64 * MIB, PGC_COMPRESS_ZSTD);
	for (i = 0; i < 5; i++) {
		pgc_memfile *mf = load_bg("img", 2, &ret);

		CHECK_EQ(ret, 0);
		pgc_memfile_destroy(mf);   /* cancels; must not hang or leak */
	}
	CHECK_EQ(system("rm -rf img"), 0);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	seed = test_rand();
	TEST_RUN(test_concurrent_zstd);
	TEST_RUN(test_concurrent_raw);
	TEST_RUN(test_concurrent_mapped);
	TEST_RUN(test_wait_jumps_queue);
	TEST_RUN(test_wait_round_robin);
	TEST_RUN(test_fast_path_lock_free);
	TEST_RUN(test_load_wait);
	TEST_RUN(test_map_nowait);
	TEST_RUN(test_wait_decodes_itself);
	TEST_RUN(test_wait_places_first);
	TEST_RUN(test_partial_bounded);
	TEST_RUN(test_wait_takes_queued_read);
	TEST_RUN(test_waiter_skips_write_lock);
	TEST_RUN(test_fill_workers_nice);
	TEST_RUN(test_decref_cancels);
	TEST_RUN(test_decommit_during_load);
	TEST_RUN(test_cancel_neighbour_blocks);
	TEST_RUN(test_error_wakes_everyone);
	TEST_RUN(test_save_waits_for_load);
	TEST_RUN(test_destroy_mid_load);
	return test_done();
}
