/* SPDX-License-Identifier: Apache-2.0 */
/*
 * chain.c - unit tests of incremental images through the library: a
 * MemoryFile saved, changed at random (pages rewritten, zeroed, made
 * non-zero, allocations added and freed) and saved again against the
 * last image, chains of depth 1..5, zstd and raw; each image restores
 * byte for byte eagerly and in the background, with threads reading
 * random ranges while the pages arrive; a child stores only what changed;
 * a child's blocks are packed full; a replaced parent fails the load with -PGC_EPARENT and leaves the
 * MemoryFile empty; a save over its parent is -ELOOP; an image forged to
 * be its own parent is refused; a chain is at most PGC_MAX_DEPTH deep
 * (-PGC_ELIMIT).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "imgedit.h"
#include "memgen.h"
#include "pgckpt.h"
#include "statefile/sf_internal.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE
#define DEPTH 5

/*
 * Large allocations are placed top-down from the end of the first 1 GiB
 * chunk, small ones bottom-up from its start: the tests' data lies in the
 * file's first HEAD and last TAIL bytes, and the rest must be a hole.
 */
#define HEAD (16ULL << 20)
#define TAIL (16ULL << 20)

/* The file's size in *@len; its first HEAD and last TAIL bytes, in that order. */
static uint8_t *snapshot(pgc_memfile *mf, uint64_t *len)
{
	int fd = pgc_memfile_fd(mf);
	uint64_t base;
	off_t d;
	uint8_t *p;

	*len = pgc_total_size(mf);
	CHECK(*len >= HEAD + TAIL);
	base = *len - TAIL;
	d = lseek(fd, (off_t)HEAD, SEEK_DATA);
	CHECK(d < 0 || (uint64_t)d >= base);
	p = malloc(HEAD + TAIL);
	if (!p)
		exit(1);
	CHECK_EQ(pread(fd, p, HEAD, 0), (ssize_t)HEAD);
	CHECK_EQ(pread(fd, p + HEAD, TAIL, (off_t)base), (ssize_t)TAIL);
	return p;
}

/* Change about 5% of @r's pages in runs of 1..16 (a fifth zeroed). */
static void mutate(pgc_memfile *mf, pgc_range r)
{
	uint64_t pages = (r.end - r.start) / PAGE, changed = 0;
	struct iovec v;

	CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_WRITE, &v, 1), 1);
	while (changed < pages / 20) {
		uint64_t p = test_rand_below(pages), n = 1 + test_rand_below(16), q;

		for (q = p; q < p + n && q < pages; q++, changed++) {
			uint8_t *pg = (uint8_t *)v.iov_base + q * PAGE;

			if (test_rand_below(5) == 0)
				memset(pg, 0, PAGE);
			else
				test_fill_random(pg, PAGE);
		}
	}
}

struct reader {
	pgc_memfile *mf;
	const uint8_t *want;     /* snapshot() of the saved file */
	uint64_t len;
	uint64_t rng;            /* its own generator: test_rand is not thread-safe */
	int bad;
};

/* A number below @n from @rd's own xorshift generator. */
static uint64_t reader_rand(struct reader *rd, uint64_t n)
{
	rd->rng ^= rd->rng << 13;
	rd->rng ^= rd->rng >> 7;
	rd->rng ^= rd->rng << 17;
	return rd->rng % n;
}

/* Random ranges mapped while a background load runs must read as saved. */
static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	int i;

	for (i = 0; i < 200; i++) {
		/* In the head or the tail window of snapshot(). */
		bool head = reader_rand(rd, 2);
		uint64_t base = head ? 0 : rd->len - TAIL, end = head ? HEAD : rd->len;
		uint64_t p = reader_rand(rd, TAIL / PAGE), n = 1 + reader_rand(rd, 32);
		pgc_range r = { base + p * PAGE, base + (p + n) * PAGE };
		struct iovec v[2];
		int k, nv;
		uint64_t at = (head ? 0 : HEAD) + r.start - base;

		if (r.end > end)
			r.end = end;
		nv = pgc_map_internal(rd->mf, r, PGC_ACCESS_READ, v, 2);
		if (nv < 0) {
			rd->bad++;
			continue;
		}
		for (k = 0; k < nv; at += v[k].iov_len, k++)
			if (memcmp(v[k].iov_base, rd->want + at, v[k].iov_len))
				rd->bad++;
	}
	return NULL;
}

