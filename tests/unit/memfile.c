/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memfile.c - unit tests of the MemoryFile core: creation, allocation and
 * placement, reference counts, reclaim, decommit, map_internal over chunk
 * boundaries and file growth, usage scans and accounting, adopt mode, bad
 * input, error strings, and a multi-threaded stress test.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "memgen.h"
#include "pgckpt.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE
#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static struct pgc_alloc_opts aopts(enum pgc_kind kind, enum pgc_direction dir,
				   uint32_t memcg)
{
	struct pgc_alloc_opts o = { .kind = kind, .dir = dir, .memcg_id = memcg };

	return o;
}

static int alloc(pgc_memfile *mf, uint64_t len, enum pgc_direction dir, pgc_range *r)
{
	struct pgc_alloc_opts o = aopts(PGC_KIND_ANONYMOUS, dir, 0);

	return pgc_allocate(mf, len, &o, r);
}

/* Map @r (inside one chunk) and return its address, or NULL. */
static uint8_t *map1(pgc_memfile *mf, pgc_range r, int access)
{
	struct iovec iov;

	if (pgc_map_internal(mf, r, access, &iov, 1) != 1)
		return NULL;
	return iov.iov_base;
}

struct seg_stats {
	size_t count, freed;
	uint64_t bytes;
};

static int seg_stat_fn(void *arg, const struct pgc_segment *s)
{
	struct seg_stats *st = arg;

	st->count++;
	st->bytes += s->range.end - s->range.start;
	if (!s->refs)
		st->freed++;
	return 0;
}

static struct seg_stats seg_stats(pgc_memfile *mf)
{
	struct seg_stats st = { 0 };

	pgc_for_each_segment(mf, seg_stat_fn, &st);
	return st;
}

/* Wait (up to 10 s) until the reclaimer has no freed segment left. */
static bool wait_reclaimed(pgc_memfile *mf)
{
	int i;

	for (i = 0; i < 10000; i++) {
		if (seg_stats(mf).freed == 0)
			return true;
		sleep_ms(1);
	}
	return false;
}

static bool all_equal(const uint8_t *p, size_t len, uint8_t v)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* ---- creation ---------------------------------------------------------- */

static void test_create_destroy(void)
{
	struct pgc_memfile_opts o;
	pgc_memfile *mf = NULL;
	struct stat st;
	int fd;

	CHECK_EQ(pgc_memfile_new(NULL, &mf), 0);
	CHECK(pgc_memfile_fd(mf) >= 0);
	CHECK_EQ(pgc_total_size(mf), 0);
	CHECK_EQ(seg_stats(mf).count, 0);
	CHECK(!pgc_is_disk_backed(mf));
	pgc_memfile_destroy(mf);
	pgc_memfile_destroy(NULL);
	CHECK(!pgc_is_disk_backed(NULL));

	/* disk_backed is kept and reported (gVisor's IsDiskBacked). */
	pgc_memfile_opts_init(&o);
	o.disk_backed = true;
	CHECK_EQ(pgc_memfile_new(&o, &mf), 0);
	CHECK(pgc_is_disk_backed(mf));
	pgc_memfile_destroy(mf);

	pgc_memfile_opts_init(&o);
	CHECK_EQ(o.fd, -1);
	o.delayed_eviction = (enum pgc_delayed_eviction)42;
	CHECK_EQ(pgc_memfile_new(&o, &mf), -EINVAL);
	CHECK_EQ(pgc_memfile_new(&o, NULL), -EINVAL);

	/* A caller-given file is truncated to zero and owned. */
	fd = memfd_create("t", 0);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, 5 * PAGE), 0);
	pgc_memfile_opts_init(&o);
	o.fd = fd;
	o.disable_ima_workaround = true;
	CHECK_EQ(pgc_memfile_new(&o, &mf), 0);
	CHECK_EQ(pgc_memfile_fd(mf), fd);
	CHECK_EQ(fstat(fd, &st), 0);
	CHECK_EQ(st.st_size, 0);
	pgc_memfile_destroy(mf);
	CHECK(fcntl(fd, F_GETFD) < 0);
}

/* ---- allocation, refs, reclaim ------------------------------------------ */

