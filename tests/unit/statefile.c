/* SPDX-License-Identifier: Apache-2.0 */
/*
 * statefile.c - unit tests of the image format (src/statefile): writer and
 * reader round trips with random tables and contents, zstd and raw; every
 * single-byte corruption and every truncation of memfile.img refused;
 * damaged blocks, foreign files and newer versions; writer atomicity and
 * refusal to replace what is not an image; the public info / verify /
 * export functions, and `crit decode` of the pagemap when crit exists.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "statefile/pagemap.pb-c.h"
#include "statefile/sf_internal.h"
#include "statefile/statefile.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE

/* A generated image and the memory it was made from. */
struct gen {
	uint64_t file_size;
	uint8_t *mem;                /* file_size bytes; zero outside runs */
	struct pgc_segment *segs;
	size_t nsegs;
	struct sf_run *runs;         /* as added to the writer */
	size_t nruns;
	struct sf_block *blocks;     /* as the writer laid them out */
	size_t nblocks;
	enum pgc_compress compress;
	int level;
	uint32_t block_size;
};

static void gen_free(struct gen *g)
{
	free(g->mem);
	free(g->segs);
	free(g->runs);
	free(g->blocks);
	memset(g, 0, sizeof(*g));
}

/* Fill one page: random, patterned, or mostly zero, so zstd has work. */
static void fill_page(uint8_t *p)
{
	uint64_t kind = test_rand_below(3);

	if (kind == 0) {
		test_fill_random(p, PAGE);
	} else if (kind == 1) {
		for (size_t i = 0; i < PAGE; i++)
			p[i] = (uint8_t)(i * 7 + kind);
	} else {
		memset(p, 0, PAGE);
		p[test_rand_below(PAGE)] = 1 + (uint8_t)test_rand_below(255);
	}
}

/* Random segments over @pages pages, and random runs inside live ones. */
static void gen_tables(struct gen *g, uint64_t pages)
{
	uint64_t pg = 0, len, rp, rlen;

	g->file_size = pages * PAGE;
	g->mem = calloc(1, g->file_size);
	g->segs = calloc(pages, sizeof(*g->segs));
	g->runs = calloc(pages, sizeof(*g->runs));
	while (pg < pages) {
		pg += test_rand_below(4);              /* a gap */
		if (pg >= pages)
			break;
		len = 1 + test_rand_below(64);
		if (len > pages - pg)
			len = pages - pg;
		struct pgc_segment *s = &g->segs[g->nsegs++];
		s->range.start = pg * PAGE;
		s->range.end = (pg + len) * PAGE;
		s->refs = test_rand_below(8) ? 1 + test_rand_below(5) : 0;
		s->kind = s->refs ? (enum pgc_kind)test_rand_below(PGC_KIND_COUNT) : PGC_KIND_SYSTEM;
		s->memcg_id = (uint32_t)test_rand_below(4) * 1000;
		s->known_committed = test_rand_below(2);
		/* Runs of non-zero pages inside the segment. */
		for (rp = pg; s->refs && rp < pg + len;) {
			rp += test_rand_below(3);
			if (rp >= pg + len)
				break;
			rlen = 1 + test_rand_below(pg + len - rp);
			for (uint64_t k = rp; k < rp + rlen; k++)
				fill_page(g->mem + k * PAGE);
			g->runs[g->nruns].off = rp * PAGE;
			g->runs[g->nruns].len = rlen * PAGE;
			g->nruns++;
			rp += rlen + 1;
		}
		pg += len;
	}
}

/* Block-building state of gen_write_blocks. */
struct gen_blk {
	struct gen *g;
	struct sf_writer *w;
	struct sf_codec *c;
	uint8_t *dst;
	size_t cap;
	struct sf_run *out;      /* the runs as added */
	size_t n;
	struct sf_run cur[1024];
	uint32_t ncur;
	uint64_t fill;
};

/* Encode, register and write the block in @s->cur. */
static int gen_emit(struct gen_blk *s)
{
	struct iovec iov[1024];
	uint64_t file_off, sum;
	struct sf_block *b;
	size_t stored;
	int ret;

	for (uint32_t k = 0; k < s->ncur; k++) {
		iov[k].iov_base = s->g->mem + s->cur[k].off;
		iov[k].iov_len = s->cur[k].len;
	}
	ret = sf_block_encode(s->c, iov, (int)s->ncur, s->dst, s->cap, &stored, &sum);
	if (ret)
		return ret;
	if (s->g->compress == PGC_COMPRESS_NONE && sum != sf_checksum_iov(iov, (int)s->ncur))
		return -EBADMSG;
	ret = sf_writer_add_block(s->w, s->cur, s->ncur, (uint32_t)stored, sum, &file_off);
	if (ret)
		return ret;
	if (pwrite(sf_writer_pages_fd(s->w), s->dst, stored, (off_t)file_off) != (ssize_t)stored)
		return -EIO;
	b = &s->g->blocks[s->g->nblocks++];
	b->file_off = file_off;
	b->stored_len = (uint32_t)stored;
	b->mem_len = (uint32_t)s->fill;
	b->checksum = sum;
	b->first_run = (uint32_t)s->n;
	b->nruns = s->ncur;
	memcpy(s->out + s->n, s->cur, s->ncur * sizeof(s->cur[0]));
	s->n += s->ncur;
	s->ncur = 0;
	s->fill = 0;
	return 0;
}

/*
 * Group the generated runs into blocks of up to block_size, splitting runs
 * that straddle a block edge; encode and write each block through @w.
 */
