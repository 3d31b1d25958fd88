/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mkmem.c - make a synthetic memory file for the demo, the tests and the
 * benchmarks (built as $(B)/bench/mkmem):
 *
 *   mkmem [--holes F] [--zero F] [--random F] [--seed N] PATH SIZE
 *
 * SIZE takes K/M/G suffixes and is rounded down to whole pages. The file
 * is laid out in runs of 1-256 pages, each one of: a hole (never written,
 * stays sparse), written zero pages, incompressible random pages, or
 * compressible "heap-like" pages (pointers, small integers, short strings,
 * zero words; the last 8 bytes of each hold its page number). The default
 * mix is modelled on real process memory: 20% holes, 20% written zeros,
 * 15% random, the rest heap-like. The fractions are taken in that order:
 * where they add up to more than 1, the later kinds get what is left
 * (--holes 1 makes a file of holes). The same arguments always give the same
 * bytes. The file is written in large pwrites to PATH.tmp-XXXXXX beside
 * PATH and renamed into place, so PATH is either complete or absent.
 *
 * Exit status: 0 ok, 1 usage, 2 I/O error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE      4096
#define RUN_MAX   256                      /* pages in one run */
#define HEAP_KINDS 64                      /* distinct heap-like pages */
#define BUF_PAGES 1024                     /* pages per pwrite (4 MiB) */

static const char usage[] =
	"Usage: mkmem [--holes F] [--zero F] [--random F] [--seed N] PATH SIZE\n"
	"Make a synthetic memory file of SIZE bytes (K/M/G suffixes): runs of 1-256\n"
	"pages, each a hole, written zeros, random bytes or heap-like words.\n"
	"\n"
	"  --holes F    fraction of runs left as holes (default 0.20)\n"
	"  --zero F     fraction of runs of written zero pages (default 0.20)\n"
	"  --random F   fraction of runs of random pages (default 0.15)\n"
	"  --seed N     the same seed and arguments give the same bytes (default 1)\n"
	"  -h, --help   show this help\n"
	"\n"
	"The remaining runs are heap-like pages; the fractions are taken in the\n"
	"order above, so --holes 1 alone makes a file of holes.\n";

/* splitmix64: a fast, well-mixed generator; enough for test data. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) / (double)(1ULL << 53);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return rng_next(s) % n;
}

/* A heap-like page: 35% pointers, 25% small ints, 20% short strings, 20% zero words. */
static void heap_page(uint64_t *s, unsigned char *page)
{
	static const char strs[4][8] = { "user-id", "name=\0\0", "{\"k\":1,}", "abcdefgh" };
	uint64_t base = 0x7f0000000000ULL + rng_below(s, 1ULL << 28) * 16;
	size_t i;

	for (i = 0; i < PAGE / 8; i++) {
		double k = rng_unit(s);
		uint64_t w = 0;

		if (k < 0.35)
			w = base + rng_below(s, 4096) * 16;
		else if (k < 0.6)
			w = rng_below(s, 256);
		else if (k < 0.8)
			memcpy(&w, strs[rng_below(s, 4)], 8);
		memcpy(page + i * 8, &w, 8);
	}
}

