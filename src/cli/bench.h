/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench.h - what `pgckpt bench` (bench.c) takes from its lazy-restore
 * part (bench_lazy.c): one run's figures and their medians over runs.
 */
#ifndef PGC_CLI_BENCH_H
#define PGC_CLI_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"

/* One run's lazy figures (all placed / verified from the handoff). */
struct bench_lazy {
	double first_ms;        /* the consumer's first touch */
	double p50_us, p99_us;  /* its random first touches */
	double placed_ms;       /* the server: handoff to every page placed */
	double all_ms;          /* the consumer: attach to every page verified */
	double ws_without_ms;   /* the hot pages touched, no working set */
	double ws_with_ms;      /* the same with a recorded working set */
};

/*
 * bench_lazy_run - restore @img (@lo, in the background) lazily for
 * forked consumer processes (bench_lazy.c): @accesses random pages then
 * every page compared with @src_fd (@size bytes, memory-file offsets);
 * then the hot pages without and with a recorded working set. @dir holds
 * the socket and the working set while it runs.
 * Returns 0 with *@out, -EILSEQ if a page differed, or -errno / -PGC_E*.
 */
int bench_lazy_run(const struct pgc_load_opts *lo, const char *img, const char *dir, int src_fd,
		   uint64_t size, unsigned accesses, struct bench_lazy *out);

/* bench_lazy_median - the median of each figure of @r[0..n) (n <= 64 counted). */
void bench_lazy_median(const struct bench_lazy *r, size_t n, struct bench_lazy *out);

#endif /* PGC_CLI_BENCH_H */