static int gen_write_blocks(struct gen *g, struct sf_writer *w, struct sf_codec *c)
{
	size_t maxblocks = g->file_size / PAGE + g->nruns + 1, i;
	struct gen_blk *s = calloc(1, sizeof(*s));
	int ret = 0;

	s->g = g;
	s->w = w;
	s->c = c;
	s->cap = sf_encode_bound(g->compress, g->block_size);
	s->dst = malloc(s->cap);
	s->out = calloc(maxblocks + g->nruns, sizeof(*s->out));
	g->blocks = calloc(maxblocks, sizeof(*g->blocks));
	for (i = 0; i < g->nruns && !ret; i++) {
		struct sf_run r = g->runs[i];

		while (r.len && !ret) {
			uint64_t take = r.len < g->block_size - s->fill ? r.len
									 : g->block_size - s->fill;

			s->cur[s->ncur].off = r.off;
			s->cur[s->ncur].len = take;
			s->ncur++;
			s->fill += take;
			r.off += take;
			r.len -= take;
			if (s->fill == g->block_size)
				ret = gen_emit(s);
		}
	}
	if (!ret && s->ncur)
		ret = gen_emit(s);
	free(g->runs);
	g->runs = s->out;
	g->nruns = s->n;
	free(s->dst);
	free(s);
	return ret;
}

/* Make an image at @path from fresh random tables. */
static int gen_image(struct gen *g, const char *path, enum pgc_compress compress,
		     int level, uint32_t block_size, uint64_t pages)
{
	struct sf_writer *w = NULL;
	struct sf_codec *c = NULL;
	struct sf_meta meta = { 0 };
	int ret;

	memset(g, 0, sizeof(*g));
	g->compress = compress;
	g->level = compress == PGC_COMPRESS_ZSTD ? level : 0;
	g->block_size = block_size;
	gen_tables(g, pages);
	ret = sf_codec_new(compress, level, &c);
	if (!ret)
		ret = sf_writer_open(path, compress, level, block_size, &w);
	if (!ret)
		ret = gen_write_blocks(g, w, c);
	sf_codec_free(c);
	if (ret) {
		sf_writer_abort(w);
		return ret;
	}
	meta.file_size = g->file_size;
	meta.logical_size = g->file_size - test_rand_below(PAGE);
	meta.segs = g->segs;
	meta.nsegs = g->nsegs;
	return sf_writer_commit(w, &meta);
}

/* Compare an opened image with what generated it, decoding every block. */
static void check_image(const struct gen *g, const struct sf_image *img)
{
	struct sf_codec *c = NULL;
	uint8_t *src = NULL, *dst = NULL;
	uint64_t mem_bytes = 0;
	struct iovec iov[3];
	size_t i;

	/* Aligned: the pages may have been opened with O_DIRECT. */
	if (posix_memalign((void **)&src, PAGE, sf_encode_bound(g->compress, g->block_size)) ||
	    posix_memalign((void **)&dst, PAGE, g->block_size)) {
		CHECK(!"posix_memalign");
		goto exit;
	}
	CHECK_EQ(img->version, SF_VERSION);
	CHECK_EQ(img->file_size, g->file_size);
	CHECK_EQ(img->block_size, g->block_size);
	CHECK_EQ(img->compress, g->compress);
	CHECK_EQ(img->level, g->level);
	CHECK_EQ(img->nsegs, g->nsegs);
	CHECK_EQ(img->nruns, g->nruns);
	CHECK_EQ(img->nblocks, g->nblocks);
	if (img->nsegs != g->nsegs || img->nruns != g->nruns || img->nblocks != g->nblocks)
		goto exit;
	for (i = 0; i < g->nsegs; i++) {
		const struct pgc_segment *a = &img->segs[i], *b = &g->segs[i];

		CHECK(a->range.start == b->range.start && a->range.end == b->range.end &&
		      a->kind == b->kind && a->refs == b->refs &&
		      a->memcg_id == b->memcg_id && a->known_committed == b->known_committed);
	}
	for (i = 0; i < g->nruns; i++)
		CHECK(img->runs[i].off == g->runs[i].off && img->runs[i].len == g->runs[i].len);
	CHECK_EQ(sf_codec_new(img->compress, img->level, &c), 0);
	for (i = 0; i < g->nblocks && c; i++) {
		const struct sf_block *a = &img->blocks[i], *b = &g->blocks[i];
		size_t cut1, cut2, off = 0;

		CHECK(a->file_off == b->file_off && a->stored_len == b->stored_len &&
		      a->mem_len == b->mem_len && a->checksum == b->checksum &&
		      a->first_run == b->first_run && a->nruns == b->nruns);
		mem_bytes += a->mem_len;
		CHECK_EQ(pread(img->pages_fd, src, a->stored_len, (off_t)a->file_off),
			 a->stored_len);
		/* Decode into three iovecs split at random points. */
		cut1 = test_rand_below(a->mem_len + 1);
		cut2 = cut1 + test_rand_below(a->mem_len - cut1 + 1);
		iov[0] = (struct iovec){ dst, cut1 };
		iov[1] = (struct iovec){ dst + cut1, cut2 - cut1 };
		iov[2] = (struct iovec){ dst + cut2, a->mem_len - cut2 };
		memset(dst, 0xa5, g->block_size);
		CHECK_EQ(sf_block_decode(c, a, src, iov, 3), 0);
		for (uint32_t k = 0; k < a->nruns && !test_case_failed; k++) {
			const struct sf_run *r = &img->runs[a->first_run + k];

			CHECK(memcmp(dst + off, g->mem + r->off, r->len) == 0);
			off += r->len;
		}
	}
	CHECK_EQ(img->mem_bytes, mem_bytes);
exit:
	sf_codec_free(c);
	free(src);
	free(dst);
}

static uint8_t *read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) != 0)
		return NULL;
	p = malloc((size_t)st.st_size + 1);
	*len = (size_t)pread(fd, p, (size_t)st.st_size, 0);
	close(fd);
	return p;
}

