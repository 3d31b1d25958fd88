/* SPDX-License-Identifier: Apache-2.0 */
/*
 * alloc_bench.c - cost of pgc_allocate + pgc_decref against a backdrop of
 * 10^4, 10^5 and 10^6 live, non-mergeable usage segments (alternating
 * kinds, allocate-only, so no memory is touched). Placement is a gap
 * search in an augmented tree, so the cost should grow logarithmically:
 * the 10^6 / 10^4 ratio is printed and should stay within about 2x.
 *
 *   alloc_bench [--json] [--ops N] [--max-segments N]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgckpt.h"

#define NSIZES 3
#define NDIRS 2

static const uint64_t sizes[NSIZES] = { 10000, 100000, 1000000 };
static const char *const dir_names[NDIRS] = { "bottom-up", "top-down" };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Fill @mf with @n one-page segments of alternating kinds. */
static int backdrop(pgc_memfile *mf, uint64_t n)
{
	struct pgc_alloc_opts o = { .dir = PGC_BOTTOM_UP };
	pgc_range r;
	uint64_t i;
	int ret;

	for (i = 0; i < n; i++) {
		o.kind = i & 1 ? PGC_KIND_PAGECACHE : PGC_KIND_ANONYMOUS;
		ret = pgc_allocate(mf, PGC_PAGE_SIZE, &o, &r);
		if (ret)
			return ret;
	}
	return 0;
}

/* Mean ns of one allocate + decref of a page in direction @dir. */
static int measure(pgc_memfile *mf, enum pgc_direction dir, uint64_t ops,
		   double *ns_per_op)
{
	struct pgc_alloc_opts o = { .kind = PGC_KIND_TMPFS, .dir = dir };
	uint64_t i, t0;
	pgc_range r;
	int ret;

	/* Warm up: the first top-down allocation may grow the file. */
	for (i = 0; i < ops / 10 + 1; i++) {
		ret = pgc_allocate(mf, PGC_PAGE_SIZE, &o, &r);
		if (!ret)
			ret = pgc_decref(mf, r);
		if (ret)
			return ret;
	}
	t0 = now_ns();
	for (i = 0; i < ops; i++) {
		ret = pgc_allocate(mf, PGC_PAGE_SIZE, &o, &r);
		if (!ret)
			ret = pgc_decref(mf, r);
		if (ret)
			return ret;
	}
	*ns_per_op = (double)(now_ns() - t0) / (double)ops;
	return 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--json] [--ops N] [--max-segments N]\n", argv0);
	exit(1);
}

int main(int argc, char **argv)
{
	double ns[NSIZES][NDIRS] = { { 0 } }, build_s[NSIZES] = { 0 };
	uint64_t ops = 200000, max_segments = sizes[NSIZES - 1];
	struct pgc_memfile_opts mo;
	bool json = false;
	int i, d, nsizes = 0, ret;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
			ops = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--max-segments") && i + 1 < argc)
			max_segments = strtoull(argv[++i], NULL, 0);
		else
			usage(argv[0]);
	}
	if (!ops)
		usage(argv[0]);

	pgc_memfile_opts_init(&mo);
	mo.delayed_eviction = PGC_EVICTION_MANUAL;
	for (i = 0; i < NSIZES && sizes[i] <= max_segments; i++, nsizes++) {
		for (d = 0; d < NDIRS; d++) {
			pgc_memfile *mf;
			uint64_t t0 = now_ns();

			ret = pgc_memfile_new(&mo, &mf);
			if (ret) {
				fprintf(stderr, "pgc_memfile_new: %s\n", pgc_strerror(ret));
				return 2;
			}
			ret = backdrop(mf, sizes[i]);
			if (!d)
				build_s[i] = (double)(now_ns() - t0) / 1e9;
			if (!ret)
				ret = measure(mf, (enum pgc_direction)d, ops, &ns[i][d]);
			pgc_memfile_destroy(mf);
			if (ret) {
				fprintf(stderr, "allocate/decref: %s\n", pgc_strerror(ret));
				return 2;
			}
		}
	}

	if (json) {
		printf("{\"bench\":\"alloc\",\"ops\":%llu,\"results\":[", (unsigned long long)ops);
		for (i = 0; i < nsizes; i++)
			for (d = 0; d < NDIRS; d++)
				printf("%s{\"segments\":%llu,\"dir\":\"%s\",\"ns_per_op\":%.1f}",
				       i || d ? "," : "", (unsigned long long)sizes[i],
				       dir_names[d], ns[i][d]);
		printf("]");
		if (nsizes == NSIZES)
			printf(",\"ratio_1e6_1e4\":{\"bottom-up\":%.2f,\"top-down\":%.2f}",
			       ns[2][0] / ns[0][0], ns[2][1] / ns[0][1]);
		printf("}\n");
		return 0;
	}
	printf("allocate + decref of one page, %llu ops, against N live segments\n\n",
	       (unsigned long long)ops);
	printf("%12s  %14s  %14s  %12s\n", "segments N", "bottom-up ns", "top-down ns", "build N (s)");
	for (i = 0; i < nsizes; i++)
		printf("%12llu  %14.1f  %14.1f  %12.2f\n", (unsigned long long)sizes[i],
		       ns[i][0], ns[i][1], build_s[i]);
	if (nsizes == NSIZES)
		printf("\nratio 10^6 / 10^4: bottom-up %.2fx, top-down %.2fx\n",
		       ns[2][0] / ns[0][0], ns[2][1] / ns[0][1]);
	return 0;
}
