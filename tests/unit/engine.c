/* SPDX-License-Identifier: Apache-2.0 */
/*
 * engine.c - unit tests of SaveTo / eager LoadFrom: round trips of
 * MemoryFiles with random allocations, refs, kinds and memcg ids (usage
 * set and contents identical), zero pages not stored, every single-byte
 * corruption of memfile.img refused, a damaged block refused, atomic
 * replacement of an existing image, and bad arguments.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "memgen.h"
#include "pgckpt.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE

struct segs {
	struct pgc_segment s[1 << 16];   /* split where stored pages meet holes */
	size_t n;
};

static int collect_fn(void *arg, const struct pgc_segment *seg)
{
	struct segs *s = arg;

	if (seg->refs == 0)
		return 0;   /* freed: may or may not be reclaimed yet */
	if (s->n == sizeof(s->s) / sizeof(s->s[0]))
		return -ENOSPC;
	s->s[s->n++] = *seg;
	return 0;
}

static void collect(pgc_memfile *mf, struct segs *s)
{
	s->n = 0;
	CHECK_EQ(pgc_for_each_segment(mf, collect_fn, s), 0);
}

/* Compare every page of @mf's live segments with the generated contents. */
static bool check_contents(pgc_memfile *mf, uint64_t seed, const struct segs *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		struct iovec iov[4];
		uint64_t off = s->s[i].range.start;
		int n = pgc_map_internal(mf, s->s[i].range, PGC_ACCESS_READ, iov, 4), k;

		if (n < 0) {
			printf("  map_internal: %s\n", pgc_strerror(n));
			return false;
		}
		for (k = 0; k < n; k++) {
			uint64_t bad = memgen_check(seed, off, iov[k].iov_base, iov[k].iov_len);

			if (bad != UINT64_MAX) {
				printf("  content differs at offset %llu\n", (unsigned long long)bad);
				return false;
			}
			off += iov[k].iov_len;
		}
	}
	return true;
}

/* Allocate and fill a random MemoryFile; some ranges get extra refs or are freed. */
static pgc_memfile *random_mf(uint64_t seed, int nallocs)
{
	pgc_memfile *mf = memgen_memfile();
	pgc_range r[256];
	int i, n = 0;

	for (i = 0; i < nallocs && n < 256; i++) {
		struct pgc_alloc_opts o = {
			.kind = (enum pgc_kind)test_rand_below(PGC_KIND_COUNT),
			.dir = test_rand_below(2) ? PGC_TOP_DOWN : PGC_BOTTOM_UP,
			.memcg_id = (uint32_t)test_rand_below(3),
		};
		uint64_t len = test_rand_below(8) ? (1 + test_rand_below(200)) * PAGE
						 : (2ULL << 20) * (1 + test_rand_below(3));

		if (pgc_allocate(mf, len, &o, &r[n]) != 0) {
			CHECK(0);
			continue;
		}
		CHECK_EQ(memgen_fill(mf, seed, r[n]), 0);
		if (test_rand_below(4) == 0)
			CHECK_EQ(pgc_incref(mf, r[n], 0), 0);
		n++;
	}
	/* Free a few whole allocations and a few pieces. */
	for (i = 0; i < n; i++) {
		if (test_rand_below(6) == 0) {
			CHECK_EQ(pgc_decref(mf, r[i]), 0);
		} else if (test_rand_below(6) == 0 && r[i].end - r[i].start > 2 * PAGE) {
			pgc_range piece = { r[i].start + PAGE, r[i].start + 2 * PAGE };

			CHECK_EQ(pgc_decref(mf, piece), 0);
		}
	}
	return mf;
}

