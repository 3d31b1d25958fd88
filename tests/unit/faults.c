/* SPDX-License-Identifier: Apache-2.0 */
/*
 * faults.c - unit tests of failure paths, driven by the aio fault hook
 * (PGCKPT_FAULT_AIO, src/aio/aio.c) and by crafted images: an I/O error
 * in the middle of a background load reaches every waiter, every later
 * wait, pgc_load_await and the done callback, and nothing hangs; a
 * failing aio_wait ends the reads still in flight rather than leak them (a
 * watchdog alarm fails the program instead); a failed write (ENOSPC) makes pgc_save fail without an image under the
 * final name or a temporary, and leaves an existing image whole; images
 * whose meta record claims absurd counts or sizes (with a correct
 * checksum) are refused quickly without a large allocation.
 * Run under ASan by `make asan` for the leaks.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "imgedit.h"
#include "memgen.h"
#include "pgckpt.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE
#define MIB (1ULL << 20)
#define WATCHDOG_S 120

static uint64_t seed;
static pgc_range whole;

/* Save one @len allocation of generated contents as @path. */
static int make_image(const char *path, uint64_t len, enum pgc_compress c, uint32_t bs)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_save_opts so;
	int ret;

	CHECK_EQ(pgc_allocate(mf, len, &o, &whole), 0);
	CHECK_EQ(memgen_fill(mf, seed, whole), 0);
	pgc_save_opts_init(&so);
	so.compress = c;
	so.block_size = bs;
	ret = pgc_save(mf, path, &so);
	pgc_memfile_destroy(mf);
	return ret;
}

/* Does anything named PREFIX.tmp-* exist in the current directory? */
static bool temporaries_left(const char *prefix)
{
	size_t n = strlen(prefix);
	struct dirent *e;
	bool found = false;
	DIR *d = opendir(".");

	if (!d)
		return true;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, n) && !strncmp(e->d_name + n, ".tmp-", 5))
			found = true;
	closedir(d);
	return found;
}

/* ---- I/O error in a background load -------------------------------------- */

struct waiter {
	pgc_memfile *mf;
	uint64_t rng;
	int bad;          /* wrong bytes returned */
	int errors;       /* waits that failed */
	int last_err;
};

static atomic_int done_calls;
static atomic_int done_err;

static void on_done(void *arg, int err)
{
	(void)arg;
	atomic_fetch_add(&done_calls, 1);
	atomic_store(&done_err, err);
}

static uint64_t rng_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 11;
}

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	uint64_t pages = (whole.end - whole.start) / PAGE;
	struct iovec iov[4];
	int i, k, n;

	/*
	 * Waiters decode unstarted blocks themselves (demand decodes), which
	 * never go through the aio queue. They stay in the second half of the
	 * file, so that the fill's first reads, one of which fails, are
	 * always made: four fast waiters could otherwise take every block
	 * before the loader thread issues a read at all.
	 */
	for (i = 0; i < 100; i++) {
		uint64_t a = pages / 2 + rng_next(&w->rng) % (pages / 2);
		uint64_t len = 1 + rng_next(&w->rng) % 32;
		pgc_range r = { whole.start + a * PAGE, whole.start + (a + len) * PAGE };
		uint64_t off = r.start;

		if (r.end > whole.end)
			r.end = whole.end;
		n = pgc_map_internal(w->mf, r, PGC_ACCESS_READ, iov, 4);
		if (n < 0) {
			w->errors++;
			w->last_err = n;
			continue;
		}
		for (k = 0; k < n; k++) {
			if (memgen_check(seed, off, iov[k].iov_base, iov[k].iov_len) != UINT64_MAX)
				w->bad++;
			off += iov[k].iov_len;
		}
	}
	return NULL;
}

