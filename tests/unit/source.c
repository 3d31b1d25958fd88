/* SPDX-License-Identifier: Apache-2.0 */
/*
 * source.c - unit tests of pgc_load_opts.pages_source: an image whose
 * pages.img is read through callbacks (the command's s3:// images) loads
 * eagerly and in the background with the saved contents, reading each
 * byte of pages.img once, fill reads no larger than max_read, a waiter's
 * read one block, each block handed to verified() once checked, with the
 * bytes read; the file pages.img (here zeros) is never read; a
 * source's error becomes the load's error and a source's wrong bytes a
 * checksum error, with no hang and nothing placed; a child image reads
 * its parent's pages.img through the source too, at depth 1; bad options
 * are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "memgen.h"
#include "pgckpt.h"
#include "test.h"

#define MIB (1ULL << 20)
#define MAX_READS 4096

static uint64_t seed;
static pgc_range whole;

/* pages.img held in memory, and every read asked of it. */
struct mem_source {
	uint8_t *data;
	uint64_t size;
	pthread_mutex_t mu;
	uint64_t off[MAX_READS], len[MAX_READS];
	unsigned nreads;
	int fail_at;            /* the read number that fails (-1: none) */
	int fail_err;
	bool flip;              /* the failing read returns a flipped byte instead */
	long delay_us;
	uint64_t verified;      /* bytes verified() was given, each matching */
	unsigned bad_verified;  /* verified() calls with bytes pages.img does not hold */
};

static void mem_verified(void *arg, uint32_t depth, const void *buf, size_t len, uint64_t off)
{
	struct mem_source *s = arg;

	pthread_mutex_lock(&s->mu);
	if (depth != 0 || off > s->size || len > s->size - off || memcmp(buf, s->data + off, len))
		s->bad_verified++;
	else
		s->verified += len;
	pthread_mutex_unlock(&s->mu);
}

static ssize_t mem_read(void *arg, uint32_t depth, void *buf, size_t len, uint64_t off)
{
	struct mem_source *s = arg;
	unsigned n;

	if (depth != 0)
		return -EINVAL;   /* a standalone image */
	pthread_mutex_lock(&s->mu);
	n = s->nreads;
	if (n < MAX_READS) {
		s->off[n] = off;
		s->len[n] = len;
		s->nreads++;
	}
	pthread_mutex_unlock(&s->mu);
	if (s->delay_us)
		usleep((useconds_t)s->delay_us);
	if (off > s->size)
		return -EIO;
	if (len > s->size - off)
		len = (size_t)(s->size - off);
	memcpy(buf, s->data + off, len);
	if ((int)n == s->fail_at) {
		if (!s->flip)
			return s->fail_err;
		((uint8_t *)buf)[len / 2] ^= 1;
	}
	return (ssize_t)len;
}

/*
 * Save @len bytes of generated memory as "img" and move its pages.img
 * into @s; the file is left as zeros of the same size, so a load that
 * read it would fail its checksums.
 */
static void make_remote(struct mem_source *s, uint64_t len, enum pgc_compress c)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_save_opts so;
	struct stat st;
	int fd;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	s->fail_at = -1;
	CHECK_EQ(system("rm -rf img"), 0);
	CHECK_EQ(pgc_allocate(mf, len, &o, &whole), 0);
	CHECK_EQ(memgen_fill(mf, seed, whole), 0);
	pgc_save_opts_init(&so);
	so.compress = c;
	CHECK_EQ(pgc_save(mf, "img", &so), 0);
	pgc_memfile_destroy(mf);
	fd = open("img/pages.img", O_RDWR);
	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	s->size = (uint64_t)st.st_size;
	s->data = malloc(s->size);
	CHECK(s->data != NULL);
	CHECK_EQ(pread(fd, s->data, s->size, 0), (ssize_t)s->size);
	CHECK_EQ(ftruncate(fd, 0), 0);
	CHECK_EQ(ftruncate(fd, st.st_size), 0);
	close(fd);
}