/* Load @path eagerly and in the background; both must give @want. */
static void check_restore(const char *path, const uint8_t *want, uint64_t len)
{
	int bg;

	for (bg = 0; bg < 2; bg++) {
		pgc_memfile *mf = memgen_memfile();
		struct pgc_load_opts lo;
		struct reader rd[2];
		pthread_t t[2];
		uint64_t got_len;
		uint8_t *got;
		int i;

		pgc_load_opts_init(&lo);
		lo.background = bg;
		lo.jobs = 2;
		CHECK_EQ(pgc_load(mf, path, &lo), 0);
		for (i = 0; bg && i < 2; i++) {
			rd[i] = (struct reader){ mf, want, len, test_rand() | 1, 0 };
			CHECK_EQ(pthread_create(&t[i], NULL, reader_main, &rd[i]), 0);
		}
		for (i = 0; bg && i < 2; i++) {
			pthread_join(t[i], NULL);
			CHECK_EQ(rd[i].bad, 0);
		}
		CHECK_EQ(pgc_load_await(mf), 0);
		got = snapshot(mf, &got_len);
		CHECK_EQ(got_len, len);
		CHECK(got_len == len && memcmp(got, want, HEAD + TAIL) == 0);
		free(got);
		pgc_memfile_destroy(mf);
	}
}

/* Chains of depth 1..DEPTH with random changes; each restores exactly. */
static void chain_roundtrip(enum pgc_compress c)
{
	struct pgc_alloc_opts ao = { .kind = PGC_KIND_ANONYMOUS };
	pgc_memfile *mf = memgen_memfile();
	uint8_t *want[DEPTH + 1];
	uint64_t len[DEPTH + 1];
	struct pgc_save_opts so;
	struct pgc_image_info in0, in;
	pgc_range r, extra[DEPTH + 1];
	char path[32], parent[32];
	int d;

	CHECK_EQ(pgc_allocate(mf, 4 << 20, &ao, &r), 0);
	CHECK_EQ(memgen_fill(mf, test_rand(), r), 0);
	for (d = 0; d <= DEPTH; d++) {
		pgc_save_opts_init(&so);
		so.compress = c;
		so.block_size = 64 << 10;
		snprintf(path, sizeof(path), "c%d", d);
		if (d)
			so.parent = parent;
		CHECK_EQ(pgc_save(mf, path, &so), 0);
		want[d] = snapshot(mf, &len[d]);
		snprintf(parent, sizeof(parent), "%s", path);
		if (d == 1) {
			/* A child stores about what changed, not the rest. */
			CHECK_EQ(pgc_image_info("c0", &in0), 0);
			CHECK_EQ(pgc_image_info("c1", &in), 0);
			CHECK_EQ(in.depth, 1);
			CHECK(in.mem_bytes * 8 < in0.mem_bytes);
		}
		/* Change pages; add an allocation; free an earlier one. */
		mutate(mf, r);
		CHECK_EQ(pgc_allocate(mf, (1 + test_rand_below(8)) * PAGE, &ao, &extra[d]), 0);
		CHECK_EQ(memgen_fill(mf, test_rand(), extra[d]), 0);
		if (d >= 2)
			CHECK_EQ(pgc_decref(mf, extra[d - 2]), 0);
	}
	pgc_memfile_destroy(mf);
	for (d = 0; d <= DEPTH; d++) {
		snprintf(path, sizeof(path), "c%d", d);
		CHECK_EQ(pgc_image_verify(path, NULL, NULL), 0);
		check_restore(path, want[d], len[d]);
		free(want[d]);
	}
}

static void test_chain_zstd(void)
{
	chain_roundtrip(PGC_COMPRESS_ZSTD);
}

static void test_chain_raw(void)
{
	chain_roundtrip(PGC_COMPRESS_NONE);
}

/* Save @mf as @path against @parent (NULL: none). */
static int save(pgc_memfile *mf, const char *path, const char *parent)
{
	struct pgc_save_opts so;

	pgc_save_opts_init(&so);
	so.parent = parent;
	return pgc_save(mf, path, &so);
}

