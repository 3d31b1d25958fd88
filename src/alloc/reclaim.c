/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reclaim.c - the reclaimer thread of a MemoryFile (gVisor's runReclaim):
 * it takes freed ranges (refs reached 0) from the reclaim set in offset
 * order, punches them out of the backing file (or, with manual zeroing,
 * only their hugepage-aligned middle) and removes them from the usage set
 * so they can be allocated again. With delayed eviction enabled and no
 * pressure trigger, running out of work starts evictions.
 */
#include <errno.h>

#include "memfile.h"
#include "util/util.h"

static const uint8_t reclaim_flag;

void memfile_reclaim_add_locked(struct pgc_memfile *mf, pgc_range r)
{
	int ret = rs_insert(&mf->reclaim, r, &reclaim_flag);

	PGC_ASSERT(ret == 0 || ret == -ENOMEM);
	if (ret)
		mf->reclaim_rebuild = true;
	mf->reclaimable = true;
	pthread_cond_signal(&mf->reclaim_cond);
}

/*
 * After an insertion into the reclaim set failed: rebuild it from the
 * freed segments of the usage set. Only called between two reclaims, when
 * no range is in flight.
 */
static void rebuild_locked(struct pgc_memfile *mf)
{
	rs_node *n;

	rs_clear(&mf->reclaim);
	mf->reclaim_rebuild = false;
	for (n = rs_first(&mf->usage); n; n = rs_next(n)) {
		const struct usage_info *u = rs_value(n);

		if (!u->refs && rs_insert(&mf->reclaim, rs_range(n), &reclaim_flag)) {
			mf->reclaim_rebuild = true;
			break;
		}
	}
}

/*
 * Wait for a freed range and take it out of the reclaim set (the caller
 * must then finish it). Returns false once the MemoryFile is destroyed.
 */
static bool find_reclaimable(struct pgc_memfile *mf, pgc_range *out)
{
	rs_node *n;
	bool found = false;

	pthread_mutex_lock(&mf->mu);
	for (;;) {
		while (!mf->destroyed && !mf->reclaimable) {
			/* Idle: evict what may be evicted to get more to reclaim. */
			if (mf->opts.delayed_eviction == PGC_EVICTION_ENABLED &&
			    !mf->opts.use_host_memcg_pressure)
				memfile_start_evictions_locked(mf);
			pthread_cond_wait(&mf->reclaim_cond, &mf->mu);
		}
		if (mf->destroyed)
			break;
		if (mf->reclaim_rebuild)
			rebuild_locked(mf);
		/*
		 * Lowest offsets first: most allocations go bottom-up, and this
		 * keeps the gap search short.
		 */
		n = rs_first(&mf->reclaim);
		if (n) {
			*out = rs_range(n);
			rs_remove(&mf->reclaim, n);
			found = true;
			break;
		}
		mf->reclaimable = false;
	}
	pthread_mutex_unlock(&mf->mu);
	return found;
}

/*
 * Remove the decommitted range @fr from the usage set. It must lie within
 * one freed, uncommitted System segment (the usage set is kept merged).
 */
static int mark_reclaimed_locked(struct pgc_memfile *mf, pgc_range fr)
{
	rs_node *n = rs_find(&mf->usage, fr.start);
	const struct usage_info *u;
	pgc_range r;

	if (!n)
		return -EINVAL;
	r = rs_range(n);
	u = rs_value(n);
	if (r.start > fr.start || r.end < fr.end || u->refs || u->known_committed ||
	    u->kind != PGC_KIND_SYSTEM || u->memcg_id)
		return -EINVAL;
	return rs_remove_range(&mf->usage, fr);
}

/*
 * Give the pages of @fr back to the host and make sure they read as zeroes
 * when next allocated. Returns 0, or -errno if they could be neither
 * decommitted nor zeroed.
 */
static int release_pages(struct pgc_memfile *mf, pgc_range fr)
{
	pgc_range huge;

	if (mf->opts.manual_zeroing) {
		/*
		 * Pages are zeroed when reallocated; a hole punched into part
		 * of a hugepage might not be, so only release whole hugepages.
		 */
		huge.start = (fr.start + MF_HUGE_MASK) & ~MF_HUGE_MASK;
		huge.end = fr.end & ~MF_HUGE_MASK;
		if (huge.start < huge.end)
			(void)memfile_decommit_file(mf, huge);
		return 0;
	}
	if (memfile_decommit_file(mf, fr) == 0)
		return 0;
	/* Can't release the memory; at least keep the zeroing promise. */
	return memfile_manually_zero(mf, fr);
}

static void *reclaim_main(void *arg)
{
	struct pgc_memfile *mf = arg;
	pgc_range fr;
	int ret;

	while (find_reclaimable(mf, &fr)) {
		/*
		 * A background read may still be writing into these pages
		 * (their load had started when they were freed): let it land
		 * before the hole is punched, or it would leave stale data in
		 * free pages. Cancelled parts are not waited for.
		 */
		memfile_hook_quiesce(mf, fr);
		/*
		 * Pages that can be neither released nor zeroed are never
		 * handed out again: they stay in the usage set, freed.
		 */
		if (release_pages(mf, fr) != 0)
			continue;
		pthread_mutex_lock(&mf->mu);
		ret = memfile_mark_decommitted_locked(mf, fr);
		if (!ret)
			ret = mark_reclaimed_locked(mf, fr);
		/* On -ENOMEM the range stays freed in usage (leaked, not reused). */
		PGC_ASSERT(ret == 0 || ret == -ENOMEM);
		pthread_mutex_unlock(&mf->mu);
	}
	return NULL;
}

int memfile_reclaim_start(struct pgc_memfile *mf)
{
	int ret = util_thread_create(&mf->reclaimer, reclaim_main, mf);

	if (!ret)
		mf->reclaimer_started = true;
	return ret;
}

void memfile_reclaim_stop(struct pgc_memfile *mf)
{
	if (!mf->reclaimer_started)
		return;
	pthread_mutex_lock(&mf->mu);
	mf->destroyed = true;
	pthread_cond_signal(&mf->reclaim_cond);
	pthread_mutex_unlock(&mf->mu);
	pthread_join(mf->reclaimer, NULL);
	mf->reclaimer_started = false;
}
