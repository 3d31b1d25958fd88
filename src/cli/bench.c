/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench.c - `pgckpt bench`: what pgckpt does with one memory file, timed
 * in-process (like `zstd -b`): save, eager restore into fresh memory, and
 * a background restore seen from the consumer's side — time until
 * pgc_load returns, until every page is in, and the latency of random
 * 4 KiB accesses made while it loads — best of --runs; and lazy restores
 * for a consumer process (bench_lazy.c), medians of --runs. A table on
 * stdout, or one JSON object with --json (keys in docs/cli.md). `make bench`
 * (bench/run.sh) sets these figures beside zstd, cp and the machine's
 * own limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

struct bench_cfg {
	const char *file;
	const char *dir;
	struct pgc_save_opts so;
	struct pgc_load_opts lo;
	long runs;
	long accesses;
	bool json;
	bool lazy;              /* measure lazy restores too (not --no-lazy) */
	const char *tmp;        /* the bench's own directory in --dir */
};

struct bench_result {
	uint64_t size;
	struct pgc_image_info info;
	double save_s, restore_s, ready_ms, all_s;
	double p50_us, p99_us, max_us;
	unsigned accesses;
	uint64_t waits;
	bool lazy;              /* measured */
	struct bench_lazy lz;   /* medians */
};

