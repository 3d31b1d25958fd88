/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader.h - hooks between the MemoryFile and the background page loader
 * (loader.c). The MemoryFile calls these only while mf->loader is non-NULL
 * (an atomic pointer set by pgc_load in background mode).
 */
#ifndef PGC_LOADER_H
#define PGC_LOADER_H

#include "pgckpt.h"

struct pgc_loader;

/*
 * loader_wait - called by pgc_map_internal before mapping @r: push the
 * unloaded, unstarted parts of @r to the front of the loader's queue and
 * wait until every byte of @r is loaded. Must be called without mf->mu.
 * Returns 0 or the load error.
 */
int loader_wait(struct pgc_loader *l, pgc_range r);

/*
 * loader_cancel - called by pgc_decref with mf->mu held for a range whose
 * refs reached zero: drop the parts of @r whose load has not started.
 */
void loader_cancel(struct pgc_loader *l, pgc_range r);

#endif /* PGC_LOADER_H */