static void test_alloc_refs_reclaim(void)
{
	pgc_memfile *mf = memgen_memfile();
	pgc_range r, r2;
	uint8_t *p;

	CHECK_EQ(alloc(mf, 4 * PAGE, PGC_BOTTOM_UP, &r), 0);
	CHECK_EQ(r.start, 0);
	CHECK_EQ(r.end, 4 * PAGE);
	CHECK_EQ(pgc_total_size(mf), PGC_CHUNK_SIZE);
	p = map1(mf, r, PGC_ACCESS_READ | PGC_ACCESS_WRITE);
	CHECK(p != NULL);
	if (!p)
		goto exit;
	CHECK(all_equal(p, 4 * PAGE, 0));
	memset(p, 0xab, 4 * PAGE);

	CHECK_EQ(pgc_has_unique_ref(mf, r), 1);
	CHECK_EQ(pgc_incref(mf, (pgc_range){ PAGE, 2 * PAGE }, 0), 0);
	CHECK_EQ(pgc_has_unique_ref(mf, r), 0);
	CHECK_EQ(pgc_has_unique_ref(mf, (pgc_range){ 0, PAGE }), 1);
	CHECK_EQ(pgc_has_unique_ref(mf, (pgc_range){ PAGE, 2 * PAGE }), 0);
	CHECK_EQ(seg_stats(mf).count, 3);

	/* Free all but the page holding two references. */
	CHECK_EQ(pgc_decref(mf, r), 0);
	CHECK_EQ(pgc_has_unique_ref(mf, (pgc_range){ PAGE, 2 * PAGE }), 1);
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(seg_stats(mf).count, 1);
	CHECK_EQ(seg_stats(mf).bytes, PAGE);
	CHECK(all_equal(p + PAGE, PAGE, 0xab));

	/* Reclaimed pages come back zeroed, at the lowest offset. */
	CHECK_EQ(alloc(mf, PAGE, PGC_BOTTOM_UP, &r2), 0);
	CHECK_EQ(r2.start, 0);
	p = map1(mf, r2, PGC_ACCESS_READ);
	CHECK(p && all_equal(p, PAGE, 0));
	CHECK_EQ(pgc_decref(mf, r2), 0);
	CHECK_EQ(pgc_decref(mf, (pgc_range){ PAGE, 2 * PAGE }), 0);
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(seg_stats(mf).count, 0);
exit:
	pgc_memfile_destroy(mf);
}

static void test_placement(void)
{
	pgc_memfile *mf = memgen_memfile();
	pgc_range a, b, c, d;

	/* Top-down on an empty file: grow to one chunk, take its end. */
	CHECK_EQ(alloc(mf, PAGE, PGC_TOP_DOWN, &a), 0);
	CHECK_EQ(a.start, GIB - PAGE);
	CHECK_EQ(a.end, GIB);
	CHECK_EQ(alloc(mf, PAGE, PGC_TOP_DOWN, &b), 0);
	CHECK_EQ(b.start, GIB - 2 * PAGE);
	/* Bottom-up: the lowest gap. */
	CHECK_EQ(alloc(mf, PAGE, PGC_BOTTOM_UP, &c), 0);
	CHECK_EQ(c.start, 0);
	/* >= 2 MiB: 2 MiB-aligned. */
	CHECK_EQ(alloc(mf, 2 * MIB + PAGE, PGC_BOTTOM_UP, &d), 0);
	CHECK_EQ(d.start, 2 * MIB);
	CHECK_EQ(d.end, 4 * MIB + PAGE);
	CHECK_EQ(pgc_decref(mf, d), 0);
	CHECK_EQ(alloc(mf, 3 * MIB, PGC_TOP_DOWN, &d), 0);
	CHECK_EQ(d.start, GIB - 4 * MIB);
	CHECK_EQ(d.start % (2 * MIB), 0);
	CHECK_EQ(pgc_total_size(mf), GIB);
	/* Top-down that does not fit doubles the file. */
	CHECK_EQ(pgc_decref(mf, d), 0);
	CHECK_EQ(alloc(mf, GIB, PGC_TOP_DOWN, &d), 0);
	CHECK_EQ(d.start, GIB);
	CHECK_EQ(pgc_total_size(mf), 2 * GIB);
	CHECK_EQ(pgc_decref(mf, a), 0);
	CHECK_EQ(pgc_decref(mf, b), 0);
	CHECK_EQ(pgc_decref(mf, c), 0);
	CHECK_EQ(pgc_decref(mf, d), 0);
	CHECK(wait_reclaimed(mf));
	pgc_memfile_destroy(mf);
}

static void test_decommit(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_accounting acc;
	pgc_range r;
	uint8_t *p;

	CHECK_EQ(alloc(mf, 8 * PAGE, PGC_BOTTOM_UP, &r), 0);
	p = map1(mf, r, PGC_ACCESS_WRITE);
	CHECK(p != NULL);
	if (!p)
		goto exit;
	memset(p, 0x5a, 8 * PAGE);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.kind[PGC_KIND_ANONYMOUS], 8 * PAGE);
	CHECK_EQ(pgc_decommit(mf, (pgc_range){ 2 * PAGE, 5 * PAGE }), 0);
	CHECK(all_equal(p, 2 * PAGE, 0x5a));
	CHECK(all_equal(p + 2 * PAGE, 3 * PAGE, 0));
	CHECK(all_equal(p + 5 * PAGE, 3 * PAGE, 0x5a));
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.kind[PGC_KIND_ANONYMOUS], 5 * PAGE);
	CHECK_EQ(acc.total, 5 * PAGE);
	/* The pages are still allocated. */
	CHECK_EQ(pgc_has_unique_ref(mf, r), 1);
	CHECK_EQ(pgc_decref(mf, r), 0);
exit:
	pgc_memfile_destroy(mf);
}

static void test_manual_zeroing(void)
{
	struct pgc_memfile_opts o;
	pgc_memfile *mf = NULL;
	pgc_range r;
	uint8_t *p;

	pgc_memfile_opts_init(&o);
	o.manual_zeroing = true;
	CHECK_EQ(pgc_memfile_new(&o, &mf), 0);
	if (!mf)
		return;
	CHECK_EQ(alloc(mf, 4 * PAGE, PGC_BOTTOM_UP, &r), 0);
	p = map1(mf, r, PGC_ACCESS_WRITE);
	CHECK(p != NULL);
	if (p) {
		memset(p, 0xee, 4 * PAGE);
		CHECK_EQ(pgc_decommit(mf, (pgc_range){ 0, PAGE }), 0);
		CHECK(all_equal(p, PAGE, 0));
		CHECK(all_equal(p + PAGE, 3 * PAGE, 0xee));
	}
	CHECK_EQ(pgc_decref(mf, r), 0);
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(alloc(mf, 4 * PAGE, PGC_BOTTOM_UP, &r), 0);
	CHECK_EQ(r.start, 0);
	p = map1(mf, r, PGC_ACCESS_READ);
	CHECK(p && all_equal(p, 4 * PAGE, 0));
	pgc_memfile_destroy(mf);
}