static void write_file(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, p, len) != (ssize_t)len)
		CHECK(!"write_file");
	if (fd >= 0)
		close(fd);
}

/* Nothing named @prefix* in the current directory except @except. */
static int count_entries(const char *prefix)
{
	DIR *d = opendir(".");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix)))
			n++;
	if (d)
		closedir(d);
	return n;
}

/* ---- cases -------------------------------------------------------------- */

static void test_roundtrip(void)
{
	static const struct {
		enum pgc_compress c;
		int level;
		uint32_t bs;
		uint64_t pages;
	} cases[] = {
		{ PGC_COMPRESS_ZSTD, 1, 256 << 10, 4096 },
		{ PGC_COMPRESS_ZSTD, 19, 64 << 10, 512 },
		{ PGC_COMPRESS_ZSTD, 3, 4096, 300 },
		{ PGC_COMPRESS_ZSTD, 1, 4 << 20, 3000 },
		{ PGC_COMPRESS_NONE, 0, 256 << 10, 4096 },
		{ PGC_COMPRESS_NONE, 0, 8192, 700 },
	};
	struct sf_image *img;
	struct gen g;
	char name[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(name, sizeof(name), "rt%zu", i);
		CHECK_EQ(gen_image(&g, name, cases[i].c, cases[i].level, cases[i].bs,
				   cases[i].pages), 0);
		img = NULL;
		CHECK_EQ(sf_image_open(name, i == 4, &img), 0);
		if (img) {
			check_image(&g, img);
			sf_image_close(img);
		}
		gen_free(&g);
	}
	/* An empty memory file makes an image too. */
	struct sf_writer *w;
	struct sf_meta meta = { 0 };
	CHECK_EQ(sf_writer_open("empty", PGC_COMPRESS_ZSTD, 1, 256 << 10, &w), 0);
	CHECK_EQ(sf_writer_commit(w, &meta), 0);
	CHECK_EQ(sf_image_open("empty", false, &img), 0);
	if (img) {
		CHECK_EQ(img->nblocks + img->nsegs + img->nruns + img->file_size, 0);
		sf_image_close(img);
	}
	CHECK_EQ(count_entries("rt0.tmp"), 0);
}

static bool is_image_error(int err)
{
	return err < 0 && pgc_is_image_error(err);
}

static void test_corruption(void)
{
	struct sf_image *img;
	uint8_t *orig, *buf;
	size_t len, i, refused = 0, fixed_ok = 0;
	struct gen g;

	CHECK_EQ(gen_image(&g, "small", PGC_COMPRESS_ZSTD, 1, 16384, 40), 0);
	orig = read_file("small/memfile.img", &len);
	CHECK(orig && len > 40);
	if (!orig)
		return;
	buf = malloc(len);
	/* Every single-byte change is refused. */
	for (i = 0; i < len; i++) {
		memcpy(buf, orig, len);
		buf[i] ^= (uint8_t)(1 + test_rand_below(255));
		write_file("small/memfile.img", buf, len);
		img = NULL;
		int ret = sf_image_open("small", false, &img);
		CHECK(is_image_error(ret));
		if (ret == 0)
			sf_image_close(img);
		refused += is_image_error(ret);
	}
	CHECK_EQ(refused, len);
	/* Every truncation is refused. */
	for (i = 0; i < len; i++) {
		write_file("small/memfile.img", orig, i);
		img = NULL;
		int ret = sf_image_open("small", false, &img);
		CHECK(is_image_error(ret));
		if (i >= 40)
			CHECK_EQ(ret, -PGC_ETRUNCATED);
		if (ret == 0)
			sf_image_close(img);
	}
	/* Past the checksum: change each byte and fix the trailer up; the
	 * parser and validation must refuse or accept, never crash. */
	for (i = 0; i + 13 < len; i++) {
		memcpy(buf, orig, len);
		buf[i] ^= (uint8_t)(1 + test_rand_below(255));
		uint64_t sum = XXH64(buf, len - 13, 0);
		memcpy(buf + len - 8, &sum, 8);
		write_file("small/memfile.img", buf, len);
		img = NULL;
		int ret = sf_image_open("small", false, &img);
		CHECK(ret == 0 || is_image_error(ret));
		if (ret == 0) {
			fixed_ok++;
			sf_image_close(img);
		}
	}
	printf("  %zu bytes: all refused; with the checksum fixed, %zu accepted\n",
	       len, fixed_ok);
	/* Version and magic. */
	memcpy(buf, orig, len);
	CHECK_EQ(buf[12], 0x08);  /* head: tag of field 1, varint */
	buf[13] = SF_VERSION + 1;
	write_file("small/memfile.img", buf, len);
	CHECK_EQ(sf_image_open("small", false, &img), -PGC_EVERSION);
	buf[13] = 0x7f;
	write_file("small/memfile.img", buf, len);
	CHECK_EQ(pgc_image_verify("small", NULL, NULL), -PGC_EVERSION);
	buf[13] = 0;
	write_file("small/memfile.img", buf, len);
	CHECK_EQ(sf_image_open("small", false, &img), -PGC_ECORRUPT);
	write_file("small/memfile.img", "hello, world\n", 13);
	CHECK_EQ(sf_image_open("small", false, &img), -PGC_EFOREIGN);
	memcpy(buf, orig, len);
	buf[4] ^= 1;
	write_file("small/memfile.img", buf, len);
	CHECK_EQ(sf_image_open("small", false, &img), -PGC_EFOREIGN);
	write_file("small/memfile.img", orig, len);
	CHECK_EQ(sf_image_open("small", false, &img), 0);
	sf_image_close(img);
	free(orig);
	free(buf);
	gen_free(&g);
}

