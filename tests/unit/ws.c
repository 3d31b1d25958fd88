/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ws.c - unit tests of working sets: the file round-trips and is bound to
 * its image; one of another image, damaged anywhere, truncated anywhere,
 * empty, a FIFO or a directory is refused with its own error (and a load
 * given one ignores it and says why); a recorded working set holds the
 * blocks in the order they were first demanded (pushes with
 * PGC_ACCESS_NOWAIT do not count) and a load replaying it reads them
 * first and hands them to a lazy server as ranges. Page-granular files:
 * the pages round-trip in their order, bad pages are refused, block-only
 * files still read; a recording notes the exact pages demanded (only the
 * page pgc_load_ws_demand names, not the range mapped around it), and
 * merging ranks pages as it ranks blocks.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "memgen.h"
#include "pgckpt.h"
#include "statefile/statefile.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE
#define MIB (1ULL << 20)

static uint64_t seed;
static pgc_range whole;

/* Save @len bytes of generated contents (1 MiB blocks) as @path. */
static void make_image(const char *path, uint64_t len, uint64_t s)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };

	CHECK_EQ(pgc_allocate(mf, len, &o, &whole), 0);
	CHECK_EQ(memgen_fill(mf, s, whole), 0);
	CHECK_EQ(pgc_save(mf, path, NULL), 0);
	pgc_memfile_destroy(mf);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0);
	CHECK_EQ(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	CHECK(p != NULL);
	CHECK_EQ(read(fd, p, (size_t)st.st_size), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return p;
}

static void spit(const char *path, const uint8_t *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0);
	CHECK_EQ(write(fd, p, len), (ssize_t)len);
	close(fd);
}

/* Round trip; another image's id, damage and truncation anywhere, emptiness. */
static void test_file(void)
{
	uint32_t blocks[] = { 7, 0, 3, 99, 12 }, *got;
	size_t n, len, i;
	uint8_t *p;

	CHECK_EQ(sf_ws_write("ws", 42, 100, blocks, 5), 0);
	CHECK_EQ(sf_ws_read("ws", 42, 100, &got, &n), 0);
	CHECK_EQ(n, 5);
	for (i = 0; got && i < 5; i++)
		CHECK_EQ(got[i], blocks[i]);
	free(got);
	CHECK_EQ(sf_ws_read("ws", 43, 100, &got, &n), -ESTALE);
	CHECK_EQ(sf_ws_read("ws", 42, 101, &got, &n), -ESTALE);
	CHECK(got == NULL && n == 0);
	/* Replaced atomically: a second write wins whole. */
	CHECK_EQ(sf_ws_write("ws", 42, 100, blocks + 1, 2), 0);
	CHECK_EQ(sf_ws_read("ws", 42, 100, &got, &n), 0);
	CHECK_EQ(n, 2);
	free(got);
	CHECK_EQ(sf_ws_write("ws", 42, 100, blocks, 0), -EINVAL);
	blocks[1] = 7;   /* repeated */
	CHECK_EQ(sf_ws_write("ws2", 42, 100, blocks, 5), -EINVAL);
	blocks[1] = 100; /* out of range */
	CHECK_EQ(sf_ws_write("ws2", 42, 100, blocks, 5), -EINVAL);
	CHECK_EQ(access("ws2", F_OK), -1);

	p = slurp("ws", &len);
	for (i = 0; i < len; i++) {
		int ret;

		p[i] ^= 0x20;
		ret = sf_ws_decode(p, len, 42, 100, &got, &n);
		CHECK(ret != 0);
		CHECK(got == NULL);
		p[i] ^= 0x20;
		ret = sf_ws_decode(p, i, 42, 100, &got, &n);
		CHECK(ret == -PGC_ETRUNCATED || ret == -PGC_ECORRUPT || ret == -PGC_ECHECKSUM ||
		      ret == -ENODATA);
	}
	CHECK_EQ(sf_ws_decode(p, len, 42, 100, &got, &n), 0);
	free(got);
	p[5] ^= 1;
	CHECK_EQ(sf_ws_decode(p, len, 42, 100, &got, &n), -PGC_EFOREIGN);
	free(p);
	spit("empty", (const uint8_t *)"", 0);
	CHECK_EQ(sf_ws_read("empty", 42, 100, &got, &n), -ENODATA);
	CHECK_EQ(mkfifo("fifo", 0600), 0);
	CHECK_EQ(sf_ws_read("fifo", 42, 100, &got, &n), -EINVAL);   /* and does not block */
	CHECK_EQ(sf_ws_read(".", 42, 100, &got, &n), -EISDIR);
	CHECK_EQ(sf_ws_read("missing", 42, 100, &got, &n), -ENOENT);
	CHECK_EQ(system("rm -f ws empty fifo"), 0);
}

