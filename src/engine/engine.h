/* SPDX-License-Identifier: Apache-2.0 */
/*
 * engine.h - small pieces shared by the save engine and the page loader:
 * sizes, worker-count defaults and bulk population of fresh memory. The
 * clock, the zero-page test and threads are src/util's (util/util.h).
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

/*
 * engine_populate - populate the whole pages of [addr, addr+len) writable
 * in bulk (util_populate_write), so that writing them takes no page
 * faults. Where the kernel or the mapping does not support it, or the
 * call was interrupted, it does nothing (the pages fault in on first write).
 * Returns 0, or -ENOSPC / -ENOMEM when the host cannot back the pages (a
 * full tmpfs, no free huge pages): writing them would raise SIGBUS.
 */
int engine_populate(void *addr, size_t len);

#endif /* PGC_ENGINE_H */