static void test_bad_pages(void)
{
	struct sf_image *img = NULL;
	struct sf_codec *c = NULL;
	uint8_t *src, *dst;
	struct iovec iov;
	struct sf_block b;
	size_t plen;
	struct gen g;
	int fd;

	CHECK_EQ(gen_image(&g, "pg", PGC_COMPRESS_ZSTD, 1, 65536, 256), 0);
	CHECK_EQ(sf_image_open("pg", false, &img), 0);
	CHECK_EQ(pgc_image_verify("pg", NULL, NULL), 0);
	if (!img || !img->nblocks)
		goto exit;
	CHECK_EQ(sf_codec_new(PGC_COMPRESS_ZSTD, 1, &c), 0);
	b = img->blocks[img->nblocks / 2];
	src = malloc(b.stored_len + 16);
	dst = malloc(b.mem_len + 16);
	CHECK_EQ(pread(img->pages_fd, src, b.stored_len, (off_t)b.file_off), b.stored_len);
	iov = (struct iovec){ dst, b.mem_len };
	CHECK_EQ(sf_block_decode(c, &b, src, &iov, 1), 0);
	/* Wrong destination size. */
	iov.iov_len = b.mem_len - 1;
	CHECK_EQ(sf_block_decode(c, &b, src, &iov, 1), -EINVAL);
	iov.iov_len = b.mem_len;
	/* A short frame with a matching checksum. */
	b.stored_len--;
	b.checksum = sf_checksum(src, b.stored_len);
	CHECK_EQ(sf_block_decode(c, &b, src, &iov, 1), -PGC_ECORRUPT);
	/* Trailing garbage after the frame. */
	b.stored_len += 2;
	src[b.stored_len - 1] = 0;
	b.checksum = sf_checksum(src, b.stored_len);
	CHECK_EQ(sf_block_decode(c, &b, src, &iov, 1), -PGC_ECORRUPT);
	/* The frame yields more than mem_len. */
	b.stored_len--;
	b.checksum = sf_checksum(src, b.stored_len);
	b.mem_len -= PAGE;
	iov.iov_len = b.mem_len;
	CHECK_EQ(sf_block_decode(c, &b, src, &iov, 1), -PGC_ECORRUPT);
	b.mem_len += PAGE;
	iov.iov_len = b.mem_len;
	/* Random damage with a matching checksum: refused or decoded, never more. */
	uint8_t *orig_src = malloc(b.stored_len);
	memcpy(orig_src, src, b.stored_len);
	for (int k = 0; k < 3000; k++) {
		memcpy(src, orig_src, b.stored_len);
		for (int j = 0; j <= k % 4; j++)
			src[test_rand_below(b.stored_len)] ^= (uint8_t)(1 + test_rand_below(255));
		b.checksum = sf_checksum(src, b.stored_len);
		int r = sf_block_decode(c, &b, src, &iov, 1);
		CHECK(r == 0 || r == -PGC_ECORRUPT);
	}
	memcpy(src, orig_src, b.stored_len);
	free(orig_src);
	/* Random garbage with a matching checksum. */
	test_fill_random(src, b.stored_len);
	b.checksum = sf_checksum(src, b.stored_len);
	CHECK_EQ(sf_block_decode(c, &b, src, &iov, 1), -PGC_ECORRUPT);
	free(src);
	free(dst);

	/* A flipped byte in pages.img: the block's checksum catches it. */
	b = img->blocks[img->nblocks - 1];
	fd = open("pg/pages.img", O_RDWR);
	uint8_t byte;
	CHECK_EQ(pread(fd, &byte, 1, (off_t)(b.file_off + b.stored_len / 2)), 1);
	byte ^= 0x10;
	CHECK_EQ(pwrite(fd, &byte, 1, (off_t)(b.file_off + b.stored_len / 2)), 1);
	CHECK_EQ(pgc_image_verify("pg", NULL, NULL), -PGC_ECHECKSUM);
	CHECK_EQ(pgc_image_export_criu("pg", "pgexp", 0), -PGC_ECHECKSUM);
	CHECK_EQ(access("pgexp/pagemap.img", F_OK), -1);
	/* pages.img shorter or longer than the index says. */
	plen = (size_t)lseek(fd, 0, SEEK_END);
	CHECK_EQ(ftruncate(fd, (off_t)plen - 1), 0);
	CHECK_EQ(pgc_image_verify("pg", NULL, NULL), -PGC_ETRUNCATED);
	CHECK_EQ(ftruncate(fd, (off_t)plen + 1), 0);
	CHECK_EQ(pgc_image_verify("pg", NULL, NULL), -PGC_ECORRUPT);
	close(fd);
	CHECK_EQ(unlink("pg/pages.img"), 0);
	CHECK_EQ(pgc_image_verify("pg", NULL, NULL), -PGC_ECORRUPT);
exit:
	sf_codec_free(c);
	sf_image_close(img);
	gen_free(&g);
}

/*
 * sf_block_decode_part: a block decoded in parts equals the whole decode;
 * a small part stops well before the block's end (what a waiter needs
 * first); a damaged frame is refused at the end as by sf_block_decode.
 */