static pgc_memfile *load(const char *img, const char *ws, bool record)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_load_opts lo;

	pgc_load_opts_init(&lo);
	lo.background = true;
	lo.working_set = ws;
	lo.record_working_set = record;
	CHECK_EQ(pgc_load(mf, img, &lo), 0);
	return mf;
}

static pgc_range mib(uint64_t i)
{
	return (pgc_range){ whole.start + i * MIB, whole.start + (i + 1) * MIB };
}

/* Record waits in order (NOWAIT maps do not count), then replay them. */
/* The first page at or after @off that memgen fills with something other than zeros. */
static uint64_t stored_page(uint64_t s, uint64_t off)
{
	static const unsigned char zero[PAGE];
	unsigned char page[PAGE];

	for (;; off += PAGE) {
		memgen_page(s, off, page);
		if (memcmp(page, zero, PAGE))
			return off;
	}
}

static void test_record_replay(void)
{
	static const uint64_t order[] = { 20, 3, 17, 9 };
	uint64_t pg[4];
	pgc_range r[8];
	struct pgc_load_stats st;
	struct iovec iov;
	pgc_memfile *mf;
	size_t i, k;
	int n;

	make_image("img", 24 * MIB, seed);
	make_image("other", 24 * MIB, seed + 1);
	/* A stored page in each MiB: a zero page between two blocks belongs to neither. */
	for (i = 0; i < 4; i++)
		pg[i] = stored_page(seed, mib(order[i]).start + PAGE);
	mf = load("img", NULL, true);
	CHECK_EQ(pgc_load_ws_write(mf, "ws"), -ENODATA);
	for (i = 0; i < 4; i++) {
		CHECK_EQ(pgc_load_wait(mf, (pgc_range){ pg[i], pg[i] + PAGE }), 0);
		if (i == 1) {
			/* Again: not recorded twice. */
			CHECK_EQ(pgc_load_wait(mf, (pgc_range){ mib(20).start + PAGE,
								mib(20).start + 2 * PAGE }), 0);
			(void)pgc_map_internal(mf, mib(5), PGC_ACCESS_READ | PGC_ACCESS_NOWAIT, &iov, 1);
		}
	}
	CHECK_EQ(pgc_load_ws_write(mf, "ws"), 0);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);

	/* Not recording: nothing to write. */
	mf = load("img", NULL, false);
	CHECK_EQ(pgc_load_ws_write(mf, "ws2"), -EINVAL);
	CHECK_EQ(pgc_load_working_set(mf, r, 8), 0);
	pgc_memfile_destroy(mf);

	mf = load("img", "ws", false);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK_EQ(st.working_set_error, 0);
	CHECK_EQ(st.working_set_blocks, 4);
	/*
	 * The ranges are the pages demanded, in order: the wait after pg[1]
	 * in MiB 20 demanded a page of its own unless it was pg[0] again.
	 */
	n = pgc_load_working_set(mf, r, 8);
	CHECK(n == 4 || n == 5);
	for (i = 0, k = 0; i < 4 && n > 0; i++, k++) {
		if (k == 2 && n == 5)
			CHECK_EQ(r[k++].start, mib(20).start + PAGE);
		CHECK(r[k].start == pg[i] && r[k].end == pg[i] + PAGE);
	}
	CHECK_EQ(pgc_load_working_set(mf, r, 1), n);   /* the count, whatever @max */
	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, whole.start, iov.iov_base, iov.iov_len), UINT64_MAX);
	pgc_memfile_destroy(mf);

	/* Another image's working set is ignored; the load goes on. */
	mf = load("other", "ws", false);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK_EQ(st.working_set_error, -ESTALE);
	CHECK_EQ(st.working_set_blocks, 0);
	CHECK_EQ(pgc_load_working_set(mf, r, 8), 0);
	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed + 1, whole.start, iov.iov_base, iov.iov_len), UINT64_MAX);
	pgc_memfile_destroy(mf);
	/* So is a missing one. */
	mf = load("img", "missing", false);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK_EQ(st.working_set_error, -ENOENT);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img other ws"), 0);
}