static int parse_size(const char *str, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (*str < '0' || *str > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(str, &end, 10);
	if (errno)
		return -errno;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_fraction(const char *str, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(str, &end);
	if (errno || end == str || *end || !(v >= 0.0 && v <= 1.0))
		return -EINVAL;
	*out = v;
	return 0;
}

static int pwrite_all(int fd, const unsigned char *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

struct gen {
	double holes, zero, random;
	uint64_t seed;
	int fd;
	unsigned char *buf;       /* BUF_PAGES pages waiting to be written */
	uint64_t buf_off;         /* file offset of buf[0] */
	size_t buf_pages;
	unsigned char *heap;      /* HEAP_KINDS heap-like pages */
};

static int flush(struct gen *g)
{
	int ret = pwrite_all(g->fd, g->buf, g->buf_pages * PAGE, g->buf_off);

	g->buf_pages = 0;
	return ret;
}

/* The next page slot in the buffer for file page @p, flushing as needed. */
static int slot(struct gen *g, uint64_t p, unsigned char **out)
{
	int ret;

	if (g->buf_pages && (g->buf_pages == BUF_PAGES ||
			     g->buf_off + g->buf_pages * PAGE != p * PAGE)) {
		ret = flush(g);
		if (ret)
			return ret;
	}
	if (!g->buf_pages)
		g->buf_off = p * PAGE;
	*out = g->buf + g->buf_pages++ * PAGE;
	return 0;
}

/* Lay out @pages pages, run by run. Returns 0 or -errno. */
static int generate(struct gen *g, uint64_t pages)
{
	uint64_t s = g->seed, p = 0, i, n;
	unsigned char *pg;
	int ret;

	for (i = 0; i < HEAP_KINDS; i++)
		heap_page(&s, g->heap + i * PAGE);
	while (p < pages) {
		double k;

		n = 1 + rng_below(&s, RUN_MAX);
		if (n > pages - p)
			n = pages - p;
		k = rng_unit(&s);
		for (i = 0; i < n && k >= g->holes; i++) {
			ret = slot(g, p + i, &pg);
			if (ret)
				return ret;
			if (k < g->holes + g->zero) {
				memset(pg, 0, PAGE);
			} else if (k < g->holes + g->zero + g->random) {
				size_t w;

				for (w = 0; w < PAGE; w += 8) {
					uint64_t r = rng_next(&s);

					memcpy(pg + w, &r, 8);
				}
			} else {
				uint64_t num = p + i;

				memcpy(pg, g->heap + rng_below(&s, HEAP_KINDS) * PAGE, PAGE - 8);
				memcpy(pg + PAGE - 8, &num, 8);
			}
		}
		p += n;
	}
	return g->buf_pages ? flush(g) : 0;
}

/* Create PATH.tmp-XXXXXX; its name goes to @tmp (PATH_MAX bytes). */
static int open_tmp(const char *path, char *tmp)
{
	int fd;

	if (snprintf(tmp, PATH_MAX, "%s.tmp-XXXXXX", path) >= PATH_MAX)
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int make_file(struct gen *g, const char *path, uint64_t size)
{
	char tmp[PATH_MAX];
	uint64_t pages = size / PAGE;
	int ret;

	g->fd = open_tmp(path, tmp);
	if (g->fd < 0)
		return g->fd;
	if (fchmod(g->fd, 0644) < 0 || ftruncate(g->fd, (off_t)(pages * PAGE)) < 0) {
		ret = -errno;
		goto fail;
	}
	ret = generate(g, pages);
	if (ret)
		goto fail;
	if (close(g->fd) < 0) {
		g->fd = -1;
		ret = -errno;
		goto fail;
	}
	g->fd = -1;
	if (rename(tmp, path) < 0) {
		ret = -errno;
		goto fail;
	}
	return 0;
fail:
	if (g->fd >= 0)
		close(g->fd);
	unlink(tmp);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "holes",  required_argument, NULL, 'H' },
		{ "zero",   required_argument, NULL, 'Z' },
		{ "random", required_argument, NULL, 'R' },
		{ "seed",   required_argument, NULL, 'S' },
		{ "help",   no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct gen g = { .holes = 0.20, .zero = 0.20, .random = 0.15, .seed = 1, .fd = -1 };
	uint64_t size;
	int opt, ret;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'H':
		case 'Z':
		case 'R':
			if (parse_fraction(optarg, opt == 'H' ? &g.holes :
					   opt == 'Z' ? &g.zero : &g.random)) {
				fprintf(stderr, "mkmem: bad fraction '%s' (0..1)\n", optarg);
				return 1;
			}
			break;
		case 'S':
			if (parse_size(optarg, &g.seed)) {
				fprintf(stderr, "mkmem: bad seed '%s'\n", optarg);
				return 1;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 1;
		}
	}
	if (argc - optind != 2) {
		fputs(usage, stderr);
		return 1;
	}
	if (parse_size(argv[optind + 1], &size)) {
		fprintf(stderr, "mkmem: bad size '%s'\n", argv[optind + 1]);
		return 1;
	}
	g.buf = malloc((size_t)BUF_PAGES * PAGE);
	g.heap = malloc((size_t)HEAP_KINDS * PAGE);
	if (!g.buf || !g.heap) {
		fprintf(stderr, "mkmem: out of memory\n");
		return 2;
	}
	ret = make_file(&g, argv[optind], size);
	free(g.buf);
	free(g.heap);
	if (ret) {
		fprintf(stderr, "mkmem: %s: %s\n", argv[optind], strerror(-ret));
		return 2;
	}
	return 0;
}
