/* SPDX-License-Identifier: Apache-2.0 */
/*
 * refs.c - reference counting of allocated pages: IncRef, DecRef and
 * HasUniqueRef of gVisor's MemoryFile. A page whose count drops to zero
 * is accounted as System, handed to the reclaimer and cancelled in a
 * load still filling the file.
 */
#include <errno.h>

#include "memfile.h"

static int refs_held_fn(void *arg, pgc_range r, const void *val)
{
	const struct usage_info *u = val;

	(void)arg;
	(void)r;
	return u->refs ? 0 : -EINVAL;
}

/* Whether every page of @r is allocated (refs > 0): 0 or -EINVAL. */
static int refs_held_locked(struct pgc_memfile *mf, pgc_range r)
{
	if (!rs_covered(&mf->usage, r))
		return -EINVAL;
	return rs_visit_range(&mf->usage, r, refs_held_fn, NULL);
}

static int incref_fn(void *arg, pgc_range r, void *val)
{
	struct usage_info *u = val;

	(void)arg;
	(void)r;
	u->refs++;
	return 0;
}

int pgc_incref(pgc_memfile *mf, pgc_range r, uint32_t memcg_id)
{
	int ret;

	/* As in gVisor, the memcg id of existing pages does not change. */
	(void)memcg_id;
	if (!mf || !memfile_range_ok(r)) {
		PGC_ASSERT(!"pgc_incref: bad range");
		return -EINVAL;
	}
	pthread_mutex_lock(&mf->mu);
	ret = refs_held_locked(mf, r);
	PGC_ASSERT(ret == 0);
	if (!ret)
		ret = rs_mutate_range(&mf->usage, r, true, incref_fn, NULL);
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

static int decref_fn(void *arg, pgc_range r, void *val)
{
	struct pgc_memfile *mf = arg;
	struct usage_info *u = val;

	u->refs--;
	if (u->refs)
		return 0;
	/* Accounted as System until the reclaimer frees the pages. */
	if (u->known_committed)
		memfile_acct_move(mf, r.end - r.start, PGC_KIND_SYSTEM,
				  u->kind, u->memcg_id);
	u->kind = PGC_KIND_SYSTEM;
	memfile_reclaim_add_locked(mf, r);
	memfile_hook_cancel_locked(mf, r);
	return 0;
}

int pgc_decref(pgc_memfile *mf, pgc_range r)
{
	int ret;

	if (!mf || !memfile_range_ok(r)) {
		PGC_ASSERT(!"pgc_decref: bad range");
		return -EINVAL;
	}
	pthread_mutex_lock(&mf->mu);
	ret = refs_held_locked(mf, r);
	PGC_ASSERT(ret == 0);
	if (ret)
		goto exit;
	ret = rs_mutate_range(&mf->usage, r, true, decref_fn, mf);
exit:
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

static int unique_fn(void *arg, pgc_range r, const void *val)
{
	const struct usage_info *u = val;

	(void)arg;
	(void)r;
	return u->refs != 1;
}

int pgc_has_unique_ref(pgc_memfile *mf, pgc_range r)
{
	int ret;

	if (!mf || !memfile_range_ok(r)) {
		PGC_ASSERT(!"pgc_has_unique_ref: bad range");
		return -EINVAL;
	}
	pthread_mutex_lock(&mf->mu);
	ret = refs_held_locked(mf, r);
	PGC_ASSERT(ret == 0);
	if (!ret)
		ret = rs_visit_range(&mf->usage, r, unique_fn, NULL) ? 0 : 1;
	pthread_mutex_unlock(&mf->mu);
	return ret;
}