/* ---- map_internal ------------------------------------------------------- */

static void test_map_chunks(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct iovec iov[4];
	pgc_range small, big, sub;
	uint64_t off;
	uint8_t *p0, buf[8];
	int n;

	CHECK_EQ(alloc(mf, PAGE, PGC_BOTTOM_UP, &small), 0);
	p0 = map1(mf, small, PGC_ACCESS_WRITE);
	CHECK(p0 != NULL);
	if (p0)
		memcpy(p0, "chunk-0", 8);
	/* Grows the file to 3 GiB (2 MiB-aligned start, chunk-rounded end). */
	CHECK_EQ(alloc(mf, 2 * GIB, PGC_BOTTOM_UP, &big), 0);
	CHECK_EQ(big.start, 2 * MIB);
	CHECK_EQ(pgc_total_size(mf), 3 * GIB);

	CHECK_EQ(pgc_map_internal(mf, big, PGC_ACCESS_READ, iov, 4), 3);
	CHECK_EQ(pgc_map_internal(mf, big, PGC_ACCESS_READ, iov, 2), -ENOBUFS);
	CHECK_EQ(pgc_map_internal(mf, big, PGC_ACCESS_EXEC, iov, 4), -EACCES);
	CHECK_EQ(pgc_map_internal(mf, big, PGC_ACCESS_READ | PGC_ACCESS_EXEC, iov, 4), -EACCES);

	/* A range straddling the first chunk boundary: two iovecs. */
	sub.start = GIB - 2 * PAGE;
	sub.end = GIB + 2 * PAGE;
	n = pgc_map_internal(mf, sub, PGC_ACCESS_WRITE, iov, 4);
	CHECK_EQ(n, 2);
	if (n == 2) {
		CHECK_EQ(iov[0].iov_len, 2 * PAGE);
		CHECK_EQ(iov[1].iov_len, 2 * PAGE);
		memset(iov[0].iov_base, 1, iov[0].iov_len);
		memset(iov[1].iov_base, 2, iov[1].iov_len);
	}
	/* Unaligned ranges are fine for mapping. */
	n = pgc_map_internal(mf, (pgc_range){ 2 * GIB + 100, 2 * GIB + 108 },
			     PGC_ACCESS_WRITE, iov, 1);
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK_EQ(iov[0].iov_len, 8);
		memcpy(iov[0].iov_base, "chunk-2", 8);
	}
	/* The file agrees with what was written through the mappings. */
	for (off = GIB - 2 * PAGE; off < GIB + 2 * PAGE; off += PAGE) {
		CHECK_EQ(pread(pgc_memfile_fd(mf), buf, 1, (off_t)off), 1);
		CHECK_EQ(buf[0], off < GIB ? 1 : 2);
	}
	CHECK_EQ(pread(pgc_memfile_fd(mf), buf, 8, 2 * GIB + 100), 8);
	CHECK(memcmp(buf, "chunk-2", 8) == 0);
	/* The old chunk 0 mapping survived the growth. */
	p0 = map1(mf, small, PGC_ACCESS_READ);
	CHECK(p0 && memcmp(p0, "chunk-0", 8) == 0);

	CHECK_EQ(pgc_decref(mf, big), 0);
	CHECK_EQ(pgc_decref(mf, small), 0);
	CHECK(wait_reclaimed(mf));
	pgc_memfile_destroy(mf);
}

/* ---- modes and readers --------------------------------------------------- */

static void test_alloc_modes(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = aopts(PGC_KIND_ANONYMOUS, PGC_BOTTOM_UP, 0);
	uint64_t used = 0;
	pgc_range r;
	uint8_t *p;

	o.mode = PGC_ALLOC_COMMIT;
	CHECK_EQ(pgc_allocate(mf, 16 * PAGE, &o, &r), 0);
	CHECK_EQ(pgc_total_usage(mf, &used), 0);
	CHECK(used >= 16 * PAGE);
	p = map1(mf, r, PGC_ACCESS_READ);
	CHECK(p && all_equal(p, 16 * PAGE, 0));
	CHECK_EQ(pgc_decref(mf, r), 0);
	CHECK(wait_reclaimed(mf));

	o.mode = PGC_ALLOC_WRITE_POPULATE;
	CHECK_EQ(pgc_allocate(mf, 4 * MIB, &o, &r), 0);
	p = map1(mf, r, PGC_ACCESS_WRITE);
	CHECK(p && all_equal(p, 4 * MIB, 0));
	CHECK_EQ(pgc_decref(mf, r), 0);

	o.mode = (enum pgc_alloc_mode)9;
#ifndef PGC_DEBUG
	CHECK_EQ(pgc_allocate(mf, PAGE, &o, &r), -EINVAL);
#endif
	CHECK(wait_reclaimed(mf));
	pgc_memfile_destroy(mf);
}