/*
 * pgc_ws_merge: blocks more recordings hold first, then by mean position,
 * then by offset; every input must be a working set of the image (an
 * input's error names its index, and nothing is written).
 */
static void test_merge(void)
{
	static const uint32_t a[] = { 3, 1, 5 }, b[] = { 1, 7, 3 }, c[] = { 2, 1 };
	static const uint32_t want[] = { 1, 3, 2, 7, 5 };
	const char *in[] = { "wa", "wb", "wc" };
	struct sf_image *img = NULL, *other = NULL;
	uint32_t *got = NULL;
	size_t n = 0, bad = 99;
	uint8_t *p;
	size_t len;
	int ret;

	make_image("mimg", 16 * MIB, seed);
	make_image("oimg", 16 * MIB, seed + 1);
	CHECK_EQ(sf_image_open("mimg", false, &img), 0);
	CHECK_EQ(sf_image_open("oimg", false, &other), 0);
	if (!img || !other || img->nblocks < 8 || other->nblocks < 8)
		goto exit;
	CHECK_EQ(sf_ws_write("wa", img->identity, img->nblocks, a, 3), 0);
	CHECK_EQ(sf_ws_write("wb", img->identity, img->nblocks, b, 3), 0);
	CHECK_EQ(sf_ws_write("wc", img->identity, img->nblocks, c, 2), 0);
	CHECK_EQ(pgc_ws_merge("mimg", in, 3, "wm", &bad), 0);
	CHECK_EQ(bad, 3);
	CHECK_EQ(sf_ws_read("wm", img->identity, img->nblocks, &got, &n), 0);
	CHECK_EQ(n, 5);
	CHECK(got && n == 5 && !memcmp(got, want, sizeof(want)));
	free(got);
	/* One recording merges into itself: the same order, written over it. */
	CHECK_EQ(pgc_ws_merge("mimg", in, 1, "wa", NULL), 0);
	CHECK_EQ(sf_ws_read("wa", img->identity, img->nblocks, &got, &n), 0);
	CHECK(got && n == 3 && !memcmp(got, a, sizeof(a)));
	free(got);

	/* Another image's, damaged, missing: refused, naming the input; nothing written. */
	CHECK_EQ(sf_ws_write("wo", other->identity, other->nblocks, a, 3), 0);
	in[1] = "wo";
	CHECK_EQ(pgc_ws_merge("mimg", in, 3, "wx", &bad), -ESTALE);
	CHECK_EQ(bad, 1);
	p = slurp("wb", &len);
	p[len - 1] ^= 1;    /* the trailer's checksum */
	spit("wd", p, len);
	free(p);
	in[1] = "wd";
	ret = pgc_ws_merge("mimg", in, 3, "wx", &bad);
	CHECK_EQ(ret, -PGC_ECHECKSUM);
	CHECK_EQ(bad, 1);
	in[2] = "missing";
	in[1] = "wb";
	CHECK_EQ(pgc_ws_merge("mimg", in, 3, "wx", &bad), -ENOENT);
	CHECK_EQ(bad, 2);
	CHECK_EQ(access("wx", F_OK), -1);
	/* Bad calls and a bad image. */
	CHECK_EQ(pgc_ws_merge("mimg", in, 0, "wx", &bad), -EINVAL);
	CHECK_EQ(bad, 0);
	CHECK_EQ(pgc_ws_merge("mimg", in, PGC_WS_MERGE_MAX + 1, "wx", NULL), -EINVAL);
	CHECK_EQ(pgc_ws_merge("mimg", in, 2, NULL, NULL), -EINVAL);
	CHECK_EQ(pgc_ws_merge("nope", in, 2, "wx", &bad), -ENOENT);
	CHECK_EQ(bad, 2);
exit:
	sf_image_close(img);
	sf_image_close(other);
	CHECK_EQ(system("rm -rf mimg oimg wa wb wc wd wm wo"), 0);
}

