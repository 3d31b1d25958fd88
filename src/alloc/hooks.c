/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hooks.c - the MemoryFile's side of memfile_hooks.h: installing the
 * engine's hooks, stopping and releasing them at destroy, and the small
 * accessors the engine uses instead of struct pgc_memfile's fields. The
 * hot hooks (wait, cancel, quiesce) are called through memfile.h's inline
 * helpers.
 */
#include <errno.h>
#include <stdlib.h>

#include "memfile.h"

int memfile_hooks_install(struct pgc_memfile *mf, const struct memfile_hooks *hooks,
			  void *ctx)
{
	int ret = 0;

	pthread_mutex_lock(&mf->mu);
	PGC_ASSERT(!atomic_load_explicit(&mf->hook_ctx, memory_order_relaxed));
	PGC_ASSERT(!mf->hooks || mf->hooks == hooks);
	/* Room to retire this context later without failing. */
	if (mf->nretired == mf->retired_cap) {
		size_t cap = mf->retired_cap ? 2 * mf->retired_cap : 2;
		void **n = realloc(mf->retired_ctx, cap * sizeof(*n));

		if (!n) {
			ret = -ENOMEM;
			goto exit;
		}
		mf->retired_ctx = n;
		mf->retired_cap = cap;
	}
	mf->hooks = hooks;
	/* Published after the hooks: whoever sees the context sees them. */
	atomic_store_explicit(&mf->hook_ctx, ctx, memory_order_release);
exit:
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

void memfile_hooks_retire(struct pgc_memfile *mf)
{
	void *ctx;

	pthread_mutex_lock(&mf->mu);
	ctx = atomic_exchange_explicit(&mf->hook_ctx, NULL, memory_order_acq_rel);
	if (ctx)
		mf->retired_ctx[mf->nretired++] = ctx;
	pthread_mutex_unlock(&mf->mu);
}

void *memfile_hooks_ctx(struct pgc_memfile *mf, const struct memfile_hooks *hooks)
{
	void *ctx = memfile_hook_ctx(mf);

	return ctx && mf->hooks == hooks ? ctx : NULL;
}

void memfile_hooks_stop(struct pgc_memfile *mf)
{
	void *ctx = memfile_hook_ctx(mf);

	if (ctx)
		mf->hooks->stop(ctx);
}

void memfile_hooks_release(struct pgc_memfile *mf)
{
	void *ctx = atomic_exchange_explicit(&mf->hook_ctx, NULL, memory_order_acq_rel);

	if (ctx)
		mf->hooks->destroy(ctx);
	while (mf->nretired)
		mf->hooks->destroy(mf->retired_ctx[--mf->nretired]);
	free(mf->retired_ctx);
	mf->retired_ctx = NULL;
	mf->retired_cap = 0;
}

bool memfile_readonly(const struct pgc_memfile *mf)
{
	return mf->readonly;
}

bool memfile_may_shrink(const struct pgc_memfile *mf)
{
	return mf->opts.adopt && !mf->opts.adopt_mapped;
}

bool memfile_pristine(struct pgc_memfile *mf)
{
	bool ok;

	pthread_mutex_lock(&mf->mu);
	ok = rs_empty(&mf->usage) && !memfile_hook_ctx(mf) &&
	     !atomic_load_explicit(&mf->file_size, memory_order_relaxed);
	pthread_mutex_unlock(&mf->mu);
	return ok;
}