struct reader {
	uint64_t pos, limit;   /* produce bytes until limit */
	int err;               /* returned at limit if non-zero */
	size_t max_chunk;
};

static int64_t reader_fn(void *arg, void *dst, size_t len)
{
	struct reader *rd = arg;
	uint8_t *d = dst;
	size_t i;

	if (rd->pos >= rd->limit)
		return rd->err;
	if (len > rd->limit - rd->pos)
		len = rd->limit - rd->pos;
	if (len > rd->max_chunk)
		len = rd->max_chunk;
	for (i = 0; i < len; i++)
		d[i] = (uint8_t)((rd->pos + i) * 7);
	rd->pos += len;
	return (int64_t)len;
}

static bool pattern_ok(const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != (uint8_t)(i * 7))
			return false;
	return true;
}

static void test_reader(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = aopts(PGC_KIND_PAGECACHE, PGC_BOTTOM_UP, 0);
	struct reader rd = { 0, 8 * PAGE, 0, 3000 };
	pgc_range r;
	uint8_t *p;

	o.reader = reader_fn;
	o.reader_arg = &rd;
	CHECK_EQ(pgc_allocate(mf, 8 * PAGE, &o, &r), 0);
	CHECK_EQ(r.end - r.start, 8 * PAGE);
	p = map1(mf, r, PGC_ACCESS_READ);
	CHECK(p && pattern_ok(p, 8 * PAGE));
	CHECK_EQ(pgc_decref(mf, r), 0);
	CHECK(wait_reclaimed(mf));

	/* End of input after 2.5 pages: keep 2 pages, return 0. */
	rd = (struct reader){ 0, 5 * PAGE / 2, 0, 1 << 20 };
	CHECK_EQ(pgc_allocate(mf, 8 * PAGE, &o, &r), 0);
	CHECK_EQ(r.end - r.start, 2 * PAGE);
	p = map1(mf, r, PGC_ACCESS_READ);
	CHECK(p && pattern_ok(p, 2 * PAGE));
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(seg_stats(mf).bytes, 2 * PAGE);
	CHECK_EQ(pgc_decref(mf, r), 0);
	CHECK(wait_reclaimed(mf));

	/* An error after one page: keep one page, return the error. */
	rd = (struct reader){ 0, PAGE + 10, -EIO, 1 << 20 };
	CHECK_EQ(pgc_allocate(mf, 4 * PAGE, &o, &r), -EIO);
	CHECK_EQ(r.end - r.start, PAGE);
	CHECK_EQ(pgc_decref(mf, r), 0);
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(seg_stats(mf).count, 0);
	pgc_memfile_destroy(mf);
}

static void test_max_allocatable(void)
{
	struct pgc_memfile_opts o;
	struct pgc_alloc_opts ao = aopts(PGC_KIND_ANONYMOUS, PGC_BOTTOM_UP, 0);
	pgc_memfile *mf = NULL;
	pgc_range r, r2, r3;
	uint8_t *p;

	pgc_memfile_opts_init(&o);
	o.max_allocatable = MIB;
	CHECK_EQ(pgc_memfile_new(&o, &mf), 0);
	if (!mf)
		return;
	CHECK_EQ(pgc_allocate(mf, 2 * MIB, &ao, &r), -ENOMEM);
	CHECK_EQ(pgc_allocate(mf, 768 * 1024, &ao, &r), 0);
	p = map1(mf, r, PGC_ACCESS_WRITE);
	CHECK(p != NULL);
	if (p)
		memset(p, 1, 768 * 1024);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_allocate(mf, 512 * 1024, &ao, &r2), -ENOMEM);
	CHECK_EQ(pgc_allocate(mf, 256 * 1024, &ao, &r2), 0);
	/*
	 * Usage that went away behind the MemoryFile's back: the stale
	 * estimate is double-checked against the file, so this fits.
	 */
	CHECK_EQ(fallocate(pgc_memfile_fd(mf), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			   (off_t)r.start, 768 * 1024), 0);
	CHECK_EQ(pgc_allocate(mf, 512 * 1024, &ao, &r3), 0);
	CHECK_EQ(pgc_decref(mf, r), 0);
	CHECK_EQ(pgc_decref(mf, r2), 0);
	CHECK_EQ(pgc_decref(mf, r3), 0);
	CHECK(wait_reclaimed(mf));
	pgc_memfile_destroy(mf);
}

/* ---- usage and accounting ------------------------------------------------ */

static void touch_pages(pgc_memfile *mf, pgc_range r, const uint64_t *idx, size_t n)
{
	uint8_t *p = map1(mf, r, PGC_ACCESS_WRITE);
	size_t i;

	CHECK(p != NULL);
	for (i = 0; p && i < n; i++)
		p[idx[i] * PAGE + test_rand_below(PAGE)] = 1;
}

