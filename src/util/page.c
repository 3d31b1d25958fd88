/* SPDX-License-Identifier: Apache-2.0 */
/*
 * page.c - helpers on pages of memory: a fast all-zero test (the save
 * engine drops zero pages), and bulk population of fresh pages. On
 * virtual machines a page fault costs far more than the copy it precedes,
 * so the allocator (PGC_ALLOC_WRITE_POPULATE) and the loader populate
 * destination ranges with one MADV_POPULATE_WRITE call each instead of
 * faulting page by page; the loader also learns from it, before writing,
 * that the host cannot back the pages.
 */
#include <errno.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "pgckpt.h"
#include "util/util.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

bool util_page_is_zero(const void *p)
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

/* Process-wide, like gVisor's: once the kernel says no, stop asking. */
static atomic_bool populate_disabled;

int util_populate_write(void *addr, size_t len)
{
	uintptr_t mask = PGC_PAGE_SIZE - 1;
	uintptr_t start = ((uintptr_t)addr + mask) & ~mask;
	uintptr_t end = ((uintptr_t)addr + len) & ~mask;

	if (atomic_load_explicit(&populate_disabled, memory_order_relaxed))
		return -EOPNOTSUPP;
	if (start >= end)
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
		return -EOPNOTSUPP;
	default:        /* EINTR, EAGAIN: the pages fault in on first write */
		return -EAGAIN;
	}
}