static double now_s(void)
{
	return (double)cli_now_ns() / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The allocated pages of a MemoryFile, to pick random ones from. */
struct page_set {
	pgc_range *r;
	size_t n, cap;
	uint64_t pages;
};

static int collect_fn(void *arg, const struct pgc_segment *seg)
{
	struct page_set *ps = arg;

	if (!seg->refs)
		return 0;
	if (ps->n == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 64;
		pgc_range *r = realloc(ps->r, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		ps->r = r;
		ps->cap = cap;
	}
	ps->r[ps->n++] = seg->range;
	ps->pages += (seg->range.end - seg->range.start) / PGC_PAGE_SIZE;
	return 0;
}

static uint64_t page_at(const struct page_set *ps, uint64_t i)
{
	size_t k;

	for (k = 0; k < ps->n; k++) {
		uint64_t n = (ps->r[k].end - ps->r[k].start) / PGC_PAGE_SIZE;

		if (i < n)
			return ps->r[k].start + i * PGC_PAGE_SIZE;
		i -= n;
	}
	return 0;
}

/* One background restore: ready time, random accesses while loading, all. */
static int bench_background(const struct bench_cfg *c, const char *img,
			    struct bench_result *res)
{
	struct pgc_load_opts lo = c->lo;
	struct page_set ps = { 0 };
	struct pgc_load_stats st;
	pgc_memfile *mf = NULL;
	double t0, *lat;
	uint64_t rng = 0x9e3779b97f4a7c15ULL;
	unsigned n = 0;
	int ret;

	lat = calloc((size_t)c->accesses + 1, sizeof(*lat));
	ret = lat ? pgc_memfile_new(NULL, &mf) : -ENOMEM;
	if (ret)
		goto exit;
	lo.background = true;
	t0 = now_s();
	ret = pgc_load(mf, img, &lo);
	res->ready_ms = (now_s() - t0) * 1e3;
	if (ret)
		goto exit;
	ret = pgc_for_each_segment(mf, collect_fn, &ps);
	while (!ret && ps.pages && n < (unsigned)c->accesses) {
		struct iovec iov;
		uint64_t off;
		double a;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		off = page_at(&ps, rng % ps.pages);
		a = now_s();
		ret = pgc_map_internal(mf, (pgc_range){ off, off + PGC_PAGE_SIZE },
				       PGC_ACCESS_READ, &iov, 1);
		if (ret < 0)
			break;
		ret = 0;
		(void)*(volatile uint8_t *)iov.iov_base;   /* touch it, as a consumer would */
		lat[n++] = (now_s() - a) * 1e6;
		if (pgc_load_stats(mf, &st) == 0 && st.done)
			break;
	}
	if (!ret)
		ret = pgc_load_await(mf);
	res->all_s = now_s() - t0;
	if (ret)
		goto exit;
	pgc_load_stats(mf, &st);
	qsort(lat, n, sizeof(*lat), cmp_double);
	res->accesses = n;
	res->waits = st.waits;
	res->p50_us = n ? lat[(n - 1) / 2] : 0;
	res->p99_us = n ? lat[(size_t)((n - 1) * 0.99)] : 0;
	res->max_us = n ? lat[n - 1] : 0;
exit:
	pgc_memfile_destroy(mf);
	free(ps.r);
	free(lat);
	return ret;
}

/*
 * One run's lazy restores into *@out, unless --no-lazy. A page that
 * differs fails the bench; lazy restore unavailable here (no
 * userfaultfd) is said once and the bench goes on without it.
 * Returns 0 or -EILSEQ.
 */
static int lazy_run(struct bench_cfg *c, const char *img, pgc_memfile *src, uint64_t size,
		    struct bench_lazy *out)
{
	int ret;

	if (!c->lazy)
		return 0;
	ret = bench_lazy_run(&c->lo, img, c->tmp, pgc_memfile_fd(src), size,
			     (unsigned)c->accesses, out);
	if (ret == -EILSEQ) {
		cli_error("bench", c->file, "lazy restore: a page differs from the file");
		return ret;
	}
	if (ret) {
		cli_error("bench", NULL, "lazy restore not measured: %s", pgc_strerror(ret));
		c->lazy = false;
	}
	return 0;
}

/*
 * Save, restore and restore in the background the file open at @fd (owned
 * from here on), through the image @img. Returns 0 or the first error;
 * *@src_err tells whether it concerns the file (else the image's --dir).
 */
static int bench_run(struct bench_cfg *c, int fd, const char *img,
		     struct bench_result *res, bool *src_err)
{
	struct pgc_memfile_opts mo;
	pgc_memfile *src = NULL, *dst = NULL;
	struct bench_lazy *lz = NULL;
	struct stat st;
	double t0, t;
	long r, nlz = 0;
	int ret;

	*src_err = true;
	if (fstat(fd, &st) != 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	res->size = (uint64_t)st.st_size;
	pgc_memfile_opts_init(&mo);
	mo.fd = fd;
	mo.adopt = true;
	ret = pgc_memfile_new(&mo, &src);
	if (ret) {
		close(fd);
		return ret;
	}
	pgc_mark_savable(src);
	res->save_s = res->restore_s = res->all_s = 1e9;
	*src_err = false;
	lz = calloc((size_t)c->runs, sizeof(*lz));
	if (!lz) {
		ret = -ENOMEM;
		goto exit;
	}
	for (r = 0; r < c->runs; r++) {
		struct pgc_save_opts so = c->so;
		struct bench_result bg = { 0 };

		so.logical_size = res->size;
		t0 = now_s();
		ret = pgc_save(src, img, &so);
		t = now_s() - t0;
		if (ret)
			goto exit;
		if (t < res->save_s)
			res->save_s = t;

		ret = pgc_memfile_new(NULL, &dst);
		if (ret)
			goto exit;
		t0 = now_s();
		ret = pgc_load(dst, img, &c->lo);
		t = now_s() - t0;
		pgc_memfile_destroy(dst);
		dst = NULL;
		if (ret)
			goto exit;
		if (t < res->restore_s)
			res->restore_s = t;

		ret = bench_background(c, img, &bg);
		if (ret)
			goto exit;
		if (bg.all_s < res->all_s) {
			bg.size = res->size;
			bg.save_s = res->save_s;
			bg.restore_s = res->restore_s;
			*res = bg;
		}
		ret = lazy_run(c, img, src, res->size, &lz[nlz]);
		if (ret)
			goto exit;
		nlz += c->lazy;
	}
	res->lazy = nlz > 0;
	bench_lazy_median(lz, nlz, &res->lz);
	ret = pgc_image_info(img, &res->info);
exit:
	free(lz);
	pgc_memfile_destroy(src);
	return ret;
}

static void print_result(const struct bench_cfg *c, const struct bench_result *res)
{
	double mib = (double)res->size / (1 << 20);
	char a[32], b[32];

	if (c->json) {
		printf("{\"file\":");
		cli_json_string(stdout, c->file);
		printf(",\"size\":%" PRIu64 ",\"mem_bytes\":%" PRIu64 ",\"image_bytes\":%" PRIu64
		       ",\"compress\":\"%s\",\"level\":%d,\"block_size\":%u,\"runs\":%ld"
		       ",\"save_s\":%.4f,\"restore_s\":%.4f,\"ready_ms\":%.3f,\"all_s\":%.4f"
		       ",\"accesses\":%u,\"waits\":%" PRIu64 ",\"p50_us\":%.1f,\"p99_us\":%.1f"
		       ",\"max_us\":%.1f",
		       res->size, res->info.mem_bytes, res->info.pages_bytes,
		       res->info.compress == PGC_COMPRESS_NONE ? "none" : "zstd", res->info.level,
		       res->info.block_size, c->runs, res->save_s, res->restore_s, res->ready_ms,
		       res->all_s, res->accesses, res->waits, res->p50_us, res->p99_us, res->max_us);
		if (res->lazy)
			printf(",\"lazy_first_ms\":%.3f,\"lazy_p50_us\":%.1f,\"lazy_p99_us\":%.1f"
			       ",\"lazy_placed_ms\":%.1f,\"lazy_all_ms\":%.1f,\"ws_without_ms\":%.2f"
			       ",\"ws_with_ms\":%.2f",
			       res->lz.first_ms, res->lz.p50_us, res->lz.p99_us, res->lz.placed_ms,
			       res->lz.all_ms, res->lz.ws_without_ms, res->lz.ws_with_ms);
		printf("}\n");
		return;
	}
	cli_human_bytes(res->size, a, sizeof(a));
	cli_human_bytes(res->info.pages_bytes, b, sizeof(b));
	printf("%s: %s, image %s (%.2fx), best of %ld\n", c->file, a, b,
	       res->info.pages_bytes ? (double)res->info.mem_bytes / res->info.pages_bytes : 0.0,
	       c->runs);
	printf("  save                %8.3f s  %8.1f MiB/s\n", res->save_s, mib / res->save_s);
	printf("  restore (eager)     %8.3f s  %8.1f MiB/s\n", res->restore_s, mib / res->restore_s);
	printf("  restore (background) ready %.3f ms, all in %.3f s\n", res->ready_ms, res->all_s);
	printf("  random 4 KiB reads during the load: %u (%" PRIu64 " waited), "
	       "p50 %.1f us, p99 %.1f us, max %.1f us\n",
	       res->accesses, res->waits, res->p50_us, res->p99_us, res->max_us);
	if (!res->lazy)
		return;
	printf("  lazy (a consumer process, median of %ld): first access %.2f ms, "
	       "p50 %.1f us, p99 %.1f us,\n"
	       "    every page placed %.1f ms, verified %.1f ms\n",
	       c->runs, res->lz.first_ms, res->lz.p50_us, res->lz.p99_us, res->lz.placed_ms,
	       res->lz.all_ms);
	printf("  lazy working set touched: %.1f ms, %.1f ms with a recorded one (%.2fx)\n",
	       res->lz.ws_without_ms, res->lz.ws_with_ms,
	       res->lz.ws_without_ms > 0 ? res->lz.ws_with_ms / res->lz.ws_without_ms : 0.0);
}

static int make_dir(const char *base, char *out, size_t len)
{
	if ((size_t)snprintf(out, len, "%s/pgckpt-bench.XXXXXX", base) >= len)
		return -ENAMETOOLONG;
	return mkdtemp(out) ? 0 : -errno;
}

int cmd_bench(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "compress", required_argument, NULL, 'c' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "aio", required_argument, NULL, 'a' },
		{ "runs", required_argument, NULL, 'r' },
		{ "accesses", required_argument, NULL, 'n' },
		{ "dir", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'J' },
		{ "no-lazy", no_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench_cfg c = { .runs = 3, .accesses = 2000, .lazy = true };
	struct bench_result res = { 0 };
	char dir[4096], img[4200];
	struct stat st;
	bool src_err;
	int opt, ret, status, fd;

	pgc_save_opts_init(&c.so);
	pgc_load_opts_init(&c.lo);
	c.dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":c:j:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (cli_opt_compress("bench", optarg, &c.so))
				return EXIT_USAGE;
			break;
		case 'b':
			if (cli_opt_block_size("bench", optarg, &c.so))
				return EXIT_USAGE;
			break;
		case 'j':
			if (cli_opt_jobs("bench", optarg, &c.so.jobs))
				return EXIT_USAGE;
			c.lo.jobs = c.so.jobs;
			break;
		case 'a':
			if (cli_opt_aio("bench", optarg, &c.so.aio))
				return EXIT_USAGE;
			c.lo.aio = c.so.aio;
			break;
		case 'r':
			if (cli_parse_int(optarg, 1, 1000, &c.runs))
				return cli_usage("bench", "bad run count '%s'", optarg);
			break;
		case 'n':
			if (cli_parse_int(optarg, 0, 10000000, &c.accesses))
				return cli_usage("bench", "bad access count '%s'", optarg);
			break;
		case 'd':
			c.dir = optarg;
			break;
		case 'J':
			c.json = true;
			break;
		case 'L':
			c.lazy = false;
			break;
		case 'h':
			cli_help("bench");
			return EXIT_OK;
		default:
			return cli_bad_option("bench", opt, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage("bench", "expected one FILE");
	c.file = argv[optind];
	status = cli_open_source("bench", c.file, &fd, &st);
	if (status)
		return status;
	ret = make_dir(c.dir, dir, sizeof(dir));
	if (ret) {
		close(fd);
		return cli_fail("bench", c.dir, ret);
	}
	snprintf(img, sizeof(img), "%s/img", dir);
	c.tmp = dir;
	ret = bench_run(&c, fd, img, &res, &src_err);
	if (ret && !src_err) {
		/* Saving and loading the image in --dir: name it, not the file. */
		cli_error("bench", NULL, "--dir %s: %s", c.dir, pgc_strerror(ret));
		status = pgc_is_image_error(ret) ? EXIT_IMAGE : EXIT_IO;
	} else {
		status = ret ? cli_fail("bench", c.file, ret) : EXIT_OK;
	}
	if (!ret)
		print_result(&c, &res);
	/* The image holds only memfile.img, pages.img and pagemap.img. */
	for (const char *const *f = (const char *const[]){ "memfile.img", "pages.img",
							  "pagemap.img", NULL }; *f; f++) {
		char p[4300];

		snprintf(p, sizeof(p), "%s/%s", img, *f);
		unlink(p);
	}
	rmdir(img);
	rmdir(dir);
	return status;
}
