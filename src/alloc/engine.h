/* SPDX-License-Identifier: Apache-2.0 */
/*
 * engine.h - small pieces shared by the save engine and the page loader:
 * sizes, worker-count defaults, the zero-page test, bulk population of
 * fresh memory and a monotonic clock.
 */
#ifndef PGC_ENGINE_H
#define PGC_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "pgckpt.h"

/* Bytes of memory handed to one worker at a time. */
#define ENGINE_BATCH_BYTES (4u << 20)

/* engine_jobs - @requested if positive, else the number of online CPUs (1..64). */
int engine_jobs(int requested);

/* engine_page_is_zero - whether the PGC_PAGE_SIZE bytes at @p are all zero. */
bool engine_page_is_zero(const void *p);

/*
 * engine_populate - populate the whole pages of [addr, addr+len) writable
 * in bulk (MADV_POPULATE_WRITE), so that writing them takes no page
 * faults. Where the kernel or the mapping does not support it, it does
 * nothing from then on (the pages fault in on first write).
 * Returns 0, or -ENOSPC / -ENOMEM when the host cannot back the pages (a
 * full tmpfs, no free huge pages): writing them would raise SIGBUS.
 */
int engine_populate(void *addr, size_t len);

/* engine_now_ns - CLOCK_MONOTONIC in nanoseconds. */
uint64_t engine_now_ns(void);

#endif /* PGC_ENGINE_H */