static void roundtrip(enum pgc_compress c, uint32_t block, int jobs)
{
	uint64_t seed = test_rand();
	pgc_memfile *mf = random_mf(seed, 40), *mf2 = memgen_memfile();
	struct pgc_save_opts so;
	struct pgc_load_opts lo;
	struct pgc_image_info info;
	static struct segs a, b;
	size_t i;

	pgc_save_opts_init(&so);
	so.compress = c;
	so.block_size = block;
	so.jobs = jobs;
	CHECK_EQ(pgc_save(mf, "img", &so), 0);
	/* As saved: the save marked what it stored known committed. */
	collect(mf, &a);
	CHECK_EQ(pgc_image_info("img", &info), 0);
	CHECK_EQ(info.compress, c);
	CHECK_EQ(info.block_size, block);
	CHECK_EQ(pgc_image_verify("img", NULL, NULL), 0);
	pgc_load_opts_init(&lo);
	lo.jobs = jobs;
	CHECK_EQ(pgc_load(mf2, "img", &lo), 0);
	CHECK_EQ(pgc_total_size(mf2), pgc_total_size(mf));
	collect(mf2, &b);
	CHECK_EQ(a.n, b.n);
	for (i = 0; i < a.n && i < b.n; i++) {
		CHECK(a.s[i].range.start == b.s[i].range.start && a.s[i].range.end == b.s[i].range.end);
		CHECK_EQ(a.s[i].refs, b.s[i].refs);
		CHECK_EQ(a.s[i].kind, b.s[i].kind);
		CHECK_EQ(a.s[i].memcg_id, b.s[i].memcg_id);
		CHECK_EQ(a.s[i].known_committed, b.s[i].known_committed);
	}
	CHECK(check_contents(mf2, seed, &b));
	/* A load of the loaded file saves the same contents again. */
	CHECK_EQ(pgc_save(mf2, "img2", &so), 0);
	pgc_memfile_destroy(mf);
	pgc_memfile_destroy(mf2);
	CHECK_EQ(system("rm -rf img img2"), 0);
}

static void test_roundtrip_zstd(void) { roundtrip(PGC_COMPRESS_ZSTD, 256u << 10, 0); }
static void test_roundtrip_raw(void) { roundtrip(PGC_COMPRESS_NONE, 256u << 10, 0); }
static void test_roundtrip_small_blocks(void) { roundtrip(PGC_COMPRESS_ZSTD, 16u << 10, 1); }
static void test_roundtrip_big_blocks(void) { roundtrip(PGC_COMPRESS_NONE, 4u << 20, 3); }

static void test_zero_pages_not_stored(void)
{
	pgc_memfile *mf = memgen_memfile(), *mf2 = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS, .mode = PGC_ALLOC_COMMIT };
	struct pgc_image_info info;
	struct pgc_save_opts so;
	struct iovec iov;
	pgc_range r;
	uint8_t *p;

	CHECK_EQ(pgc_allocate(mf, 64 * PAGE, &o, &r), 0);   /* committed, all zero */
	CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_WRITE, &iov, 1), 1);
	p = iov.iov_base;
	memset(p, 0, 64 * PAGE);   /* written zeroes: data to SEEK_DATA, zero to the scan */
	p[3 * PAGE + 17] = 1;
	p[40 * PAGE] = 2;
	p[41 * PAGE + 4095] = 3;
	pgc_save_opts_init(&so);
	so.compress = PGC_COMPRESS_NONE;
	so.decommit_zero = true;
	CHECK_EQ(pgc_save(mf, "img", &so), 0);
	CHECK_EQ(pgc_image_info("img", &info), 0);
	CHECK_EQ(info.mem_bytes, 3 * PAGE);
	CHECK_EQ(info.pages_bytes, 3 * PAGE);
	/*
	 * decommit_zero punched the zero pages out of the live file (checked
	 * before anything reads them: a read fault on shmem allocates).
	 */
	{
		struct stat st;

		CHECK_EQ(fstat(pgc_memfile_fd(mf), &st), 0);
		CHECK_EQ((uint64_t)st.st_blocks * 512, 3 * PAGE);
	}
	CHECK_EQ(pgc_load(mf2, "img", NULL), 0);
	CHECK_EQ(pgc_map_internal(mf2, r, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK(memcmp(iov.iov_base, p, 64 * PAGE) == 0);
	pgc_memfile_destroy(mf);
	pgc_memfile_destroy(mf2);
	CHECK_EQ(system("rm -rf img"), 0);
}

static void save_small(const char *path, enum pgc_compress c)
{
	uint64_t seed = 42;
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_TMPFS };
	struct pgc_save_opts so;
	pgc_range r;

	CHECK_EQ(pgc_allocate(mf, 48 * PAGE, &o, &r), 0);
	CHECK_EQ(memgen_fill(mf, seed, r), 0);
	pgc_save_opts_init(&so);
	so.compress = c;
	so.block_size = 16u << 10;
	CHECK_EQ(pgc_save(mf, path, &so), 0);
	pgc_memfile_destroy(mf);
}

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) != 0)
		return -1;
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf || pread(fd, *buf, *len, 0) != (ssize_t)*len)
		return -1;
	close(fd);
	return 0;
}