static void bg_read_error_case(enum pgc_compress c, unsigned nth)
{
	struct pgc_load_stats st;
	struct pgc_load_opts lo;
	struct waiter w[4];
	pthread_t th[4];
	pgc_memfile *mf;
	char spec[64];
	int i;

	printf("  background load, %s, read %u fails with EIO\n",
	       c == PGC_COMPRESS_ZSTD ? "zstd" : "raw", nth);
	system("rm -rf img");
	CHECK_EQ(make_image("img", 8 * MIB, c, 64 << 10), 0);
	snprintf(spec, sizeof(spec), "read:%u:%d", nth, EIO);
	setenv("PGCKPT_FAULT_AIO", spec, 1);
	atomic_store(&done_calls, 0);
	atomic_store(&done_err, 0);
	mf = memgen_memfile();
	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.max_read = 64 << 10;
	lo.max_inflight = 2;
	lo.done = on_done;
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	unsetenv("PGCKPT_FAULT_AIO");
	for (i = 0; i < 4; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].mf = mf;
		w[i].rng = seed + (uint64_t)i * 7919;
		CHECK_EQ(pthread_create(&th[i], NULL, waiter_main, &w[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(w[i].bad, 0);
		if (w[i].errors)
			CHECK_EQ(w[i].last_err, -EIO);
	}
	/*
	 * The fill reaches the failing read in the first half (no waiter
	 * takes a block there), so the load fails; the failed read's bytes
	 * never arrive, so a wait for every byte fails too (below).
	 */
	CHECK_EQ(pgc_load_await(mf), -EIO);
	CHECK_EQ(pgc_load_await(mf), -EIO);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK(st.done);
	CHECK_EQ(st.error, -EIO);
	CHECK(st.bytes_loaded < st.bytes_total);
	/* The callback runs right after the waiters are woken: give it a moment. */
	for (i = 0; i < 5000 && !atomic_load(&done_calls); i++)
		usleep(1000);
	CHECK_EQ(atomic_load(&done_calls), 1);
	CHECK_EQ(atomic_load(&done_err), -EIO);
	/* Later waits fail at once too. */
	{
		struct iovec iov[4];

		CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_READ, iov, 4), -EIO);
	}
	pgc_memfile_destroy(mf);
}

static void test_bg_read_error(void)
{
	bg_read_error_case(PGC_COMPRESS_ZSTD, 1);
	bg_read_error_case(PGC_COMPRESS_ZSTD, 5);
	bg_read_error_case(PGC_COMPRESS_NONE, 2);
	bg_read_error_case(PGC_COMPRESS_NONE, 9);
}

/*
 * The aio queue itself fails (aio_wait returns an error) with reads in
 * flight: the load fails with that error everywhere, and those reads are
 * ended before the loader stops (destroying the queue), not abandoned
 * (ASan reports their structures if they leak).
 */
static void bg_wait_error_case(enum pgc_compress c, unsigned nth)
{
	struct pgc_load_stats st;
	struct pgc_load_opts lo;
	struct iovec iov[4];
	pgc_memfile *mf;
	char spec[64];

	printf("  background load, %s, aio_wait %u fails with EIO\n",
	       c == PGC_COMPRESS_ZSTD ? "zstd" : "raw", nth);
	system("rm -rf img");
	CHECK_EQ(make_image("img", 16 * MIB, c, 64 << 10), 0);
	snprintf(spec, sizeof(spec), "wait:%u:%d", nth, EIO);
	setenv("PGCKPT_FAULT_AIO", spec, 1);
	mf = memgen_memfile();
	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.max_read = 64 << 10;
	lo.max_inflight = 8;
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	unsetenv("PGCKPT_FAULT_AIO");
	CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_READ, iov, 4), -EIO);
	CHECK_EQ(pgc_load_await(mf), -EIO);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK(st.done);
	CHECK_EQ(st.error, -EIO);
	CHECK(st.bytes_loaded < st.bytes_total);
	/* Freeing pages now must not wait for reads that will never be reaped. */
	CHECK_EQ(pgc_decref(mf, whole), 0);
	pgc_memfile_destroy(mf);
}

static void test_bg_wait_error(void)
{
	bg_wait_error_case(PGC_COMPRESS_ZSTD, 1);
	bg_wait_error_case(PGC_COMPRESS_ZSTD, 3);
	bg_wait_error_case(PGC_COMPRESS_NONE, 2);
}