static void test_update_usage(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_accounting acc;
	uint64_t idx[64], used, n, i;
	pgc_range r;

	CHECK_EQ(alloc(mf, 64 * PAGE, PGC_BOTTOM_UP, &r), 0);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.total, 0);

	/* N distinct random pages. */
	n = 1 + test_rand_below(40);
	for (i = 0; i < n; i++)
		idx[i] = i * 64 / n;
	touch_pages(mf, r, idx, n);
	CHECK_EQ(pgc_total_usage(mf, &used), 0);
	CHECK_EQ(used, n * PAGE);
	sleep_ms(20);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.kind[PGC_KIND_ANONYMOUS], n * PAGE);
	CHECK_EQ(acc.total, n * PAGE);
	CHECK_EQ(pgc_accounting(mf, 0, &acc), 0);
	CHECK_EQ(acc.total, n * PAGE);

	/* Nothing new: no change (the scan is elided). */
	sleep_ms(20);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.total, n * PAGE);

	/* Touch every page now. */
	for (i = 0; i < 64; i++)
		idx[i] = i;
	touch_pages(mf, r, idx, 64);
	sleep_ms(20);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.total, 64 * PAGE);

	/* Freed committed pages count as System until reclaimed. */
	CHECK_EQ(pgc_decref(mf, r), 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.kind[PGC_KIND_ANONYMOUS], 0);
	CHECK(acc.total == 64 * PAGE || acc.total == 0);
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.total, 0);
	CHECK_EQ(pgc_total_usage(mf, &used), 0);
	CHECK_EQ(used, 0);
	pgc_memfile_destroy(mf);
}

static void test_accounting_memcg(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o7 = aopts(PGC_KIND_PAGECACHE, PGC_BOTTOM_UP, 7);
	struct pgc_alloc_opts o9 = aopts(PGC_KIND_TMPFS, PGC_TOP_DOWN, 9);
	static const uint64_t idx[] = { 0, 2, 4 };
	const uint32_t only7 = 7;
	struct pgc_accounting acc;
	pgc_range a, b;

	CHECK_EQ(pgc_allocate(mf, 8 * PAGE, &o7, &a), 0);
	CHECK_EQ(pgc_allocate(mf, 8 * PAGE, &o9, &b), 0);
	touch_pages(mf, a, idx, 3);
	touch_pages(mf, b, idx, 2);

	/* Scan memcg 7 only. */
	CHECK_EQ(pgc_update_usage(mf, &only7, 1), 0);
	CHECK_EQ(pgc_accounting(mf, 7, &acc), 0);
	CHECK_EQ(acc.kind[PGC_KIND_PAGECACHE], 3 * PAGE);
	CHECK_EQ(acc.total, 3 * PAGE);
	CHECK_EQ(pgc_accounting(mf, 9, &acc), 0);
	CHECK_EQ(acc.kind[PGC_KIND_TMPFS], 0);

	sleep_ms(20);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_accounting(mf, 9, &acc), 0);
	CHECK_EQ(acc.kind[PGC_KIND_TMPFS], 2 * PAGE);
	CHECK_EQ(acc.total, 2 * PAGE);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.kind[PGC_KIND_PAGECACHE], 3 * PAGE);
	CHECK_EQ(acc.kind[PGC_KIND_TMPFS], 2 * PAGE);
	CHECK_EQ(acc.total, 5 * PAGE);
	CHECK_EQ(pgc_accounting(mf, 12345, &acc), 0);
	CHECK_EQ(acc.total, 0);
	CHECK_EQ(pgc_accounting(mf, 0, NULL), -EINVAL);

	CHECK_EQ(pgc_decref(mf, a), 0);
	CHECK_EQ(pgc_accounting(mf, 7, &acc), 0);
	CHECK_EQ(acc.kind[PGC_KIND_PAGECACHE], 0);
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(pgc_accounting(mf, 7, &acc), 0);
	CHECK_EQ(acc.total, 0);
	CHECK_EQ(pgc_decref(mf, b), 0);
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.total, 0);
	pgc_memfile_destroy(mf);
}

struct seg_list {
	struct pgc_segment s[8];
	int n;
};

static int seg_list_fn(void *arg, const struct pgc_segment *s)
{
	struct seg_list *l = arg;

	if (l->n == 8)
		return 1;
	l->s[l->n++] = *s;
	return 0;
}

static void test_for_each_segment(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = aopts(PGC_KIND_TMPFS, PGC_BOTTOM_UP, 3);
	struct seg_list l = { .n = 0 };
	pgc_range a, b;

	CHECK_EQ(pgc_allocate(mf, 2 * PAGE, &o, &a), 0);
	o.kind = PGC_KIND_RAMDISK;
	CHECK_EQ(pgc_allocate(mf, PAGE, &o, &b), 0);
	CHECK_EQ(pgc_incref(mf, b, 0), 0);
	CHECK_EQ(pgc_for_each_segment(mf, seg_list_fn, &l), 0);
	CHECK_EQ(l.n, 2);
	if (l.n == 2) {
		CHECK_EQ(l.s[0].range.start, 0);
		CHECK_EQ(l.s[0].range.end, 2 * PAGE);
		CHECK_EQ(l.s[0].kind, PGC_KIND_TMPFS);
		CHECK_EQ(l.s[0].refs, 1);
		CHECK_EQ(l.s[0].memcg_id, 3);
		CHECK(!l.s[0].known_committed);
		CHECK_EQ(l.s[1].kind, PGC_KIND_RAMDISK);
		CHECK_EQ(l.s[1].refs, 2);
	}
	l.n = 8;
	CHECK_EQ(pgc_for_each_segment(mf, seg_list_fn, &l), 1);
	CHECK_EQ(pgc_decref(mf, a), 0);
	CHECK_EQ(pgc_decref(mf, b), 0);
	CHECK_EQ(pgc_decref(mf, b), 0);
	CHECK(wait_reclaimed(mf));
	pgc_memfile_destroy(mf);
}