static int write_file(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pwrite(fd, buf, len, 0);
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

static void test_corrupt_metadata(void)
{
	uint8_t *orig, *copy;
	size_t len, i, refused = 0;

	save_small("img", PGC_COMPRESS_ZSTD);
	CHECK_EQ(read_file("img/memfile.img", &orig, &len), 0);
	copy = malloc(len);
	for (i = 0; i < len && copy; i++) {
		pgc_memfile *mf = memgen_memfile();
		int ret;

		memcpy(copy, orig, len);
		copy[i] ^= (uint8_t)(1 + test_rand_below(255));
		CHECK_EQ(write_file("img/memfile.img", copy, len), 0);
		ret = pgc_load(mf, "img", NULL);
		if (ret != 0 && pgc_is_image_error(ret))
			refused++;
		else
			printf("  byte %zu: load returned %d (%s)\n", i, ret, pgc_strerror(ret));
		pgc_memfile_destroy(mf);
	}
	CHECK_EQ(refused, len);
	printf("  %zu of %zu single-byte corruptions refused\n", refused, len);
	CHECK_EQ(write_file("img/memfile.img", orig, len), 0);
	CHECK_EQ(pgc_image_verify("img", NULL, NULL), 0);
	free(orig);
	free(copy);
	CHECK_EQ(system("rm -rf img"), 0);
}

static void test_corrupt_block(void)
{
	static const enum pgc_compress cs[] = { PGC_COMPRESS_ZSTD, PGC_COMPRESS_NONE };
	size_t k;

	for (k = 0; k < 2; k++) {
		pgc_memfile *mf = memgen_memfile();
		uint8_t *buf;
		size_t len;
		int ret;

		save_small("img", cs[k]);
		CHECK_EQ(read_file("img/pages.img", &buf, &len), 0);
		CHECK(len > 0);
		buf[len / 2] ^= 0x40;
		CHECK_EQ(write_file("img/pages.img", buf, len), 0);
		free(buf);
		CHECK_EQ(pgc_image_verify("img", NULL, NULL), -PGC_ECHECKSUM);
		ret = pgc_load(mf, "img", NULL);
		CHECK(ret == -PGC_ECHECKSUM);
		CHECK(pgc_is_image_error(ret));
		pgc_memfile_destroy(mf);
		CHECK_EQ(system("rm -rf img"), 0);
	}
}

static void test_replace_and_refuse(void)
{
	struct pgc_image_info info;
	pgc_memfile *mf = memgen_memfile();

	save_small("img", PGC_COMPRESS_ZSTD);
	save_small("img", PGC_COMPRESS_NONE);   /* replaces it atomically */
	CHECK_EQ(pgc_image_info("img", &info), 0);
	CHECK_EQ(info.compress, PGC_COMPRESS_NONE);
	/* An unrelated directory is never replaced. */
	CHECK_EQ(mkdir("notimg", 0755), 0);
	CHECK_EQ(system("touch notimg/precious"), 0);
	CHECK(pgc_save(mf, "notimg", NULL) < 0);
	CHECK(access("notimg/precious", F_OK) == 0);
	/* A missing parent directory fails and leaves nothing. */
	CHECK(pgc_save(mf, "missing/img", NULL) < 0);
	CHECK(access("missing", F_OK) != 0);
	CHECK_EQ(system("ls | grep -c tmp- >/dev/null"), 256);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img notimg"), 0);
}

/*
 * The image records what it stores (gVisor's SaveTo rescans committed
 * segments): pages zeroed after they were known committed are not
 * recorded as committed, so a restored MemoryFile's accounting matches
 * what the host stores for it.
 */
static void test_save_records_stored(void)
{
	pgc_memfile *mf = memgen_memfile(), *mf2 = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_accounting acct;
	struct iovec iov;
	uint64_t usage;
	pgc_range r;

	CHECK_EQ(pgc_allocate(mf, 64 * PAGE, &o, &r), 0);
	CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_WRITE, &iov, 1), 1);
	memset(iov.iov_base, 1, 64 * PAGE);
	CHECK_EQ(pgc_update_usage(mf, NULL, 0), 0);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acct), 0);
	CHECK_EQ(acct.kind[PGC_KIND_ANONYMOUS], 64 * PAGE);
	memset(iov.iov_base, 0, 32 * PAGE);
	CHECK_EQ(pgc_save(mf, "img", NULL), 0);
	/* The source no longer counts the zeroed pages as its own. */
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acct), 0);
	CHECK_EQ(acct.kind[PGC_KIND_ANONYMOUS], 32 * PAGE);

	CHECK_EQ(pgc_load(mf2, "img", NULL), 0);
	CHECK_EQ(pgc_update_usage(mf2, NULL, 0), 0);
	CHECK_EQ(pgc_total_usage(mf2, &usage), 0);
	CHECK_EQ(usage, 32 * PAGE);
	CHECK_EQ(pgc_accounting(mf2, PGC_MEMCG_ALL, &acct), 0);
	CHECK_EQ(acct.kind[PGC_KIND_ANONYMOUS], 32 * PAGE);
	CHECK_EQ(acct.total, usage);
	pgc_memfile_destroy(mf);
	pgc_memfile_destroy(mf2);
	CHECK_EQ(system("rm -rf img"), 0);
}