static void test_decode_part(void)
{
	struct sf_image *img = NULL;
	struct sf_codec *c = NULL, *raw = NULL;
	uint8_t *src = NULL, *whole = NULL, *part = NULL;
	const struct sf_block *big = NULL;
	struct sf_block b;
	struct iovec iov;
	size_t pos, i;
	struct gen g;

	CHECK_EQ(gen_image(&g, "dp", PGC_COMPRESS_ZSTD, 1, 1 << 20, 1024), 0);
	CHECK_EQ(sf_image_open("dp", false, &img), 0);
	CHECK_EQ(sf_codec_new(PGC_COMPRESS_ZSTD, 1, &c), 0);
	CHECK_EQ(sf_codec_new(PGC_COMPRESS_NONE, 0, &raw), 0);
	for (i = 0; img && i < img->nblocks; i++)
		if (!big || img->blocks[i].mem_len > big->mem_len)
			big = &img->blocks[i];
	CHECK(big && big->mem_len >= (512u << 10));
	if (!big || big->mem_len < (512u << 10))
		goto exit;
	b = *big;
	src = malloc(b.stored_len + 1);
	whole = malloc(b.mem_len);
	part = malloc(b.mem_len);
	CHECK_EQ(pread(img->pages_fd, src, b.stored_len, (off_t)b.file_off), b.stored_len);
	iov = (struct iovec){ whole, b.mem_len };
	CHECK_EQ(sf_block_decode(c, &b, src, &iov, 1), 0);

	/* One page first: zstd stops after the zstd block holding it (<= 128 KiB). */
	pos = 0;
	memset(part, 0xa5, b.mem_len);
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, PAGE), 0);
	CHECK(pos >= PAGE && pos <= PAGE + (128u << 10));
	CHECK_EQ(memcmp(part, whole, pos), 0);
	/* Then on, in uneven steps, to the end. */
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, b.mem_len / 2 + 123), 0);
	CHECK(pos >= b.mem_len / 2 + 123);
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, b.mem_len), 0);
	CHECK_EQ(pos, b.mem_len);
	CHECK_EQ(memcmp(part, whole, b.mem_len), 0);
	/* A part that ends the block ends the frame too; a later call has nothing to do. */
	pos = 0;
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, b.mem_len - PAGE / 2), 0);
	CHECK_EQ(pos, b.mem_len);
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, b.mem_len), 0);
	CHECK_EQ(pos, b.mem_len);
	CHECK_EQ(memcmp(part, whole, b.mem_len), 0);
	/* At once, like sf_block_decode; a new block starts again at pos 0. */
	pos = 0;
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, b.mem_len), 0);
	CHECK_EQ(memcmp(part, whole, b.mem_len), 0);

	/* Random damage with a matching checksum: refused or decoded, in bounds (ASan). */
	{
		uint8_t *orig = malloc(b.stored_len);

		memcpy(orig, src, b.stored_len);
		for (int k = 0; k < 2000; k++) {
			int r;

			memcpy(src, orig, b.stored_len);
			for (int j = 0; j <= k % 4; j++)
				src[test_rand_below(b.stored_len)] ^= (uint8_t)(1 + test_rand_below(255));
			b.checksum = sf_checksum(src, b.stored_len);
			pos = 0;
			r = sf_block_decode_part(c, &b, src, part, &pos, (size_t)test_rand_below(b.mem_len));
			if (!r)
				r = sf_block_decode_part(c, &b, src, part, &pos, b.mem_len);
			CHECK(r == 0 || r == -PGC_ECORRUPT);
			CHECK(pos <= b.mem_len);
		}
		memcpy(src, orig, b.stored_len);
		b.checksum = big->checksum;
		free(orig);
	}
	/* Bad calls. */
	pos = 0;
	CHECK_EQ(sf_block_decode_part(raw, &b, src, part, &pos, PAGE), -EINVAL);
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, b.mem_len + 1), -EINVAL);
	pos = 2 * PAGE;
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, PAGE), -EINVAL);
	/* A wrong checksum is refused before anything is decoded. */
	b.checksum ^= 1;
	pos = 0;
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, PAGE), -PGC_ECHECKSUM);
	CHECK_EQ(pos, 0);
	/* A short frame with a matching checksum: refused by the end at the latest. */
	b.stored_len--;
	b.checksum = sf_checksum(src, b.stored_len);
	pos = 0;
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, PAGE), 0);
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, b.mem_len), -PGC_ECORRUPT);
	/* Trailing garbage after the frame. */
	b.stored_len += 2;
	src[b.stored_len - 1] = 0;
	b.checksum = sf_checksum(src, b.stored_len);
	pos = 0;
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, PAGE), 0);
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, b.mem_len), -PGC_ECORRUPT);
	/* The frame yields more than mem_len. */
	b.stored_len--;
	b.checksum = sf_checksum(src, b.stored_len);
	b.mem_len -= PAGE;
	pos = 0;
	CHECK_EQ(sf_block_decode_part(c, &b, src, part, &pos, b.mem_len), -PGC_ECORRUPT);
exit:
	free(src);
	free(whole);
	free(part);
	sf_codec_free(c);
	sf_codec_free(raw);
	sf_image_close(img);
	gen_free(&g);
}

static void test_foreign(void)
{
	struct sf_image *img;
	struct pgc_image_info info;

	CHECK_EQ(sf_image_open("nonexistent", false, &img), -ENOENT);
	write_file("plainfile", "x", 1);
	CHECK_EQ(sf_image_open("plainfile", false, &img), -ENOTDIR);
	CHECK_EQ(mkdir("emptydir", 0755), 0);
	CHECK_EQ(pgc_image_info("emptydir", &info), -PGC_EFOREIGN);
	CHECK_EQ(mkdir("criudir", 0755), 0);
	/* A CRIU file with another magic is not ours either. */
	static const uint8_t criu[12] = { 0x19, 0x43, 0x56, 0x54, 0x25, 0x40, 0x08, 0x56 };
	write_file("criudir/memfile.img", criu, sizeof(criu));
	CHECK_EQ(pgc_image_info("criudir", &info), -PGC_EFOREIGN);
	write_file("criudir/memfile.img", criu, 0);
	CHECK_EQ(pgc_image_info("criudir", &info), -PGC_ETRUNCATED);
}