/* The hook with a read that never fails (N past the last read): a clean load. */
static void test_bg_hook_inert(void)
{
	struct pgc_load_opts lo;
	struct iovec iov[4];
	pgc_memfile *mf;
	int n;

	system("rm -rf img");
	CHECK_EQ(make_image("img", 2 * MIB, PGC_COMPRESS_ZSTD, 64 << 10), 0);
	setenv("PGCKPT_FAULT_AIO", "read:1000000:5", 1);
	mf = memgen_memfile();
	pgc_load_opts_init(&lo);
	lo.background = true;
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	unsetenv("PGCKPT_FAULT_AIO");
	CHECK_EQ(pgc_load_await(mf), 0);
	n = pgc_map_internal(mf, whole, PGC_ACCESS_READ, iov, 4);
	CHECK_EQ(n, 1);
	if (n == 1)
		CHECK(memgen_check(seed, whole.start, iov[0].iov_base, iov[0].iov_len) == UINT64_MAX);
	pgc_memfile_destroy(mf);
}

/* ---- failed writes during save -------------------------------------------- */

static void test_save_write_error(void)
{
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_save_opts so;
	struct pgc_load_opts lo;
	struct iovec iov[4];
	pgc_memfile *mf;
	pgc_range r;
	int n;

	system("rm -rf img new");
	CHECK_EQ(make_image("img", 2 * MIB, PGC_COMPRESS_ZSTD, 64 << 10), 0);
	mf = memgen_memfile();
	CHECK_EQ(pgc_allocate(mf, 6 * MIB, &o, &r), 0);
	CHECK_EQ(memgen_fill(mf, seed + 1, r), 0);
	pgc_save_opts_init(&so);
	so.block_size = 64 << 10;
	setenv("PGCKPT_FAULT_AIO", "write:2:28", 1);   /* ENOSPC */
	CHECK_EQ(pgc_save(mf, "img", &so), -ENOSPC);
	setenv("PGCKPT_FAULT_AIO", "write:1:5", 1);    /* EIO */
	CHECK_EQ(pgc_save(mf, "new", &so), -EIO);
	unsetenv("PGCKPT_FAULT_AIO");
	pgc_memfile_destroy(mf);
	CHECK(access("new", F_OK) != 0);
	CHECK(!temporaries_left("new"));
	CHECK(!temporaries_left("img"));
	/* The old image is whole. */
	CHECK_EQ(pgc_image_verify("img", NULL, NULL), 0);
	mf = memgen_memfile();
	pgc_load_opts_init(&lo);
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	n = pgc_map_internal(mf, whole, PGC_ACCESS_READ, iov, 4);
	CHECK_EQ(n, 1);
	if (n == 1)
		CHECK(memgen_check(seed, whole.start, iov[0].iov_base, iov[0].iov_len) == UINT64_MAX);
	pgc_memfile_destroy(mf);
}

/* ---- absurd sizes and counts ---------------------------------------------- */

/*
 * Rewrite img/memfile.img with its meta record changed by @edit, the
 * size field and trailer checksum made consistent again.
 */
static int edit_meta(const char *dir, void (*edit)(Pgckpt__PgcImgMeta *))
{
	char path[256];
	size_t mlen, xlen;
	uint8_t *m, *x = NULL;
	int fd, ret = -1;

	snprintf(path, sizeof(path), "%s/memfile.img", dir);
	m = img_slurp(path, &mlen);
	if (m)
		x = img_edit_meta(m, mlen, edit, &xlen);
	if (x) {
		fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (fd >= 0 && sf_pwrite_all(fd, x, xlen, 0) == 0)
			ret = 0;
		if (fd >= 0)
			close(fd);
	}
	free(x);
	free(m);
	return ret;
}

static void huge_blocks(Pgckpt__PgcImgMeta *m) { m->nblocks = 1ULL << 40; }
static void huge_runs(Pgckpt__PgcImgMeta *m) { m->nruns = 1ULL << 40; m->nblocks = 1ULL << 39; }
static void huge_segs(Pgckpt__PgcImgMeta *m) { m->nsegs = 1ULL << 40; }
static void huge_all(Pgckpt__PgcImgMeta *m)
{
	m->file_size = SF_MAX_FILE_SIZE;
	m->nsegs = m->nruns = m->nblocks = 1ULL << 40;
	m->pages_bytes = m->mem_bytes = 1ULL << 50;
}
static void huge_file(Pgckpt__PgcImgMeta *m) { m->file_size = 1ULL << 62; }
static void huge_block(Pgckpt__PgcImgMeta *m) { m->block_size = 1u << 31; }
static void huge_pages(Pgckpt__PgcImgMeta *m) { m->pages_bytes = UINT64_MAX; }
static void huge_mem(Pgckpt__PgcImgMeta *m) { m->mem_bytes = UINT64_MAX; }