/* ---- adopt mode ---------------------------------------------------------- */

static int write_file(const char *path, size_t len)
{
	uint8_t buf[PAGE];
	size_t done = 0, i;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7);
	while (done < len) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);

		if (write(fd, buf, n) != (ssize_t)n)
			break;
		done += n;
	}
	close(fd);
	return done == len ? 0 : -1;
}

static void test_adopt(void)
{
	struct pgc_memfile_opts o;
	struct seg_list l = { .n = 0 };
	pgc_memfile *mf = NULL;
	pgc_range r, all = { 0, 4 * PAGE };
	struct iovec iov;
	uint8_t *p;

	CHECK_EQ(write_file("adopt.bin", 3 * PAGE + 100), 0);
	pgc_memfile_opts_init(&o);
	o.adopt = true;
	o.fd = open("adopt.bin", O_RDWR);
	CHECK(o.fd >= 0);
	CHECK_EQ(pgc_memfile_new(&o, &mf), 0);
	if (!mf)
		return;
	CHECK_EQ(pgc_total_size(mf), 4 * PAGE);
	CHECK_EQ(pgc_for_each_segment(mf, seg_list_fn, &l), 0);
	CHECK_EQ(l.n, 1);
	CHECK_EQ(l.s[0].range.start, 0);
	CHECK_EQ(l.s[0].range.end, 4 * PAGE);
	CHECK_EQ(l.s[0].kind, PGC_KIND_SYSTEM);
	CHECK_EQ(l.s[0].refs, 1);
	CHECK(!l.s[0].known_committed);
	p = map1(mf, all, PGC_ACCESS_READ);
	CHECK(p && pattern_ok(p, PAGE) && pattern_ok(p + 3 * PAGE, 100));
	/* Growth from an adopted size rounds up to whole chunks. */
	CHECK_EQ(alloc(mf, PAGE, PGC_BOTTOM_UP, &r), 0);
	CHECK_EQ(r.start, 4 * PAGE);
	CHECK_EQ(pgc_total_size(mf), GIB);
	CHECK_EQ(pgc_decref(mf, r), 0);
	CHECK_EQ(pgc_has_unique_ref(mf, all), 1);
	pgc_memfile_destroy(mf);

	/* Read-only: PROT_READ mappings, -EBADF for anything that writes. */
	mf = NULL;
	pgc_memfile_opts_init(&o);
	o.adopt = true;
	o.fd = open("adopt.bin", O_RDONLY);
	CHECK(o.fd >= 0);
	CHECK_EQ(pgc_memfile_new(&o, &mf), 0);
	if (!mf)
		return;
	p = map1(mf, all, PGC_ACCESS_READ);
	CHECK(p && pattern_ok(p + PAGE, PAGE));
	CHECK_EQ(pgc_map_internal(mf, all, PGC_ACCESS_WRITE, &iov, 1), -EBADF);
	CHECK_EQ(alloc(mf, PAGE, PGC_BOTTOM_UP, &r), -EBADF);
	CHECK_EQ(pgc_decommit(mf, all), -EBADF);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_decref(mf, all), 0);
	pgc_memfile_destroy(mf);

	/* Without adopt a read-only file cannot be truncated: error, fd kept. */
	pgc_memfile_opts_init(&o);
	o.fd = open("adopt.bin", O_RDONLY);
	mf = NULL;
	CHECK(pgc_memfile_new(&o, &mf) < 0);
	CHECK(mf == NULL);
	CHECK(fcntl(o.fd, F_GETFD) >= 0);
	close(o.fd);
}

static void test_decommit_on_destroy(void)
{
	struct pgc_memfile_opts o;
	pgc_memfile *mf = NULL;
	struct stat st;
	pgc_range r;
	int fd, pass;

	for (pass = 0; pass < 2; pass++) {
		fd = memfd_create("dod", 0);
		pgc_memfile_opts_init(&o);
		o.fd = dup(fd);
		o.decommit_on_destroy = pass == 1;
		CHECK_EQ(pgc_memfile_new(&o, &mf), 0);
		if (!mf)
			return;
		CHECK_EQ(alloc(mf, 4 * PAGE, PGC_BOTTOM_UP, &r), 0);
		CHECK_EQ(pwrite(fd, "x", 1, PAGE), 1);
		/* Destroy drops live allocations. */
		pgc_memfile_destroy(mf);
		mf = NULL;
		CHECK_EQ(fstat(fd, &st), 0);
		if (pass == 1)
			CHECK_EQ(st.st_blocks, 0);
		else
			CHECK(st.st_blocks > 0);
		close(fd);
	}
}

/* ---- bad input ------------------------------------------------------------ */

