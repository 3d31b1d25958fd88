/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader.h - the page loader that fills a MemoryFile from an image
 * (loader.c), and the hooks through which the MemoryFile talks to it.
 *
 * One loader serves both load modes: an eager pgc_load starts it and
 * waits for it; a background pgc_load returns as soon as it runs. The
 * MemoryFile calls them through alloc/memfile_hooks.h (loader_hooks.c).
 */
#ifndef PGC_LOADER_H
#define PGC_LOADER_H

#include "pgckpt.h"

struct loader;
struct pgc_memfile;
struct sf_image;

/*
 * loader_start - start loading every extent of @img into @mf (whose usage
 * set already holds the image's segments) and install its hooks on
 * @mf. Takes ownership of @img (also on failure).
 * Returns 0, or -errno if the loader could not be started (nothing is
 * published then).
 */
int loader_start(struct pgc_memfile *mf, struct sf_image *img,
		 const struct pgc_load_opts *opts);

/* loader_of - the loader installed on @mf, or NULL. Lock-free. */
struct loader *loader_of(struct pgc_memfile *mf);

/*
 * loader_wait - called by pgc_load_wait (and so pgc_map_internal): push the
 * unloaded, unstarted parts of @r to the front of the loader's queue (in
 * the background, read and decode such blocks in the calling thread, at
 * once) and wait until every byte of @r is loaded; a recording load notes
 * the demand (loader_ws.c). Lock-free once @r is loaded (and noted).
 * Must be called without mf->mu. Returns 0 or the load error.
 */
int loader_wait(struct loader *l, pgc_range r);

/*
 * loader_ready - called by pgc_map_internal with PGC_ACCESS_NOWAIT: whether every byte of @r is
 * loaded, without queueing or waiting (l->mu is taken briefly unless @r
 * is below every unloaded page). Returns 1, 0 (some still to come) or the
 * load error.
 */
int loader_ready(struct loader *l, pgc_range r);

/*
 * loader_cancel - called by pgc_decref (with mf->mu held) for a range whose
 * refs reached zero, and by pgc_decommit (without it): drop the parts of
 * @r whose load has not started.
 */
void loader_cancel(struct loader *l, pgc_range r);

/*
 * loader_quiesce - called by the reclaimer and pgc_decommit before they
 * punch @r out, without mf->mu: wait until no started load still writes
 * into @r, so released pages are never written after they were punched.
 */
void loader_quiesce(struct loader *l, pgc_range r);

/* loader_await - wait until the load has ended. Returns 0 or its error. */
int loader_await(struct loader *l);

/* loader_stats - fill @out. */
void loader_stats(struct loader *l, struct pgc_load_stats *out);

/*
 * loader_stop - end the load, failing it with -ECANCELED if it still
 * runs (waiters wake with that error), and join its threads. The loader
 * stays valid (done) until loader_destroy. Called without mf->mu.
 */
void loader_stop(struct loader *l);

/*
 * loader_destroy - loader_stop, then free @l (may be NULL). Called by
 * pgc_memfile_destroy after uninstalling the hooks, without mf->mu.
 */
void loader_destroy(struct loader *l);

/*
 * loader_retire - for an eager load that failed after @l was installed:
 * stop @l, drop what it holds, and retire its hooks (memfile_hooks_retire:
 * the MemoryFile keeps @l until destroy, since a thread that found it
 * before, the reclaimer, may still call loader_quiesce, which now returns
 * at once). Called without mf->mu.
 */
void loader_retire(struct loader *l);

#endif /* PGC_LOADER_H */