/* pgc_save refuses a MemoryFile not marked savable, and leaves nothing. */
static void test_savable(void)
{
	struct pgc_memfile_opts mo;
	pgc_memfile *mf;

	CHECK(!pgc_is_savable(NULL));
	pgc_mark_savable(NULL);
	pgc_memfile_opts_init(&mo);
	CHECK_EQ(pgc_memfile_new(&mo, &mf), 0);
	CHECK(!pgc_is_savable(mf));
	CHECK_EQ(pgc_save(mf, "img", NULL), -EPERM);
	CHECK(access("img", F_OK) != 0);
	CHECK_EQ(system("ls | grep -c tmp- >/dev/null"), 256);
	pgc_mark_savable(mf);
	CHECK(pgc_is_savable(mf));
	CHECK_EQ(pgc_save(mf, "img", NULL), 0);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

/* Progress callback of test_adopted_shrinks: cut the file at the first call. */
static void shrink_on_progress(void *arg, uint64_t done, uint64_t total)
{
	int *fd = arg;

	(void)done;
	(void)total;
	if (*fd >= 0) {
		CHECK_EQ(ftruncate(*fd, PAGE), 0);
		*fd = -1;
	}
}

/*
 * An adopted file (not adopt_mapped) is read with pread: one that its
 * owner shrinks during the save fails it with -ENODATA, never SIGBUS,
 * and no image appears. With adopt_mapped, the same file saves through
 * its mapping and restores byte for byte.
 */
static void test_adopted_shrinks(void)
{
	const uint64_t size = 128ull << 20;   /* far more windows than run ahead */
	struct pgc_memfile_opts mo;
	struct pgc_save_opts so;
	pgc_memfile *mf;
	uint8_t *buf = malloc(1 << 20);
	int fd = memfd_create("src", MFD_CLOEXEC), cut;
	uint64_t off;

	CHECK(fd >= 0 && buf);
	for (off = 0; off < size; off += 1 << 20) {
		uint64_t p;

		for (p = 0; p < 1 << 20; p += PAGE)
			memgen_page(test_seed, off + p, buf + p);
		CHECK_EQ(pwrite(fd, buf, 1 << 20, (off_t)off), 1 << 20);
	}
	free(buf);

	pgc_memfile_opts_init(&mo);
	mo.fd = dup(fd);
	mo.adopt = true;
	mo.adopt_mapped = true;
	CHECK_EQ(pgc_memfile_new(&mo, &mf), 0);
	pgc_mark_savable(mf);
	CHECK_EQ(pgc_save(mf, "whole", NULL), 0);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf whole"), 0);

	mo.fd = dup(fd);
	mo.adopt_mapped = false;
	CHECK_EQ(pgc_memfile_new(&mo, &mf), 0);
	pgc_mark_savable(mf);
	pgc_save_opts_init(&so);
	so.jobs = 1;
	cut = fd;
	so.progress = shrink_on_progress;
	so.progress_arg = &cut;
	CHECK_EQ(pgc_save(mf, "cut", &so), -ENODATA);
	CHECK_EQ(cut, -1);
	CHECK(access("cut", F_OK) != 0);
	CHECK_EQ(system("ls | grep -c tmp- >/dev/null"), 256);
	pgc_memfile_destroy(mf);
	close(fd);
}

/* Whether @mf is as new: no segments, size 0, nothing to map. */
static void check_empty(pgc_memfile *mf)
{
	struct segs *s = malloc(sizeof(*s));
	struct pgc_accounting acct;
	struct iovec iov;

	CHECK_EQ(pgc_total_size(mf), 0);
	CHECK(s != NULL);
	if (s) {
		collect(mf, s);
		CHECK_EQ(s->n, 0);
		free(s);
	}
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &acct), 0);
	CHECK_EQ(acct.total, 0);
	CHECK_EQ(pgc_map_internal(mf, (pgc_range){ 0, PAGE }, PGC_ACCESS_READ, &iov, 1), -EINVAL);
}