static void test_bad_input(void)
{
#ifdef PGC_DEBUG
	printf("  (skipped: debug builds assert on bad input)\n");
#else
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = aopts(PGC_KIND_ANONYMOUS, PGC_BOTTOM_UP, 0);
	struct iovec iov[2];
	pgc_range r, out = { 1, 2 };

	CHECK_EQ(pgc_allocate(mf, 0, &o, &out), -EINVAL);
	CHECK_EQ(pgc_allocate(mf, 100, &o, &out), -EINVAL);
	CHECK_EQ(out.start, 1);
	o.kind = PGC_KIND_COUNT;
	CHECK_EQ(pgc_allocate(mf, PAGE, &o, &out), -EINVAL);
	o.kind = PGC_KIND_ANONYMOUS;
	o.dir = (enum pgc_direction)5;
	CHECK_EQ(pgc_allocate(mf, PAGE, &o, &out), -EINVAL);
	CHECK_EQ(pgc_allocate(NULL, PAGE, NULL, &out), -EINVAL);
	CHECK_EQ(pgc_allocate(mf, PAGE, NULL, NULL), -EINVAL);
	CHECK_EQ(seg_stats(mf).count, 0);

	CHECK_EQ(alloc(mf, 4 * PAGE, PGC_BOTTOM_UP, &r), 0);
	/* Not allocated, partly allocated, unaligned, empty. */
	CHECK_EQ(pgc_incref(mf, (pgc_range){ 8 * PAGE, 9 * PAGE }, 0), -EINVAL);
	CHECK_EQ(pgc_incref(mf, (pgc_range){ 2 * PAGE, 6 * PAGE }, 0), -EINVAL);
	CHECK_EQ(pgc_decref(mf, (pgc_range){ 2 * PAGE, 6 * PAGE }), -EINVAL);
	CHECK_EQ(pgc_incref(mf, (pgc_range){ 100, PAGE }, 0), -EINVAL);
	CHECK_EQ(pgc_decref(mf, (pgc_range){ 0, PAGE + 1 }), -EINVAL);
	CHECK_EQ(pgc_decref(mf, (pgc_range){ PAGE, PAGE }), -EINVAL);
	CHECK_EQ(pgc_decref(mf, (pgc_range){ 2 * PAGE, PAGE }), -EINVAL);
	CHECK_EQ(pgc_has_unique_ref(mf, (pgc_range){ 3 * PAGE, 5 * PAGE }), -EINVAL);
	CHECK_EQ(pgc_has_unique_ref(mf, (pgc_range){ 0, 0 }), -EINVAL);
	/* Nothing changed. */
	CHECK_EQ(seg_stats(mf).count, 1);
	CHECK_EQ(pgc_has_unique_ref(mf, r), 1);

	/* Decref below zero: the freed part makes the whole call fail. */
	CHECK_EQ(pgc_decref(mf, (pgc_range){ 0, PAGE }), 0);
	CHECK_EQ(pgc_decref(mf, r), -EINVAL);
	CHECK_EQ(pgc_decref(mf, (pgc_range){ 0, PAGE }), -EINVAL);
	CHECK_EQ(pgc_incref(mf, (pgc_range){ 0, PAGE }, 0), -EINVAL);
	CHECK_EQ(pgc_has_unique_ref(mf, (pgc_range){ PAGE, 4 * PAGE }), 1);

	CHECK_EQ(pgc_map_internal(mf, (pgc_range){ PAGE, PAGE }, PGC_ACCESS_READ, iov, 2), -EINVAL);
	CHECK_EQ(pgc_map_internal(mf, (pgc_range){ 0, 2 * GIB }, PGC_ACCESS_READ, iov, 2), -EINVAL);
	CHECK_EQ(pgc_map_internal(mf, r, 64, iov, 2), -EINVAL);
	CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_READ, NULL, 0), -ENOBUFS);
	CHECK_EQ(pgc_decommit(mf, (pgc_range){ GIB, GIB + PAGE }), -EINVAL);
	CHECK_EQ(pgc_decommit(mf, (pgc_range){ 0, 10 }), -EINVAL);
	CHECK_EQ(pgc_update_usage(NULL, NULL, 0), -EINVAL);
	CHECK_EQ(pgc_for_each_segment(mf, NULL, NULL), -EINVAL);

	CHECK_EQ(pgc_decref(mf, (pgc_range){ PAGE, 4 * PAGE }), 0);
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(seg_stats(mf).count, 0);
	pgc_memfile_destroy(mf);
#endif
}

static void test_errors(void)
{
	static const int codes[] = {
		PGC_EFOREIGN, PGC_EVERSION, PGC_ECORRUPT, PGC_ECHECKSUM,
		PGC_ETRUNCATED, PGC_ELOADFAIL,
	};
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *s = pgc_strerror(-codes[i]);

		CHECK(s && *s && strcmp(s, "Unknown error") != 0);
		CHECK(strcmp(s, pgc_strerror(codes[i])) == 0);
		CHECK_EQ(pgc_is_image_error(-codes[i]), codes[i] != PGC_ELOADFAIL);
	}
	CHECK(strcmp(pgc_strerror(-ENOENT), "No such file or directory") == 0);
	CHECK(strcmp(pgc_strerror(0), "Success") == 0);
	CHECK(strcmp(pgc_strerror(-99999), "Unknown error") == 0);
	CHECK(pgc_strerror(-2147483647 - 1) != NULL);
	CHECK(!pgc_is_image_error(-EIO));
	CHECK(!pgc_is_image_error(0));
}

/* ---- stress ---------------------------------------------------------------- */

#define STRESS_THREADS 4
#define STRESS_LIVE 16