/* A replaced parent: -PGC_EPARENT, the MemoryFile left empty; no self-replacing child. */
static void test_refusals(void)
{
	struct pgc_alloc_opts ao = { .kind = PGC_KIND_ANONYMOUS };
	pgc_memfile *mf = memgen_memfile(), *dst;
	struct pgc_load_opts lo;
	char buf[64];
	pgc_range r;

	CHECK_EQ(pgc_allocate(mf, 64 * PAGE, &ao, &r), 0);
	CHECK_EQ(memgen_fill(mf, 1, r), 0);
	CHECK_EQ(save(mf, "p", NULL), 0);
	CHECK_EQ(pgc_image_parent("p", buf, sizeof(buf)), -ENODATA);
	CHECK_EQ(save(mf, "k", "p"), 0);
	CHECK_EQ(pgc_image_parent("k", buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "p") == 0);
	CHECK_EQ(save(mf, "p", "k"), -ELOOP);
	CHECK_EQ(save(mf, "k", "k"), -ELOOP);
	/*
	 * Replace the parent by an image of other contents (an image of the
	 * same contents is the same image: its identity is the same).
	 */
	CHECK_EQ(save(mf, "p", NULL), 0);
	CHECK_EQ(pgc_image_parent("k", buf, sizeof(buf)), 0);
	CHECK_EQ(memgen_fill(mf, 2, r), 0);
	CHECK_EQ(save(mf, "p", NULL), 0);
	CHECK_EQ(pgc_image_parent("k", buf, sizeof(buf)), -PGC_EPARENT);
	dst = memgen_memfile();
	pgc_load_opts_init(&lo);
	CHECK_EQ(pgc_load(dst, "k", &lo), -PGC_EPARENT);
	CHECK_EQ(pgc_total_size(dst), 0);
	lo.background = true;
	CHECK_EQ(pgc_load(dst, "k", &lo), -PGC_EPARENT);
	CHECK_EQ(pgc_image_verify("k", NULL, NULL), -PGC_EPARENT);
	pgc_memfile_destroy(dst);
	pgc_memfile_destroy(mf);
}

/*
 * Make the child @img name itself as its parent: its parent record's
 * one-byte path @from becomes @to, the trailer checksum made right again,
 * so that only the chain checks can refuse it.
 */
static void forge_self_parent(const char *img, char from, char to)
{
	char path[64];
	size_t len, pos, i;
	uint8_t *m;
	uint64_t sum;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memfile.img", img);
	m = img_slurp(path, &len);
	CHECK(m != NULL);
	if (!m)
		return;
	pos = 8 + 4 + sf_get_u32(m + 8);        /* after the head */
	pos += 4 + sf_get_u32(m + pos);         /* after the meta */
	/* The parent record: length, then 0a 01 <path byte> 11 <identity>. */
	CHECK(m[pos + 4] == 0x0a && m[pos + 5] == 1 && m[pos + 6] == (uint8_t)from);
	m[pos + 6] = (uint8_t)to;
	sum = sf_checksum(m, len - SF_TRAILER_BYTES);
	for (i = 0; i < 8; i++)
		m[len - 8 + i] = (uint8_t)(sum >> (8 * i));
	f = fopen(path, "wb");
	CHECK(f && fwrite(m, 1, len, f) == len);
	if (f)
		fclose(f);
	free(m);
}

/*
 * A child's blocks are packed: with 64 KiB changed in every MiB of 64 MiB,
 * one worker, 1 MiB blocks, the child's 4 MiB of changes make a handful
 * of full blocks, not one small block per 4 MiB window (16 of 256 KiB:
 * half the compression, half the decode speed), and still restore.
 */
static void test_child_blocks_packed(void)
{
	struct pgc_alloc_opts ao = { .kind = PGC_KIND_ANONYMOUS };
	pgc_memfile *mf = memgen_memfile(), *dst = memgen_memfile();
	struct pgc_save_opts so;
	struct pgc_load_opts lo;
	struct pgc_image_info in;
	struct sf_image *img;
	struct iovec v, w;
	uint64_t mib;
	pgc_range r;

	CHECK_EQ(pgc_allocate(mf, 64 << 20, &ao, &r), 0);
	CHECK_EQ(memgen_fill(mf, 5, r), 0);
	CHECK_EQ(save(mf, "p0", NULL), 0);
	CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_WRITE, &v, 1), 1);
	for (mib = 0; mib < 64; mib++)
		test_fill_random((uint8_t *)v.iov_base + (mib << 20), 16 * PAGE);
	pgc_save_opts_init(&so);
	so.parent = "p0";
	so.jobs = 1;
	CHECK_EQ(pgc_save(mf, "p1", &so), 0);
	CHECK_EQ(sf_image_open_one("p1", false, &img), 0);
	CHECK_EQ(img->mem_bytes, 4ULL << 20);
	CHECK(img->nblocks_own <= 8);
	/* What inspect shows: the blocks of the child's own pages.img. */
	CHECK_EQ(pgc_image_info("p1", &in), 0);
	CHECK_EQ(in.blocks, img->nblocks_own);
	CHECK_EQ(in.mem_bytes, img->mem_bytes);
	sf_image_close(img);
	pgc_load_opts_init(&lo);
	CHECK_EQ(pgc_load(dst, "p1", &lo), 0);
	CHECK_EQ(pgc_map_internal(dst, r, PGC_ACCESS_READ, &w, 1), 1);
	CHECK(memcmp(v.iov_base, w.iov_base, r.end - r.start) == 0);
	pgc_memfile_destroy(dst);
	pgc_memfile_destroy(mf);
}