static long maxrss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static void test_absurd_meta(void)
{
	static const struct {
		const char *name;
		void (*edit)(Pgckpt__PgcImgMeta *);
	} cases[] = {
		{ "2^40 blocks", huge_blocks }, { "2^40 runs", huge_runs },
		{ "2^40 segments", huge_segs }, { "everything huge", huge_all },
		{ "2^62 file size", huge_file }, { "2 GiB blocks", huge_block },
		{ "2^64 pages bytes", huge_pages }, { "2^64 memory bytes", huge_mem },
	};
	struct pgc_image_info info;
	struct pgc_load_opts lo;
	pgc_memfile *mf;
	uint64_t t0;
	long rss0;
	size_t i;
	int ret;

	system("rm -rf base");
	CHECK_EQ(make_image("base", 1 * MIB, PGC_COMPRESS_ZSTD, 64 << 10), 0);
	rss0 = maxrss_kib();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timespec a, b;

		system("rm -rf bad && cp -r base bad");
		CHECK_EQ(edit_meta("bad", cases[i].edit), 0);
		clock_gettime(CLOCK_MONOTONIC, &a);
		ret = pgc_image_info("bad", &info);
		if (ret != -PGC_ECORRUPT && ret != -PGC_ETRUNCATED) {
			printf("  %s: pgc_image_info %d\n", cases[i].name, ret);
			CHECK(0);
		}
		mf = memgen_memfile();
		pgc_load_opts_init(&lo);
		ret = pgc_load(mf, "bad", &lo);
		CHECK(ret == -PGC_ECORRUPT || ret == -PGC_ETRUNCATED);
		pgc_memfile_destroy(mf);
		clock_gettime(CLOCK_MONOTONIC, &b);
		t0 = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ull + (uint64_t)b.tv_nsec -
		     (uint64_t)a.tv_nsec;
		if (t0 > 1000000000ull) {
			printf("  %s: refused after %" PRIu64 " ms\n", cases[i].name, t0 / 1000000);
			CHECK(0);
		}
	}
	/* Nothing above may have allocated anything near the claimed sizes. */
	printf("  max RSS %ld KiB before, %ld KiB after\n", rss0, maxrss_kib());
	CHECK(maxrss_kib() - rss0 < 64 * 1024);
}

/*
 * The largest memory file size the format allows (2^47), with the real,
 * small segments: a valid image. Loading it must cost nothing near the
 * claimed size (it costs 8 bytes per GiB claimed, see below).
 */
static void max_file(Pgckpt__PgcImgMeta *m) { m->file_size = SF_MAX_FILE_SIZE; }

static void test_max_file_size(void)
{
	struct pgc_image_info info;
	struct pgc_load_opts lo;
	pgc_memfile *mf;
	long rss0 = maxrss_kib();
	int ret;

	system("rm -rf bad && cp -r base bad");
	CHECK_EQ(edit_meta("bad", max_file), 0);
	CHECK_EQ(pgc_image_info("bad", &info), 0);
	mf = memgen_memfile();
	pgc_load_opts_init(&lo);
	ret = pgc_load(mf, "bad", &lo);
	printf("  load of a 2^47-byte memory file: %d, max RSS +%ld KiB\n", ret,
	       maxrss_kib() - rss0);
	pgc_memfile_destroy(mf);
	/*
	 * Known cost (docs/failure.md): the memory file keeps one pointer per
	 * GiB chunk of its size, so this costs up to 1 MiB. Bound it.
	 */
	CHECK(maxrss_kib() - rss0 < (long)(SF_MAX_FILE_SIZE >> 30) * 8 / 1024 + 64 * 1024);
}

/* A memfile.img larger than any real one (sparse): refused before it is read. */
static void test_huge_memfile(void)
{
	long rss0 = maxrss_kib();
	struct pgc_image_info info;
	int fd;

	system("rm -rf big && cp -r base big");
	fd = open("big/memfile.img", O_WRONLY);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, (off_t)SF_MAX_MEMFILE + 4096), 0);
	close(fd);
	CHECK_EQ(pgc_image_info("big", &info), -PGC_ECORRUPT);
	CHECK(maxrss_kib() - rss0 < 64 * 1024);
}