struct stress {
	pgc_memfile *mf;
	uint64_t seed;
	int iters;
	int failures;
	pthread_t tid;
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

struct live {
	pgc_range r;
	uint8_t tag;
	bool shared;   /* holds an extra reference */
};

static bool stress_verify(pgc_memfile *mf, const struct live *l)
{
	struct iovec iov[2];
	int n, i;

	n = pgc_map_internal(mf, l->r, PGC_ACCESS_READ, iov, 2);
	if (n < 1)
		return false;
	for (i = 0; i < n; i++)
		if (!all_equal(iov[i].iov_base, iov[i].iov_len, l->tag))
			return false;
	return true;
}

static void *stress_main(void *arg)
{
	struct stress *st = arg;
	struct live live[STRESS_LIVE];
	int nlive = 0, it, i, n, want;
	struct iovec iov[2];
	uint64_t s = st->seed;

	for (it = 0; it < st->iters; it++) {
		uint64_t op = rng_next(&s) % 10;

		if (op < 5 && nlive < STRESS_LIVE) {
			struct pgc_alloc_opts o = {
				.kind = (enum pgc_kind)(1 + rng_next(&s) % 4),
				.dir = (enum pgc_direction)(rng_next(&s) % 2),
				.memcg_id = (uint32_t)(rng_next(&s) % 3),
				.mode = (enum pgc_alloc_mode)(rng_next(&s) % 3),
			};
			uint64_t pages = 1 + rng_next(&s) % 16;
			struct live *l = &live[nlive];

			if (rng_next(&s) % 16 == 0)
				pages = 512 + rng_next(&s) % 64;  /* >= 2 MiB */
			if (pgc_allocate(st->mf, pages * PAGE, &o, &l->r) != 0) {
				st->failures++;
				continue;
			}
			/* Fresh pages are zero (reclaimed ones were punched out). */
			l->tag = 0;
			if (!stress_verify(st->mf, l))
				st->failures++;
			l->tag = (uint8_t)(1 + rng_next(&s) % 255);
			n = pgc_map_internal(st->mf, l->r, PGC_ACCESS_WRITE, iov, 2);
			if (n < 1) {
				st->failures++;
				continue;
			}
			for (i = 0; i < n; i++)
				memset(iov[i].iov_base, l->tag, iov[i].iov_len);
			l->shared = false;
			nlive++;
		} else if (op < 7 && nlive) {
			struct live *l = &live[rng_next(&s) % (uint64_t)nlive];

			want = l->shared ? 0 : 1;
			if (pgc_has_unique_ref(st->mf, l->r) != want)
				st->failures++;
			if (!l->shared && pgc_incref(st->mf, l->r, 0) != 0)
				st->failures++;
			l->shared = true;
			if (!stress_verify(st->mf, l))
				st->failures++;
		} else if (nlive) {
			i = (int)(rng_next(&s) % (uint64_t)nlive);
			if (!stress_verify(st->mf, &live[i]))
				st->failures++;
			if (pgc_decref(st->mf, live[i].r) != 0)
				st->failures++;
			if (live[i].shared) {
				live[i].shared = false;
				continue;
			}
			live[i] = live[--nlive];
		}
	}
	for (i = 0; i < nlive; i++) {
		if (!stress_verify(st->mf, &live[i]))
			st->failures++;
		if (live[i].shared && pgc_decref(st->mf, live[i].r) != 0)
			st->failures++;
		if (pgc_decref(st->mf, live[i].r) != 0)
			st->failures++;
	}
	return NULL;
}

static void test_stress(void)
{
	struct stress st[STRESS_THREADS];
	pgc_memfile *mf = memgen_memfile();
	struct pgc_accounting acc;
	int i, j;

	for (i = 0; i < STRESS_THREADS; i++) {
		st[i] = (struct stress){ .mf = mf, .seed = test_seed * 31 + (uint64_t)i,
					 .iters = 3000 };
		CHECK_EQ(pthread_create(&st[i].tid, NULL, stress_main, &st[i]), 0);
	}
	/* Usage scans and segment walks race with all of it. */
	for (j = 0; j < 50; j++) {
		CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
		CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
		seg_stats(mf);
		sleep_ms(11);
	}
	for (i = 0; i < STRESS_THREADS; i++) {
		pthread_join(st[i].tid, NULL);
		CHECK_EQ(st[i].failures, 0);
	}
	CHECK(wait_reclaimed(mf));
	CHECK_EQ(seg_stats(mf).count, 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	for (j = PGC_KIND_SYSTEM + 1; j < PGC_KIND_COUNT; j++)
		CHECK_EQ(acc.kind[j], 0);
	/* What remains is the swap estimate (committed pages mincore missed,
	 * e.g. fallocated ones); the next scan settles it. */
	sleep_ms(20);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acc), 0);
	CHECK_EQ(acc.total, 0);
	pgc_memfile_destroy(mf);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(test_create_destroy);
	TEST_RUN(test_alloc_refs_reclaim);
	TEST_RUN(test_placement);
	TEST_RUN(test_decommit);
	TEST_RUN(test_manual_zeroing);
	TEST_RUN(test_map_chunks);
	TEST_RUN(test_alloc_modes);
	TEST_RUN(test_reader);
	TEST_RUN(test_max_allocatable);
	TEST_RUN(test_update_usage);
	TEST_RUN(test_accounting_memcg);
	TEST_RUN(test_for_each_segment);
	TEST_RUN(test_adopt);
	TEST_RUN(test_decommit_on_destroy);
	TEST_RUN(test_bad_input);
	TEST_RUN(test_errors);
	TEST_RUN(test_stress);
	return test_done();
}