/*
 * save_parent_changed's sample: nothing changed is 0, every page
 * rewritten is 1024 (all of it), every page zeroed is 0 (holes are not
 * stored), and the first 16 pages of every MiB rewritten (1/16, a
 * period the sample must not alias with) about 64.
 */
static void test_changed_share(void)
{
	struct pgc_alloc_opts ao = { .kind = PGC_KIND_ANONYMOUS };
	pgc_memfile *mf = memgen_memfile();
	struct sf_image *p = NULL;
	struct pgc_segment seg;
	struct iovec v;
	uint64_t mib;
	pgc_range r;
	int fd = pgc_memfile_fd(mf), share;

	CHECK_EQ(pgc_allocate(mf, 16 << 20, &ao, &r), 0);
	CHECK_EQ(memgen_fill(mf, 9, r), 0);
	CHECK_EQ(save(mf, "s0", NULL), 0);
	CHECK_EQ(sf_image_open("s0", false, &p), 0);
	seg = (struct pgc_segment){ .range = r, .kind = PGC_KIND_ANONYMOUS, .refs = 1 };
	CHECK_EQ(save_parent_changed(p, fd, &seg, 1), 0);
	CHECK_EQ(pgc_map_internal(mf, r, PGC_ACCESS_WRITE, &v, 1), 1);
	for (mib = 0; mib < 16; mib++)
		test_fill_random((uint8_t *)v.iov_base + (mib << 20), 16 * PAGE);
	share = save_parent_changed(p, fd, &seg, 1);
	CHECK(share >= 16 && share <= 160);
	test_fill_random(v.iov_base, r.end - r.start);
	CHECK_EQ(save_parent_changed(p, fd, &seg, 1), 1024);
	memset(v.iov_base, 0, r.end - r.start);
	CHECK_EQ(save_parent_changed(p, fd, &seg, 1), 0);
	sf_image_close(p);
	pgc_memfile_destroy(mf);
}

/* An image that is its own parent (a cycle) is refused. */
static void test_cycle(void)
{
	struct pgc_alloc_opts ao = { .kind = PGC_KIND_ANONYMOUS };
	pgc_memfile *mf = memgen_memfile(), *dst;
	struct pgc_load_opts lo;
	struct pgc_image_info in;
	pgc_range r;

	CHECK_EQ(pgc_allocate(mf, 16 * PAGE, &ao, &r), 0);
	CHECK_EQ(memgen_fill(mf, 3, r), 0);
	CHECK_EQ(save(mf, "a", NULL), 0);
	CHECK_EQ(save(mf, "b", "a"), 0);
	CHECK_EQ(pgc_image_info("b", &in), 0);
	forge_self_parent("b", 'a', 'b');
	CHECK_EQ(pgc_image_info("b", &in), -PGC_EPARENT);
	CHECK_EQ(pgc_image_verify("b", NULL, NULL), -PGC_EPARENT);
	dst = memgen_memfile();
	pgc_load_opts_init(&lo);
	CHECK_EQ(pgc_load(dst, "b", &lo), -PGC_EPARENT);
	pgc_memfile_destroy(dst);
	pgc_memfile_destroy(mf);
}

/* At most PGC_MAX_DEPTH ancestors. */
static void test_depth_limit(void)
{
	struct pgc_alloc_opts ao = { .kind = PGC_KIND_ANONYMOUS };
	pgc_memfile *mf = memgen_memfile();
	char path[32], parent[32];
	pgc_range r;
	int d;

	CHECK_EQ(pgc_allocate(mf, 4 * PAGE, &ao, &r), 0);
	CHECK_EQ(save(mf, "d0", NULL), 0);
	for (d = 1; d <= PGC_MAX_DEPTH; d++) {
		CHECK_EQ(memgen_fill(mf, (uint64_t)d, r), 0);
		snprintf(path, sizeof(path), "d%d", d);
		snprintf(parent, sizeof(parent), "d%d", d - 1);
		CHECK_EQ(save(mf, path, parent), 0);
	}
	snprintf(parent, sizeof(parent), "d%d", PGC_MAX_DEPTH);
	CHECK_EQ(save(mf, "over", parent), -PGC_ELIMIT);
	pgc_memfile_destroy(mf);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(test_chain_zstd);
	TEST_RUN(test_chain_raw);
	TEST_RUN(test_refusals);
	TEST_RUN(test_cycle);
	TEST_RUN(test_child_blocks_packed);
	TEST_RUN(test_changed_share);
	TEST_RUN(test_depth_limit);
	return test_done();
}
