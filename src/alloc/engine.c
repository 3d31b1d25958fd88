/* SPDX-License-Identifier: Apache-2.0 */
/*
 * engine.c - helpers shared by the save and load engines: how many
 * workers to run, a fast all-zero page test, and bulk population of fresh
 * memory. On virtual machines a page fault costs far more than the copy
 * it precedes, so the engines populate destination ranges with one
 * MADV_POPULATE_WRITE call each instead of faulting page by page.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "options.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

int engine_jobs(int requested)
{
	long n;

	if (requested > 0)
		n = requested;
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > opt_max(OPT_JOBS) ? (int)opt_max(OPT_JOBS) : (int)n;
}

bool engine_page_is_zero(const void *p)
{
	const uint64_t *w = p;
	size_t i;

	/* OR eight words at a time; compilers vectorise this loop. */
	for (i = 0; i < PGC_PAGE_SIZE / 8; i += 8) {
		uint64_t acc = w[i] | w[i + 1] | w[i + 2] | w[i + 3] |
			       w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
		if (acc)
			return false;
	}
	return true;
}

static atomic_bool populate_disabled;

int engine_populate(void *addr, size_t len)
{
	uintptr_t start = ((uintptr_t)addr + PGC_PAGE_SIZE - 1) & ~(uintptr_t)(PGC_PAGE_SIZE - 1);
	uintptr_t end = ((uintptr_t)addr + len) & ~(uintptr_t)(PGC_PAGE_SIZE - 1);

	if (start >= end || atomic_load_explicit(&populate_disabled, memory_order_relaxed))
		return 0;
	if (madvise((void *)start, end - start, MADV_POPULATE_WRITE) == 0)
		return 0;
	switch (errno) {
	case EFAULT:    /* a page could not be backed: a write would SIGBUS */
		return -ENOSPC;
	case ENOMEM:
		return -ENOMEM;
	case EINVAL:    /* not supported by this kernel or mapping */
		atomic_store_explicit(&populate_disabled, true, memory_order_relaxed);
		return 0;
	default:        /* EINTR, EAGAIN: the pages fault in on first write */
		return 0;
	}
}

uint64_t engine_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