static void free_remote(struct mem_source *s)
{
	free(s->data);
	pthread_mutex_destroy(&s->mu);
	CHECK_EQ(system("rm -rf img"), 0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Whether the reads of @s cover pages.img exactly once, none over @max bytes. */
static bool read_once(struct mem_source *s, uint64_t max)
{
	uint64_t (*r)[2] = calloc(s->nreads + 1, sizeof(*r)), at = 0;
	unsigned i;
	bool ok = s->nreads < MAX_READS;

	for (i = 0; i < s->nreads; i++) {
		r[i][0] = s->off[i];
		r[i][1] = s->len[i];
		if (s->len[i] > max)
			ok = false;
	}
	qsort(r, s->nreads, sizeof(*r), cmp_u64);
	for (i = 0; i < s->nreads && ok; i++) {
		ok = r[i][0] == at;
		at += r[i][1];
	}
	free(r);
	return ok && at == s->size;
}

static pgc_memfile *load(struct mem_source *s, bool bg, int jobs, int *ret)
{
	struct pgc_pages_source src = { .read = mem_read, .arg = s, .verified = mem_verified };
	pgc_memfile *mf = memgen_memfile();
	struct pgc_load_opts lo;

	pgc_load_opts_init(&lo);
	lo.background = bg;
	lo.jobs = jobs;
	lo.max_read = 4 * MIB;
	lo.pages_source = &src;   /* read at pgc_load; kept by the loader as a pointer */
	*ret = pgc_load(mf, "img", &lo);
	if (!*ret && bg)
		*ret = pgc_load_await(mf);
	return mf;
}

static void check_contents(pgc_memfile *mf)
{
	struct iovec iov;

	int n = pgc_map_internal(mf, whole, PGC_ACCESS_READ, &iov, 1);

	CHECK_EQ(n, 1);
	if (n == 1)
		CHECK_EQ(memgen_check(seed, whole.start, iov.iov_base, iov.iov_len), UINT64_MAX);
}

static void eager(enum pgc_compress c)
{
	struct mem_source s;
	pgc_memfile *mf;
	int ret;

	make_remote(&s, 40 * MIB, c);
	mf = load(&s, false, 3, &ret);
	CHECK_EQ(ret, 0);
	check_contents(mf);
	CHECK(read_once(&s, 4 * MIB));
	CHECK(s.nreads > 1);
	CHECK_EQ(s.verified, s.size);   /* every block, once */
	CHECK_EQ(s.bad_verified, 0);
	pgc_memfile_destroy(mf);
	free_remote(&s);
}

static void test_eager_zstd(void) { eager(PGC_COMPRESS_ZSTD); }
static void test_eager_raw(void) { eager(PGC_COMPRESS_NONE); }

/*
 * Background: a page waited for first is read alone, one block, at once;
 * every block is handed to verified() once, the one the waiter decodes
 * in parts (zstd) too.
 */
static void background_demand(enum pgc_compress c)
{
	struct pgc_pages_source src;
	struct mem_source s;
	struct pgc_load_opts lo;
	pgc_memfile *mf = memgen_memfile();
	pgc_range last;
	struct iovec iov;
	unsigned i;
	bool seen = false;

	make_remote(&s, 64 * MIB, c);
	s.delay_us = 20000;      /* a slow source: the fill is far behind */
	src = (struct pgc_pages_source){ .read = mem_read, .arg = &s, .verified = mem_verified };
	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.jobs = 2;
	lo.max_read = 4 * MIB;
	lo.pages_source = &src;
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	/* 16 pages: a quarter of memgen's pages are zero, stored in no block. */
	last = (pgc_range){ whole.end - 16 * 4096, whole.end };
	CHECK_EQ(pgc_map_internal(mf, last, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, last.start, iov.iov_base, 16 * 4096), UINT64_MAX);
	pthread_mutex_lock(&s.mu);
	/*
	 * The last 1 MiB block, by itself: the fill reads 4 MiB pieces from
	 * the start (64 MiB holds 16 of them), so only the demand reads it alone.
	 */
	for (i = 0; i < s.nreads; i++)
		if (s.off[i] + s.len[i] == s.size && s.len[i] <= MIB)
			seen = true;
	pthread_mutex_unlock(&s.mu);
	CHECK(seen);
	CHECK_EQ(pgc_load_await(mf), 0);
	check_contents(mf);
	CHECK(read_once(&s, 4 * MIB));
	CHECK_EQ(s.verified, s.size);
	CHECK_EQ(s.bad_verified, 0);
	pgc_memfile_destroy(mf);
	free_remote(&s);
}

static void test_background_demand(void) { background_demand(PGC_COMPRESS_NONE); }
static void test_background_demand_zstd(void) { background_demand(PGC_COMPRESS_ZSTD); }

/* A source's error is the load's; its wrong bytes are a checksum error. */
static void test_source_errors(void)
{
	struct mem_source s;
	pgc_memfile *mf;
	int ret, bg;

	for (bg = 0; bg < 2; bg++) {
		make_remote(&s, 24 * MIB, PGC_COMPRESS_ZSTD);
		s.fail_at = 2;
		s.fail_err = -ETIMEDOUT;
		mf = load(&s, bg, 2, &ret);
		CHECK_EQ(ret, -ETIMEDOUT);
		if (bg) {
			struct iovec iov;

			CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_READ, &iov, 1), -ETIMEDOUT);
		} else {
			CHECK_EQ(pgc_total_size(mf), 0);  /* a failed eager load leaves it empty */
		}
		pgc_memfile_destroy(mf);
		s.nreads = 0;
		s.flip = true;
		mf = load(&s, bg, 2, &ret);
		CHECK_EQ(ret, -PGC_ECHECKSUM);
		CHECK_EQ(s.bad_verified, 0);   /* the flipped block is never handed on */
		pgc_memfile_destroy(mf);
		free_remote(&s);
	}
}