/* Page-granular files: round trip, bad pages refused, block-only files still read. */
static void test_pages_file(void)
{
	uint32_t blocks[] = { 7, 0, 3 }, *b = NULL;
	uint64_t pages[] = { 900, 5, 6, 7, 1200, 0 };
	struct sf_ws ws = { blocks, 3, pages, 6 }, got;
	size_t n, len, i;
	uint8_t *p;

	CHECK_EQ(sf_ws_write_set("wsp", 42, 100, 1300, &ws), 0);
	CHECK_EQ(sf_ws_read_set("wsp", 42, 100, 1300, &got), 0);
	CHECK(got.n == 3 && got.blocks && !memcmp(got.blocks, blocks, sizeof(blocks)));
	CHECK(got.npages == 6 && got.pages && !memcmp(got.pages, pages, sizeof(pages)));
	sf_ws_free(&got);
	CHECK(got.blocks == NULL && got.pages == NULL && got.n == 0 && got.npages == 0);
	/* For a smaller memory, page 1200 is outside it. */
	CHECK_EQ(sf_ws_read_set("wsp", 42, 100, 1200, &got), -PGC_ECORRUPT);
	CHECK(got.blocks == NULL && got.pages == NULL);
	CHECK_EQ(sf_ws_read_set("wsp", 43, 100, 1300, &got), -ESTALE);
	/* The block-only reader takes the same file. */
	CHECK_EQ(sf_ws_read("wsp", 42, 100, &b, &n), 0);
	CHECK(n == 3 && b && !memcmp(b, blocks, sizeof(blocks)));
	free(b);
	/* A page repeated or out of range is not written. */
	pages[2] = 5;
	CHECK_EQ(sf_ws_write_set("wsp2", 42, 100, 1300, &ws), -EINVAL);
	pages[2] = 1300;
	CHECK_EQ(sf_ws_write_set("wsp2", 42, 100, 1300, &ws), -EINVAL);
	CHECK_EQ(access("wsp2", F_OK), -1);
	pages[2] = 6;
	/* A file from before pages were recorded reads, with none. */
	CHECK_EQ(sf_ws_write("wsb", 42, 100, blocks, 3), 0);
	CHECK_EQ(sf_ws_read_set("wsb", 42, 100, 1300, &got), 0);
	CHECK(got.n == 3 && got.npages == 0 && got.pages == NULL);
	sf_ws_free(&got);
	/* Damage and truncation anywhere, the pages included. */
	p = slurp("wsp", &len);
	for (i = 0; i < len; i++) {
		int ret;

		p[i] ^= 0x20;
		ret = sf_ws_decode_set(p, len, 42, 100, 1300, &got);
		CHECK(ret != 0);
		CHECK(got.blocks == NULL && got.pages == NULL);
		p[i] ^= 0x20;
		ret = sf_ws_decode_set(p, i, 42, 100, 1300, &got);
		CHECK(ret == -PGC_ETRUNCATED || ret == -PGC_ECORRUPT || ret == -PGC_ECHECKSUM ||
		      ret == -ENODATA);
	}
	CHECK_EQ(sf_ws_decode_set(p, len, 42, 100, 1300, &got), 0);
	sf_ws_free(&got);
	free(p);
	CHECK_EQ(system("rm -f wsp wsb"), 0);
}

/*
 * A recording notes pages: every page of what pgc_load_wait demands, until
 * pgc_load_ws_demand names one; from then on only the named pages (a
 * lazy server maps more around a fault). The replay hands exactly those
 * pages to a lazy server, in order, consecutive ones in one range.
 */