/*
 * A failed pgc_load leaves the MemoryFile empty: bad options are refused
 * before anything is touched, and a load that fails later (a damaged
 * block found by an eager load) is rolled back. Either way the
 * MemoryFile can be loaded again.
 */
static void test_failed_load_leaves_empty(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_image_info info;
	struct pgc_load_opts lo;
	uint8_t *buf;
	size_t len;

	save_small("img", PGC_COMPRESS_ZSTD);
	pgc_load_opts_init(&lo);
	lo.aio = "bogus";
	CHECK_EQ(pgc_load(mf, "img", &lo), -EINVAL);
	check_empty(mf);
	lo.background = true;
	CHECK_EQ(pgc_load(mf, "img", &lo), -EINVAL);
	check_empty(mf);
	pgc_load_opts_init(&lo);
	lo.max_read = (64u << 20) + 1;
	CHECK_EQ(pgc_load(mf, "img", &lo), -EINVAL);
	check_empty(mf);

	/* Damaged pages: the eager load fails after the segments were in. */
	system("rm -rf bad && cp -r img bad");
	CHECK_EQ(read_file("bad/pages.img", &buf, &len), 0);
	buf[len / 2] ^= 0x40;
	CHECK_EQ(write_file("bad/pages.img", buf, len), 0);
	free(buf);
	CHECK_EQ(pgc_load(mf, "bad", NULL), -PGC_ECHECKSUM);
	check_empty(mf);

	CHECK_EQ(pgc_load(mf, "img", NULL), 0);
	CHECK_EQ(pgc_image_info("img", &info), 0);
	CHECK_EQ(pgc_total_size(mf), info.file_size);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img bad"), 0);
}

static void test_bad_args(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_save_opts so;
	pgc_range r;

	pgc_save_opts_init(&so);
	so.block_size = 1000;
	CHECK_EQ(pgc_save(mf, "img", &so), -EINVAL);
	so.block_size = 8u << 20;
	CHECK_EQ(pgc_save(mf, "img", &so), -EINVAL);
	CHECK_EQ(pgc_save(NULL, "img", NULL), -EINVAL);
	CHECK_EQ(pgc_load(mf, NULL, NULL), -EINVAL);
	CHECK(pgc_load(mf, "nonexistent", NULL) == -ENOENT);
	save_small("img", PGC_COMPRESS_ZSTD);
	CHECK_EQ(pgc_allocate(mf, PAGE, &o, &r), 0);
	CHECK_EQ(pgc_load(mf, "img", NULL), -EBUSY);   /* not empty */
	CHECK_EQ(pgc_load_await(mf), 0);                /* no load: nothing to wait for */
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img"), 0);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(test_roundtrip_zstd);
	TEST_RUN(test_roundtrip_raw);
	TEST_RUN(test_roundtrip_small_blocks);
	TEST_RUN(test_roundtrip_big_blocks);
	TEST_RUN(test_zero_pages_not_stored);
	TEST_RUN(test_corrupt_metadata);
	TEST_RUN(test_corrupt_block);
	TEST_RUN(test_replace_and_refuse);
	TEST_RUN(test_bad_args);
	TEST_RUN(test_save_records_stored);
	TEST_RUN(test_savable);
	TEST_RUN(test_adopted_shrinks);
	TEST_RUN(test_failed_load_leaves_empty);
	return test_done();
}