/*
 * An image of @n one-page usage segments (a page apart, no stored page)
 * in the directory @dir: what a crafted memfile.img may claim. Returns 0
 * or -errno.
 */
static int make_seg_image(const char *dir, size_t n)
{
	struct pgc_segment *segs = calloc(n, sizeof(*segs));
	struct sf_tables t = { 0 };
	struct sf_buf b = { 0 };
	char path[256];
	size_t i;
	int dfd, ret = -ENOMEM;

	if (!segs)
		return ret;
	for (i = 0; i < n; i++)
		segs[i] = (struct pgc_segment){ { i * 2 * PAGE, i * 2 * PAGE + PAGE },
						PGC_KIND_SYSTEM, 1, 0, false };
	t.file_size = t.logical_size = n * 2 * PAGE;
	t.block_size = 1 << 20;
	t.compress = PGC_COMPRESS_NONE;
	t.segs = segs;
	t.nsegs = n;
	ret = sf_validate_tables(&t);
	if (!ret)
		ret = sf_index_encode(&t, &b);
	snprintf(path, sizeof(path), "rm -rf %s && mkdir %s", dir, dir);
	if (!ret && system(path) != 0)
		ret = -EIO;
	dfd = ret ? -1 : open(dir, O_RDONLY | O_DIRECTORY);
	if (!ret && dfd < 0)
		ret = -errno;
	if (!ret)
		ret = sf_write_file_at(dfd, SF_MEMFILE_NAME, b.p, b.len, false);
	if (!ret)
		ret = sf_write_file_at(dfd, SF_PAGES_NAME, "", 0, false);
	if (dfd >= 0)
		close(dfd);
	sf_buf_free(&b);
	free(segs);
	return ret;
}

/*
 * Segments cost memory that no file size bounds (each needs a page of
 * memory file, not of image): an image may hold at most PGC_MAX_SEGMENTS,
 * and one at the limit opens and loads within the bound docs/failure.md
 * gives (about 150 bytes a segment).
 */
static void test_segment_limit(void)
{
	struct pgc_image_info info;
	struct pgc_load_opts lo;
	pgc_memfile *mf;
	long rss0;

	CHECK_EQ(make_seg_image("segs", PGC_MAX_SEGMENTS + 1), 0);
	rss0 = maxrss_kib();
	CHECK_EQ(pgc_image_info("segs", &info), -PGC_ELIMIT);
	mf = memgen_memfile();
	pgc_load_opts_init(&lo);
	CHECK_EQ(pgc_load(mf, "segs", &lo), -PGC_ELIMIT);
	pgc_memfile_destroy(mf);
	CHECK(maxrss_kib() - rss0 < 16 * 1024);

	CHECK_EQ(make_seg_image("segs", PGC_MAX_SEGMENTS), 0);
	rss0 = maxrss_kib();
	CHECK_EQ(pgc_image_info("segs", &info), 0);
	CHECK_EQ(info.segments, PGC_MAX_SEGMENTS);
	mf = memgen_memfile();
	pgc_load_opts_init(&lo);
	CHECK_EQ(pgc_load(mf, "segs", &lo), 0);
	pgc_memfile_destroy(mf);
	printf("  %u segments: load max RSS +%ld KiB\n", PGC_MAX_SEGMENTS, maxrss_kib() - rss0);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
	/* The bound of docs/failure.md (sanitizers pad every allocation). */
	CHECK(maxrss_kib() - rss0 < 160L * PGC_MAX_SEGMENTS / 1024);
#endif
	system("rm -rf segs");
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	seed = test_seed;
	/* A hang is a failure: the default SIGALRM action ends the program. */
	alarm(WATCHDOG_S);
	TEST_RUN(test_bg_read_error);
	TEST_RUN(test_bg_hook_inert);
	TEST_RUN(test_bg_wait_error);
	TEST_RUN(test_save_write_error);
	TEST_RUN(test_absurd_meta);
	TEST_RUN(test_max_file_size);
	TEST_RUN(test_huge_memfile);
	TEST_RUN(test_segment_limit);
	return test_done();
}