static void test_record_pages(void)
{
	uint64_t a = mib(9).start + 3 * PAGE, b = mib(2).start + 40 * PAGE, c = mib(14).start;
	struct pgc_load_stats st;
	pgc_memfile *mf;
	pgc_range r[8];
	struct iovec iov;

	make_image("img", 16 * MIB, seed);
	mf = load("img", NULL, true);
	CHECK_EQ(pgc_load_ws_demand(NULL, UINT64_MAX), -EINVAL);
	CHECK_EQ(pgc_load_ws_demand(mf, UINT64_MAX), 1);   /* asks only */
	CHECK_EQ(pgc_load_wait(mf, (pgc_range){ a, a + 2 * PAGE }), 0);
	CHECK_EQ(pgc_load_ws_demand(mf, b), 1);
	/* The 64 KiB a server maps around the fault at b: no page of it counts. */
	CHECK_EQ(pgc_map_internal(mf, (pgc_range){ b - 8 * PAGE, b + 8 * PAGE }, PGC_ACCESS_READ,
				  &iov, 1), 1);
	CHECK_EQ(pgc_load_ws_demand(mf, c), 1);
	CHECK_EQ(pgc_load_ws_demand(mf, b), 1);            /* again: noted once */
	CHECK_EQ(pgc_load_ws_write(mf, "ws"), 0);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);

	mf = load("img", NULL, false);
	CHECK_EQ(pgc_load_ws_demand(mf, UINT64_MAX), 0);   /* not recording */
	CHECK_EQ(pgc_load_ws_demand(mf, a), 0);
	CHECK_EQ(pgc_load_await(mf), 0);
	pgc_memfile_destroy(mf);

	mf = load("img", "ws", false);
	CHECK_EQ(pgc_load_stats(mf, &st), 0);
	CHECK_EQ(st.working_set_error, 0);
	CHECK(st.working_set_blocks >= 2);
	CHECK_EQ(pgc_load_working_set(mf, r, 8), 3);
	CHECK(r[0].start == a && r[0].end == a + 2 * PAGE);
	CHECK(r[1].start == b && r[1].end == b + PAGE);
	CHECK(r[2].start == c && r[2].end == c + PAGE);
	CHECK_EQ(pgc_load_working_set(mf, r, 1), 3);       /* the count, whatever @max */
	CHECK_EQ(pgc_load_await(mf), 0);
	CHECK_EQ(pgc_map_internal(mf, whole, PGC_ACCESS_READ, &iov, 1), 1);
	CHECK_EQ(memgen_check(seed, whole.start, iov.iov_base, iov.iov_len), UINT64_MAX);
	pgc_memfile_destroy(mf);
	CHECK_EQ(system("rm -rf img ws"), 0);
}

/* Merging ranks pages as it ranks blocks: more recordings first, then mean position. */
static void test_merge_pages(void)
{
	uint32_t blk[] = { 1 };
	uint64_t pa[] = { 30, 10, 20 }, pb[] = { 20, 40 }, want[] = { 20, 30, 10, 40 };
	struct sf_ws wa = { blk, 1, pa, 3 }, wb = { blk, 1, pb, 2 }, got;
	const char *in[] = { "wa", "wb", "wc" };
	struct sf_image *img = NULL;

	make_image("mimg", 4 * MIB, seed);
	CHECK_EQ(sf_image_open("mimg", false, &img), 0);
	if (!img)
		return;
	CHECK_EQ(sf_ws_write_set("wa", img->identity, img->nblocks, sf_ws_mem_pages(img), &wa), 0);
	CHECK_EQ(sf_ws_write_set("wb", img->identity, img->nblocks, sf_ws_mem_pages(img), &wb), 0);
	CHECK_EQ(sf_ws_write("wc", img->identity, img->nblocks, blk, 1), 0);   /* blocks only */
	CHECK_EQ(pgc_ws_merge("mimg", in, 3, "wm", NULL), 0);
	CHECK_EQ(sf_ws_read_set("wm", img->identity, img->nblocks, sf_ws_mem_pages(img), &got), 0);
	CHECK(got.n == 1 && got.npages == 4 && got.pages && !memcmp(got.pages, want, sizeof(want)));
	sf_ws_free(&got);
	sf_image_close(img);
	CHECK_EQ(system("rm -rf mimg wa wb wc wm"), 0);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	seed = test_rand();
	TEST_RUN(test_file);
	TEST_RUN(test_record_replay);
	TEST_RUN(test_merge);
	TEST_RUN(test_pages_file);
	TEST_RUN(test_record_pages);
	TEST_RUN(test_merge_pages);
	return test_done();
}
