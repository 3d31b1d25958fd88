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

/* Bytes of file offsets in one save window, the unit handed to a worker. */
#define ENGINE_WINDOW_BYTES (4u << 20)

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

struct sf_image;

/*
 * save_parent_open - open the chain of @parent for a save to @path
 * (save_parent.c): it must be a sound image with fewer than PGC_MAX_DEPTH
 * ancestors, compressed as @compress, and neither it nor an ancestor may
 * be @path. Stores the chain in *@img and the parent's path relative to
 * @path's directory in *@rel (malloc'd).
 * Returns 0, -PGC_E*, -PGC_ELIMIT, -EINVAL, -ELOOP, -ENOMEM or -errno.
 */
int save_parent_open(const char *parent, const char *path, enum pgc_compress compress,
		     struct sf_image **img, char **rel);

/* The sample save_parent_changed reads. */
#define SAVE_PARENT_SAMPLES 256

/*
 * save_parent_changed - estimate the share of the pages of @segs (those
 * with refs; @nsegs of them) in the file @fd that a save against the
 * chain @parent will store: SAVE_PARENT_SAMPLES pages spread evenly
 * over them, read with pread (a hole stays a hole), each counted when
 * it is non-zero and not what the chain holds at its offset.
 * Returns the share in 1/1024ths (0..1024), or -errno (a failed read).
 */
int save_parent_changed(const struct sf_image *parent, int fd, const struct pgc_segment *segs,
			size_t nsegs);

#endif /* PGC_ENGINE_H */