/* Move img/pages.img into @s (make_remote's second half) for the image at @dir. */
static void take_pages(struct mem_source *s, const char *dir)
{
	char path[64];
	struct stat st;
	int fd;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	s->fail_at = -1;
	snprintf(path, sizeof(path), "%s/pages.img", dir);
	fd = open(path, O_RDWR);
	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	s->size = (uint64_t)st.st_size;
	s->data = malloc(s->size ? s->size : 1);
	CHECK_EQ(pread(fd, s->data, s->size, 0), (ssize_t)s->size);
	CHECK_EQ(ftruncate(fd, 0), 0);
	CHECK_EQ(ftruncate(fd, st.st_size), 0);
	close(fd);
}

/* Two layers: depth 0 is the child's pages.img, depth 1 the parent's. */
static ssize_t chain_read(void *arg, uint32_t depth, void *buf, size_t len, uint64_t off)
{
	struct mem_source *s = arg;

	return depth < 2 ? mem_read(&s[depth], 0, buf, len, off) : -EINVAL;
}

static void test_chain_layers(void)
{
	struct mem_source s[2];
	struct pgc_pages_source src = { .read = chain_read, .arg = s };
	pgc_memfile *mf = memgen_memfile(), *out = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_save_opts so;
	struct pgc_load_opts lo;
	struct iovec iov, want;

	CHECK_EQ(system("rm -rf img0 img"), 0);
	CHECK_EQ(pgc_allocate(mf, 16 * MIB, &o, &whole), 0);
	CHECK_EQ(memgen_fill(mf, seed, whole), 0);
	CHECK_EQ(pgc_save(mf, "img0", NULL), 0);
	CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_WRITE, &want, 1), 1);
	memset((uint8_t *)want.iov_base + 3 * MIB, 0x77, 2 * MIB);
	pgc_save_opts_init(&so);
	so.parent = "img0";
	CHECK_EQ(pgc_save(mf, "img", &so), 0);
	take_pages(&s[0], "img");
	take_pages(&s[1], "img0");
	pgc_load_opts_init(&lo);
	lo.pages_source = &src;
	lo.jobs = 2;
	CHECK_EQ(pgc_load(out, "img", &lo), 0);
	CHECK_EQ(pgc_map_internal(out, whole, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK(memcmp(iov.iov_base, want.iov_base, 16 * MIB) == 0);
	CHECK(s[0].nreads > 0 && s[1].nreads > 0);
	CHECK(s[0].size < s[1].size / 2);
	pgc_memfile_destroy(mf);
	pgc_memfile_destroy(out);
	free(s[0].data);
	free(s[1].data);
	CHECK_EQ(system("rm -rf img0 img"), 0);
}

static void test_bad_options(void)
{
	struct pgc_pages_source src = { .read = mem_read };
	struct mem_source s;
	struct pgc_load_opts lo;
	pgc_memfile *mf = memgen_memfile();

	make_remote(&s, 4 * MIB, PGC_COMPRESS_ZSTD);
	src.arg = &s;
	pgc_load_opts_init(&lo);
	lo.pages_source = &src;
	src.reserved[0] = 1;
	CHECK_EQ(pgc_load(mf, "img", &lo), -EINVAL);
	src.reserved[0] = 0;
	src.read = NULL;
	CHECK_EQ(pgc_load(mf, "img", &lo), -EINVAL);
	CHECK_EQ(s.nreads, 0);
	src.read = mem_read;
	CHECK_EQ(pgc_load(mf, "img", &lo), 0);
	check_contents(mf);
	pgc_memfile_destroy(mf);
	free_remote(&s);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	seed = test_rand();
	TEST_RUN(test_eager_zstd);
	TEST_RUN(test_eager_raw);
	TEST_RUN(test_background_demand);
	TEST_RUN(test_background_demand_zstd);
	TEST_RUN(test_source_errors);
	TEST_RUN(test_chain_layers);
	TEST_RUN(test_bad_options);
	return test_done();
}