static void test_writer(void)
{
	struct sf_writer *w = NULL;
	struct sf_image *img = NULL;
	struct sf_run run[2] = { { 0, PAGE }, { 2 * PAGE, PAGE } };
	struct pgc_segment seg = { { 0, 16 * PAGE }, PGC_KIND_ANONYMOUS, 1, 0, true };
	struct sf_meta meta = { 16 * PAGE, 16 * PAGE, &seg, 1 };
	uint64_t off;
	struct gen g1, g2;
	uint8_t page[PAGE];

	/* Bad parameters. */
	CHECK_EQ(sf_writer_open("w", PGC_COMPRESS_ZSTD, 0, 65536, &w), -EINVAL);
	CHECK_EQ(sf_writer_open("w", PGC_COMPRESS_ZSTD, 20, 65536, &w), -EINVAL);
	CHECK_EQ(sf_writer_open("w", PGC_COMPRESS_NONE, 0, 65536 + 1, &w), -EINVAL);
	CHECK_EQ(sf_writer_open("w", PGC_COMPRESS_NONE, 0, 8 << 20, &w), -EINVAL);
	CHECK_EQ(sf_writer_open("nodir/w", PGC_COMPRESS_NONE, 0, 65536, &w), -ENOENT);

	/* Abort leaves nothing behind. */
	CHECK_EQ(sf_writer_open("w", PGC_COMPRESS_NONE, 0, 65536, &w), 0);
	CHECK_EQ(sf_writer_add_block(w, run, 2, 2 * PAGE, 0, &off), 0);
	/* Runs out of order, bad sizes. */
	CHECK_EQ(sf_writer_add_block(w, run, 1, PAGE, 0, &off), -EINVAL);
	run[0].off = 4 * PAGE;
	CHECK_EQ(sf_writer_add_block(w, run, 1, PAGE - 1, 0, &off), -EINVAL);
	CHECK_EQ(sf_writer_add_block(w, run, 0, PAGE, 0, &off), -EINVAL);
	sf_writer_abort(w);
	CHECK_EQ(count_entries("w"), 0);

	/* A short pages.img fails the commit, and nothing appears. */
	CHECK_EQ(sf_writer_open("w", PGC_COMPRESS_NONE, 0, 65536, &w), 0);
	run[0].off = 0;
	CHECK_EQ(sf_writer_add_block(w, run, 2, 2 * PAGE, sf_checksum(page, 0), &off), 0);
	CHECK_EQ(sf_writer_commit(w, &meta), -EIO);
	CHECK_EQ(count_entries("w"), 0);

	/* Runs outside a live segment fail the commit. */
	CHECK_EQ(sf_writer_open("w", PGC_COMPRESS_NONE, 0, 65536, &w), 0);
	memset(page, 1, sizeof(page));
	CHECK_EQ(sf_writer_add_block(w, run, 2, 2 * PAGE, 0, &off), 0);
	CHECK_EQ(ftruncate(sf_writer_pages_fd(w), 2 * PAGE), 0);
	seg.range.start = PAGE;
	CHECK_EQ(sf_writer_commit(w, &meta), -EINVAL);
	CHECK_EQ(count_entries("w"), 0);
	seg.range.start = 0;

	/* Commit over an existing image replaces it whole. */
	CHECK_EQ(gen_image(&g1, "img", PGC_COMPRESS_ZSTD, 1, 65536, 200), 0);
	CHECK_EQ(gen_image(&g2, "img", PGC_COMPRESS_NONE, 0, 32768, 300), 0);
	CHECK_EQ(sf_image_open("img", false, &img), 0);
	if (img) {
		check_image(&g2, img);
		sf_image_close(img);
	}
	CHECK_EQ(count_entries("img"), 1);
	gen_free(&g1);
	gen_free(&g2);
	/* A trailing slash names the same image. */
	CHECK_EQ(gen_image(&g1, "img/", PGC_COMPRESS_ZSTD, 2, 65536, 100), 0);
	CHECK_EQ(count_entries("img"), 1);
	gen_free(&g1);

	/* Never replace what is not an image. */
	write_file("userfile", "data", 4);
	CHECK_EQ(sf_writer_open("userfile", PGC_COMPRESS_NONE, 0, 65536, &w), -ENOTDIR);
	CHECK_EQ(mkdir("userdir", 0755), 0);
	write_file("userdir/notes.txt", "data", 4);
	CHECK_EQ(sf_writer_open("userdir", PGC_COMPRESS_NONE, 0, 65536, &w), -EEXIST);
	CHECK_EQ(access("userdir/notes.txt", F_OK), 0);
	CHECK_EQ(access("userfile", F_OK), 0);
	CHECK_EQ(symlink("img", "link"), 0);
	CHECK_EQ(sf_writer_open("link", PGC_COMPRESS_NONE, 0, 65536, &w), -ENOTDIR);
	/* The target turning into user data between open and commit. */
	CHECK_EQ(sf_writer_open("late", PGC_COMPRESS_NONE, 0, 65536, &w), 0);
	CHECK_EQ(mkdir("late", 0755), 0);
	write_file("late/notes.txt", "data", 4);
	CHECK_EQ(sf_writer_commit(w, &(struct sf_meta){ 0 }), -EEXIST);
	CHECK_EQ(access("late/notes.txt", F_OK), 0);
	CHECK_EQ(count_entries("late"), 1);
	/* A failing write (here EFBIG past RLIMIT_FSIZE) leaves the old image. */
	struct rlimit old_lim, lim;
	struct sf_image *before = NULL;
	struct pgc_segment segs[64];
	CHECK_EQ(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
	signal(SIGXFSZ, SIG_IGN);
	for (int i = 0; i < 64; i++)
		segs[i] = (struct pgc_segment){ { 2 * i * PAGE, (2 * i + 1) * PAGE },
						PGC_KIND_TMPFS, 1 + i, 0, false };
	CHECK_EQ(sf_writer_open("img", PGC_COMPRESS_ZSTD, 1, 65536, &w), 0);
	lim = old_lim;
	lim.rlim_cur = 64;
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
	CHECK_EQ(sf_writer_commit(w, &(struct sf_meta){ 128 * PAGE, 128 * PAGE, segs, 64 }),
		 -EFBIG);
	CHECK_EQ(setrlimit(RLIMIT_FSIZE, &old_lim), 0);
	signal(SIGXFSZ, SIG_DFL);
	CHECK_EQ(count_entries("img"), 1);
	CHECK_EQ(sf_image_open("img", false, &before), 0);
	if (before) {
		CHECK_EQ(before->compress, PGC_COMPRESS_ZSTD);
		CHECK_EQ(before->level, 2);
		sf_image_close(before);
	}
	/* An empty directory may become an image. */
	CHECK_EQ(mkdir("fresh", 0755), 0);
	CHECK_EQ(gen_image(&g1, "fresh", PGC_COMPRESS_ZSTD, 1, 65536, 50), 0);
	CHECK_EQ(access("fresh/memfile.img", F_OK), 0);
	gen_free(&g1);
}

static void progress_cb(void *arg, uint64_t done, uint64_t total)
{
	uint64_t *last = arg;

	CHECK(done <= total);
	CHECK(done >= last[0]);
	last[0] = done;
	last[1] = total;
}

/* Parse a CRIU pagemap file with the generated code. */
static void check_pagemap(const char *path, const struct gen *g)
{
	uint8_t *p;
	size_t len, pos = 8, nent = 0, ri = 0;
	uint32_t n;

	p = read_file(path, &len);
	CHECK(p && len >= 8);
	if (!p)
		return;
	CHECK(!memcmp(p, "\x19\x43\x56\x54\x25\x40\x08\x56", 8));
	while (pos + 4 <= len) {
		memcpy(&n, p + pos, 4);
		pos += 4;
		if (n > len - pos) {
			CHECK(!"record past end");
			break;
		}
		if (nent == 0) {
			Pgckpt__PagemapHead *h = pgckpt__pagemap_head__unpack(NULL, n, p + pos);
			CHECK(h && h->pages_id == 1);
			pgckpt__pagemap_head__free_unpacked(h, NULL);
		} else {
			Pgckpt__PagemapEntry *e = pgckpt__pagemap_entry__unpack(NULL, n, p + pos);
			CHECK(e != NULL);
			if (!e)
				break;
			CHECK(e->has_nr_pages && e->nr_pages == e->compat_nr_pages);
			CHECK(e->has_flags && e->flags == 4);
			/* The entry covers whole consecutive runs. */
			uint64_t off = e->vaddr, end = e->vaddr + e->nr_pages * PAGE;
			while (ri < g->nruns && off < end) {
				CHECK_EQ(g->runs[ri].off, off);
				off += g->runs[ri].len;
				ri++;
			}
			CHECK_EQ(off, end);
			pgckpt__pagemap_entry__free_unpacked(e, NULL);
		}
		nent++;
		pos += n;
	}
	CHECK_EQ(pos, len);
	CHECK_EQ(ri, g->nruns);
	free(p);
}

static void test_public(void)
{
	struct pgc_image_info info;
	uint64_t last[2] = { 0, 0 };
	uint8_t *pages;
	size_t len, off = 0;
	struct gen g;
	bool same = true;
	int status;

	CHECK_EQ(gen_image(&g, "pub", PGC_COMPRESS_ZSTD, 3, 65536, 1000), 0);
	CHECK_EQ(pgc_image_info("pub", &info), 0);
	CHECK_EQ(info.version, SF_VERSION);
	/* inspect reports the source's size, not the page-rounded one */
	CHECK(info.file_size <= g.file_size && info.file_size > g.file_size - PAGE);
	CHECK_EQ(info.segments, g.nsegs);
	CHECK_EQ(info.blocks, g.nblocks);
	CHECK_EQ(info.block_size, 65536);
	CHECK_EQ(info.compress, PGC_COMPRESS_ZSTD);
	CHECK_EQ(info.level, 3);
	CHECK_EQ(pgc_image_verify("pub", progress_cb, last), 0);
	CHECK_EQ(last[0], info.mem_bytes);
	CHECK_EQ(last[1], info.mem_bytes);
	check_pagemap("pub/pagemap.img", &g);

	CHECK_EQ(pgc_image_export_criu("pub", "exp", 0), 0);
	check_pagemap("exp/pagemap.img", &g);
	pages = read_file("exp/pages-1.img", &len);
	CHECK_EQ(len, info.mem_bytes);
	for (size_t i = 0; pages && i < g.nruns && off + g.runs[i].len <= len; i++) {
		same &= !memcmp(pages + off, g.mem + g.runs[i].off, g.runs[i].len);
		off += g.runs[i].len;
	}
	CHECK(same && off == len);
	free(pages);
	/* Existing files are refused, replaced only when forced. */
	CHECK_EQ(pgc_image_export_criu("pub", "exp", 0), -EEXIST);
	CHECK_EQ(pgc_image_export_criu("pub", "exp", PGC_EXPORT_FORCE), 0);
	CHECK_EQ(pgc_image_export_criu("pub", "exp", 2), -EINVAL);

	if (access("/usr/bin/crit", X_OK) == 0) {
		status = system("crit decode --pretty -i exp/pagemap.img -o exp/pagemap.json 2>crit.err");
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		char *json = (char *)read_file("exp/pagemap.json", &len);
		if (json) {
			json[len] = 0;
			CHECK(strstr(json, "\"PAGEMAP\"") != NULL);
			CHECK(strstr(json, "\"pages_id\": 1") != NULL);
			CHECK(strstr(json, "PE_PRESENT") != NULL);
			if (test_case_failed)
				printf("  crit said: %.400s\n", json);
		} else {
			CHECK(!"crit wrote no json");
		}
		free(json);
		status = system("crit decode -i pub/pagemap.img > /dev/null 2>>crit.err");
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		printf("  crit decode: ok\n");
	} else {
		printf("  crit not found: skipping crit decode\n");
	}
	gen_free(&g);
}

/* A million-block index: encoded, checked and parsed in well under a second each. */
static void test_big_index(void)
{
	const size_t n = 1000000;
	struct sf_writer *w = NULL;
	struct sf_image *img = NULL;
	struct pgc_segment seg = { { 0, 2 * n * PAGE }, PGC_KIND_ANONYMOUS, 1, 7, false };
	struct sf_meta meta = { 2 * n * PAGE, 2 * n * PAGE, &seg, 1 };
	struct timespec t0, t1, t2;
	uint64_t off;
	size_t i, len;
	int ret = 0;

	CHECK_EQ(sf_writer_open("big", PGC_COMPRESS_ZSTD, 1, 4096, &w), 0);
	if (!w)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n && !ret; i++) {
		struct sf_run r = { 2 * i * PAGE, PAGE };

		ret = sf_writer_add_block(w, &r, 1, 20 + (uint32_t)(i % 50), i * 0x9e3779b97f4a7c15ULL,
					  &off);
	}
	CHECK_EQ(ret, 0);
	CHECK_EQ(ftruncate(sf_writer_pages_fd(w), (off_t)(off + 20 + (n - 1) % 50)), 0);
	CHECK_EQ(sf_writer_commit(w, &meta), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK_EQ(sf_image_open("big", false, &img), 0);
	clock_gettime(CLOCK_MONOTONIC, &t2);
	free(read_file("big/memfile.img", &len));
	if (img) {
		CHECK_EQ(img->nblocks, n);
		CHECK_EQ(img->blocks[n - 1].checksum, (n - 1) * 0x9e3779b97f4a7c15ULL);
		CHECK_EQ(img->runs[n - 1].off, 2 * (n - 1) * PAGE);
		sf_image_close(img);
	}
	printf("  1M blocks: memfile.img %zu bytes, write %.0f ms, open %.0f ms\n", len,
	       (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
	       (t2.tv_sec - t1.tv_sec) * 1e3 + (t2.tv_nsec - t1.tv_nsec) / 1e6);
}

/* Several threads decode blocks of one open image, each with its own codec. */
struct dec_arg {
	const struct sf_image *img;
	const struct gen *g;
	int id, errors;
};

static void *dec_thread(void *p)
{
	struct dec_arg *a = p;
	struct sf_codec *c;
	uint8_t *src = malloc(sf_encode_bound(a->img->compress, a->img->block_size));
	uint8_t *dst = malloc(a->img->block_size);

	if (sf_codec_new(a->img->compress, a->img->level, &c) != 0) {
		a->errors++;
		goto exit;
	}
	for (size_t i = (size_t)a->id; i < a->img->nblocks; i += 4) {
		const struct sf_block *b = &a->img->blocks[i];
		struct iovec iov = { dst, b->mem_len };
		size_t off = 0;

		if (pread(a->img->pages_fd, src, b->stored_len, (off_t)b->file_off) !=
			    (ssize_t)b->stored_len ||
		    sf_block_decode(c, b, src, &iov, 1) != 0) {
			a->errors++;
			continue;
		}
		for (uint32_t k = 0; k < b->nruns; k++) {
			const struct sf_run *r = &a->img->runs[b->first_run + k];

			a->errors += memcmp(dst + off, a->g->mem + r->off, r->len) != 0;
			off += r->len;
		}
	}
	sf_codec_free(c);
exit:
	free(src);
	free(dst);
	return NULL;
}

static void test_threads(void)
{
	struct sf_image *img = NULL;
	struct dec_arg args[4];
	pthread_t tid[4];
	struct gen g;

	CHECK_EQ(gen_image(&g, "thr", PGC_COMPRESS_ZSTD, 1, 32768, 2000), 0);
	CHECK_EQ(sf_image_open("thr", false, &img), 0);
	if (!img)
		goto exit;
	for (int i = 0; i < 4; i++) {
		args[i] = (struct dec_arg){ img, &g, i, 0 };
		CHECK_EQ(pthread_create(&tid[i], NULL, dec_thread, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		CHECK_EQ(args[i].errors, 0);
	}
	sf_image_close(img);
exit:
	gen_free(&g);
}

/*
 * The page hash every image records is XXH3-64 whichever code computes
 * it: sf_page_hash (AVX2 where the CPU has it) and the AVX2 code itself
 * agree with libxxhash on random and patterned pages.
 */
static void test_page_hash(void)
{
	uint8_t *page = aligned_alloc(SF_PAGE_SIZE, SF_PAGE_SIZE);
	int i;
	size_t k;

	if (!page)
		exit(1);
	for (i = 0; i < 300; i++) {
		if (i < 256)
			memset(page, i, SF_PAGE_SIZE);
		else
			test_fill_random(page, SF_PAGE_SIZE);
		if (i & 1)
			for (k = 0; k < SF_PAGE_SIZE; k += 61)
				page[k] ^= (uint8_t)(k + i);
		CHECK_EQ(sf_page_hash(page), XXH3_64bits(page, SF_PAGE_SIZE));
#ifdef SF_HAVE_PAGE_HASH_AVX2
		if (__builtin_cpu_supports("avx2"))
			CHECK_EQ(sf_page_hash_avx2(page), XXH3_64bits(page, SF_PAGE_SIZE));
#endif
	}
	free(page);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(test_page_hash);
	TEST_RUN(test_roundtrip);
	TEST_RUN(test_corruption);
	TEST_RUN(test_bad_pages);
	TEST_RUN(test_decode_part);
	TEST_RUN(test_foreign);
	TEST_RUN(test_writer);
	TEST_RUN(test_public);
	TEST_RUN(test_big_index);
	TEST_RUN(test_threads);
	return test_done();
}
