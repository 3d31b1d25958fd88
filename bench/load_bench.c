/* SPDX-License-Identifier: Apache-2.0 */
/*
 * load_bench.c - background restore, measured from the consumer's side:
 * time until pgc_load returns (time to ready), time until every page is
 * in, and the latency of random page accesses (pgc_map_internal of one
 * page, then a read of it) made while the load runs, as percentiles.
 * Also an eager load of the same image for comparison.
 *
 *   load_bench IMAGE [--max-read B] [--iovecs N] [--inflight N] [--accesses N]
 *              [--jobs N] [--aio B] [--json]
 *
 * Used to choose the loader's defaults (docs/perf.md, "Background loads").
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgckpt.h"

struct cfg {
	const char *image;
	struct pgc_load_opts lo;
	unsigned accesses;
	bool json;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct seg_list {
	pgc_range r[4096];
	size_t n;
	uint64_t pages;
};

static int seg_fn(void *arg, const struct pgc_segment *s)
{
	struct seg_list *l = arg;

	if (s->refs && l->n < 4096) {
		l->r[l->n++] = s->range;
		l->pages += (s->range.end - s->range.start) / PGC_PAGE_SIZE;
	}
	return 0;
}

/* Offset of the @i-th allocated page. */
static uint64_t page_at(const struct seg_list *l, uint64_t i)
{
	size_t k;

	for (k = 0; k < l->n; k++) {
		uint64_t n = (l->r[k].end - l->r[k].start) / PGC_PAGE_SIZE;

		if (i < n)
			return l->r[k].start + i * PGC_PAGE_SIZE;
		i -= n;
	}
	return l->r[0].start;
}

static int run(const struct cfg *c)
{
	struct pgc_load_opts lo = c->lo;
	struct pgc_load_stats st;
	struct seg_list *segs = calloc(1, sizeof(*segs));
	uint64_t *lat = calloc(c->accesses ? c->accesses : 1, sizeof(*lat));
	uint64_t t0, t_ready, t_all, t_eager, rng = 0x9e3779b97f4a7c15ULL;
	pgc_memfile *mf = NULL;
	unsigned i, n = 0;
	int ret;

	if (!segs || !lat)
		return -ENOMEM;
	/* Eager, for comparison. */
	ret = pgc_memfile_new(NULL, &mf);
	if (ret)
		goto exit;
	t0 = now_ns();
	ret = pgc_load(mf, c->image, &lo);
	t_eager = now_ns() - t0;
	pgc_memfile_destroy(mf);
	mf = NULL;
	if (ret)
		goto exit;

	ret = pgc_memfile_new(NULL, &mf);
	if (ret)
		goto exit;
	lo.background = true;
	t0 = now_ns();
	ret = pgc_load(mf, c->image, &lo);
	t_ready = now_ns() - t0;
	if (ret)
		goto exit;
	pgc_for_each_segment(mf, seg_fn, segs);
	for (i = 0; i < c->accesses && segs->pages; i++) {
		uint64_t off, a;
		struct iovec iov;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		off = page_at(segs, rng % segs->pages);
		a = now_ns();
		ret = pgc_map_internal(mf, (pgc_range){ off, off + PGC_PAGE_SIZE },
				       PGC_ACCESS_READ, &iov, 1);
		if (ret < 0)
			goto exit;
		(void)*(volatile uint8_t *)iov.iov_base;   /* touch it, as a consumer would */
		lat[n++] = now_ns() - a;
		pgc_load_stats(mf, &st);
		if (st.done)
			break;
	}
	ret = pgc_load_await(mf);
	t_all = now_ns() - t0;
	if (ret)
		goto exit;
	pgc_load_stats(mf, &st);
	qsort(lat, n, sizeof(*lat), cmp_u64);
#define PCT(p) (n ? lat[(size_t)((n - 1) * (p))] / 1e3 : 0.0)
	if (c->json)
		printf("{\"max_read\":%u,\"iovecs\":%u,\"inflight\":%u,\"eager_ms\":%.2f,"
		       "\"ready_ms\":%.3f,\"all_ms\":%.2f,\"accesses\":%u,\"p50_us\":%.1f,"
		       "\"p99_us\":%.1f,\"max_us\":%.1f,\"waits\":%" PRIu64 "}\n",
		       lo.max_read, lo.max_iovecs, lo.max_inflight, t_eager / 1e6,
		       t_ready / 1e6, t_all / 1e6, n, PCT(0.5), PCT(0.99), PCT(1.0), st.waits);
	else
		printf("max_read %7u iovecs %3u inflight %3u | eager %7.1f ms | ready %6.2f ms, "
		       "all %7.1f ms | %4u accesses p50 %7.1f us p99 %8.1f us max %8.1f us "
		       "(%" PRIu64 " waits)\n",
		       lo.max_read, lo.max_iovecs, lo.max_inflight, t_eager / 1e6, t_ready / 1e6,
		       t_all / 1e6, n, PCT(0.5), PCT(0.99), PCT(1.0), st.waits);
exit:
	pgc_memfile_destroy(mf);
	free(segs);
	free(lat);
	return ret;
}

int main(int argc, char **argv)
{
	struct cfg c = { .accesses = 2000 };
	int i, ret;

	pgc_load_opts_init(&c.lo);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--json")) {
			c.json = true;
		} else if (v && !strcmp(a, "--max-read")) {
			c.lo.max_read = (uint32_t)strtoul(v, NULL, 0);
			i++;
		} else if (v && !strcmp(a, "--iovecs")) {
			c.lo.max_iovecs = (uint32_t)strtoul(v, NULL, 0);
			i++;
		} else if (v && !strcmp(a, "--inflight")) {
			c.lo.max_inflight = (uint32_t)strtoul(v, NULL, 0);
			i++;
		} else if (v && !strcmp(a, "--accesses")) {
			c.accesses = (unsigned)strtoul(v, NULL, 0);
			i++;
		} else if (v && !strcmp(a, "--jobs")) {
			c.lo.jobs = atoi(v);
			i++;
		} else if (v && !strcmp(a, "--aio")) {
			c.lo.aio = v;
			i++;
		} else if (a[0] != '-' && !c.image) {
			c.image = a;
		} else {
			fprintf(stderr, "usage: load_bench IMAGE [--max-read B] [--iovecs N] "
				"[--inflight N] [--accesses N] [--jobs N] [--aio B] [--json]\n");
			return 1;
		}
	}
	if (!c.image) {
		fprintf(stderr, "load_bench: no image\n");
		return 1;
	}
	ret = run(&c);
	if (ret) {
		fprintf(stderr, "load_bench: %s: %s\n", c.image, pgc_strerror(ret));
		return 2;
	}
	return 0;
}
