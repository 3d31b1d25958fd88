/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader_hooks.c - the page loader as the MemoryFile sees it: the hooks
 * (alloc/memfile_hooks.h) that loader_start installs, each the loader
 * function of the same job, and loader_of, which finds a MemoryFile's
 * loader again for pgc_load_await and pgc_load_stats.
 */
#include "loader_int.h"

static int hook_wait(void *ctx, pgc_range r)
{
	return loader_wait(ctx, r);
}

static int hook_ready(void *ctx, pgc_range r)
{
	return loader_ready(ctx, r);
}

static void hook_cancel(void *ctx, pgc_range r)
{
	loader_cancel(ctx, r);
}

static void hook_quiesce(void *ctx, pgc_range r)
{
	loader_quiesce(ctx, r);
}

static void hook_stop(void *ctx)
{
	loader_stop(ctx);
}

static void hook_destroy(void *ctx)
{
	loader_destroy(ctx);
}

static const struct memfile_hooks loader_hooks = {
	.wait = hook_wait,
	.ready = hook_ready,
	.cancel = hook_cancel,
	.quiesce = hook_quiesce,
	.stop = hook_stop,
	.destroy = hook_destroy,
};

int loader_install(struct pgc_memfile *mf, struct loader *l)
{
	return memfile_hooks_install(mf, &loader_hooks, l);
}

struct loader *loader_of(struct pgc_memfile *mf)
{
	return memfile_hooks_ctx(mf, &loader_hooks);
}
