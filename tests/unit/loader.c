/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader.c - unit tests of background loading: pgc_load returns before
 * the pages are in; concurrent pgc_map_internal calls on random ranges
 * see exactly the saved contents; waits are counted; decref cancels
 * unstarted loads; a damaged block fails every waiter and every later
 * wait with the error, and nothing hangs; save during a background load
 * waits for it; destroy in the middle of a load cancels it.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "memgen.h"
#include "pgckpt.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE
#define MIB (1ULL << 20)

static uint64_t seed;
static pgc_range whole;

/* Save one @len allocation of generated contents as @path. */
static void make_image(const char *path, uint64_t len, enum pgc_compress c)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_save_opts so;

	CHECK_EQ(pgc_allocate(mf, len, &o, &whole), 0);
	CHECK_EQ(memgen_fill(mf, seed, whole), 0);
	pgc_save_opts_init(&so);
	so.compress = c;
	CHECK_EQ(pgc_save(mf, path, &so), 0);
	pgc_memfile_destroy(mf);
}

static pgc_memfile *load_bg(const char *path, uint32_t inflight, int *ret)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_load_opts lo;

	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.max_inflight = inflight;
	*ret = pgc_load(mf, path, &lo);
	return mf;
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

	make_image("img", 128 * MIB, PGC_COMPRESS_ZSTD);
	mf = load_bg("img", 4, &ret);
	CHECK_EQ(ret, 0);
	/* The very last pages: the fill would reach them last. */
	last = (pgc_range){ whole.end - 8 * PAGE, whole.end };
	CHECK_EQ(pgc_map_internal(mf, last, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, last.start, iov.iov_base, iov.iov_len), UINT64_MAX);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	/* Served out of order: most of the file was not loaded yet. */
	printf("  last pages ready with %llu of %llu bytes loaded\n",
	       (unsigned long long)st.bytes_loaded, (unsigned long long)st.bytes_total);
	CHECK(st.done || st.bytes_loaded < st.bytes_total);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);
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
	TEST_RUN(test_decref_cancels);
	TEST_RUN(test_error_wakes_everyone);
	TEST_RUN(test_save_waits_for_load);
	TEST_RUN(test_destroy_mid_load);
	return test_done();
}
