/* SPDX-License-Identifier: Apache-2.0 */
/*
 * usage.c - commitment tracking and memory accounting of a MemoryFile:
 * UpdateUsage (mincore scans of segments not known to be committed, with
 * gVisor's scan elision and swap discrepancy tracking), TotalUsage,
 * per-MemoryFile accounting by kind and memcg id, and the read-only view
 * of the usage set.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "memfile.h"
#include "util/util.h"

/* Linux updates its usage figures at USER_HZ; rescanning sooner is moot. */
#define USER_HZ 100
#define NS_PER_SEC 1000000000ull

/* ---- accounting -------------------------------------------------------- */

/* Binary search in the sorted table: the entry, or where it would go. */
static size_t acct_pos(const struct pgc_memfile *mf, uint32_t id)
{
	size_t lo = 0, hi = mf->nacct;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mf->acct[mid].memcg_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct memfile_acct *acct_find(struct pgc_memfile *mf, uint32_t id)
{
	size_t i = acct_pos(mf, id);

	return i < mf->nacct && mf->acct[i].memcg_id == id ? &mf->acct[i] : NULL;
}

int memfile_acct_ensure(struct pgc_memfile *mf, uint32_t memcg_id)
{
	size_t i = acct_pos(mf, memcg_id);

	if (i < mf->nacct && mf->acct[i].memcg_id == memcg_id)
		return 0;
	if (mf->nacct == mf->acct_cap) {
		size_t cap = mf->acct_cap ? mf->acct_cap * 2 : 8;
		struct memfile_acct *a = realloc(mf->acct, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		mf->acct = a;
		mf->acct_cap = cap;
	}
	memmove(&mf->acct[i + 1], &mf->acct[i], (mf->nacct - i) * sizeof(mf->acct[0]));
	memset(&mf->acct[i], 0, sizeof(mf->acct[0]));
	mf->acct[i].memcg_id = memcg_id;
	mf->nacct++;
	return 0;
}

void memfile_acct_inc(struct pgc_memfile *mf, uint64_t bytes, enum pgc_kind kind,
		      uint32_t memcg_id)
{
	struct memfile_acct *a = acct_find(mf, memcg_id);

	if (!a && memfile_acct_ensure(mf, memcg_id) == 0)
		a = acct_find(mf, memcg_id);
	if (a)
		a->kind[kind] += bytes;
}

void memfile_acct_dec(struct pgc_memfile *mf, uint64_t bytes, enum pgc_kind kind,
		      uint32_t memcg_id)
{
	struct memfile_acct *a = acct_find(mf, memcg_id);

	if (!a)
		return;
	PGC_ASSERT(a->kind[kind] >= bytes);
	a->kind[kind] -= a->kind[kind] >= bytes ? bytes : a->kind[kind];
}

void memfile_acct_move(struct pgc_memfile *mf, uint64_t bytes, enum pgc_kind to,
		       enum pgc_kind from, uint32_t memcg_id)
{
	memfile_acct_dec(mf, bytes, from, memcg_id);
	memfile_acct_inc(mf, bytes, to, memcg_id);
}

int pgc_accounting(pgc_memfile *mf, uint32_t memcg_id, struct pgc_accounting *out)
{
	size_t i;
	int k;

	if (!mf || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&mf->mu);
	for (i = 0; i < mf->nacct; i++) {
		if (memcg_id != PGC_MEMCG_ALL && mf->acct[i].memcg_id != memcg_id)
			continue;
		for (k = 0; k < PGC_KIND_COUNT; k++)
			out->kind[k] += mf->acct[i].kind[k];
	}
	pthread_mutex_unlock(&mf->mu);
	for (k = 0; k < PGC_KIND_COUNT; k++)
		out->total += out->kind[k];
	return 0;
}

/* ---- usage scans ------------------------------------------------------- */

int pgc_total_usage(pgc_memfile *mf, uint64_t *out)
{
	struct stat st;

	if (!mf || !out)
		return -EINVAL;
	/* st_blocks counts 512-byte units, page cache and swap included. */
	if (fstat(mf->fd, &st) != 0)
		return -errno;
	*out = (uint64_t)st.st_blocks * 512;
	return 0;
}

static int mincore_check(void *arg, const void *addr, size_t len,
			 unsigned char *committed, uint64_t off, bool was_committed)
{
	(void)arg;
	(void)off;
	(void)was_committed;
	return mincore((void *)addr, len, committed) ? -errno : 0;
}

static bool id_listed(const uint32_t *ids, size_t n, uint32_t id)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

struct scan_state {
	struct pgc_memfile *mf;
	bool was_committed;
	uint64_t merge_lo, merge_hi;    /* span of segments changed */
};

/*
 * After a check of the @pages pages at @start: flip known_committed of
 * every still-allocated segment overlapping a run of pages whose answer
 * differs from what the segment believed, and account the change.
 */
static int mark_changed(struct scan_state *s, uint64_t start,
			const unsigned char *buf, size_t pages)
{
	struct pgc_memfile *mf = s->mf;
	unsigned char same = s->was_committed ? 1 : 0;
	rs_node *seg = rs_lower_bound(&mf->usage, start);
	size_t i = 0, j;

	while (i < pages) {
		pgc_range changed;

		if ((buf[i] & 1) == same) {
			i++;
			continue;
		}
		for (j = i + 1; j < pages && (buf[j] & 1) != same; j++)
			;
		changed.start = start + i * PGC_PAGE_SIZE;
		changed.end = start + j * PGC_PAGE_SIZE;
		while (seg && rs_range(seg).end <= changed.start)
			seg = rs_next(seg);
		while (seg && rs_range(seg).start < changed.end) {
			struct usage_info *u = rs_value(seg);
			pgc_range r;

			if (u->refs && u->known_committed == s->was_committed) {
				seg = rs_isolate(&mf->usage, seg, changed);
				if (!seg)
					return -ENOMEM;
				u = rs_value(seg);
				r = rs_range(seg);
				u->known_committed = !s->was_committed;
				if (s->was_committed) {
					memfile_acct_dec(mf, r.end - r.start, u->kind, u->memcg_id);
					mf->usage_expected -= r.end - r.start;
				} else {
					memfile_acct_inc(mf, r.end - r.start, u->kind, u->memcg_id);
					mf->usage_expected += r.end - r.start;
				}
				if (r.start < s->merge_lo)
					s->merge_lo = r.start;
				if (r.end > s->merge_hi)
					s->merge_hi = r.end;
			}
			seg = rs_next(seg);
		}
		/* buf[j] is unchanged (or past the end). */
		i = j + 1;
	}
	return 0;
}

/* Whether a segment is to be scanned at all. */
static bool scan_wanted(const struct usage_info *u, bool also_scan_committed,
			const uint32_t *ids, size_t n)
{
	/*
	 * Freed pages not known to be committed are assumed uncommitted, as
	 * unallocated pages are (hugepages may make that untrue; gVisor
	 * accepts it too).
	 */
	if (!u->refs)
		return false;
	if (u->known_committed && !also_scan_committed)
		return false;
	return !ids || id_listed(ids, n, u->memcg_id);
}

/* Scan [start, end) chunk by chunk. Returns 0 or -errno; mf->mu held. */
static int scan_range(struct scan_state *s, uint64_t start, uint64_t end,
		      memfile_check_fn check, void *arg,
		      unsigned char **buf, size_t *buf_len)
{
	struct pgc_memfile *mf = s->mf;
	uint8_t *base;
	int ret;

	while (start < end) {
		uint64_t cend = (start | MF_CHUNK_MASK) + 1;
		size_t len, pages;

		if (cend > end)
			cend = end;
		len = cend - start;
		pages = len / PGC_PAGE_SIZE;
		ret = memfile_chunk_base(mf, start >> MF_CHUNK_SHIFT, &base);
		if (ret)
			return ret;
		if (*buf_len < pages) {
			unsigned char *nb = realloc(*buf, pages);

			if (!nb)
				return -ENOMEM;
			*buf = nb;
			*buf_len = pages;
		}
		/* mincore can take long: let everybody else run meanwhile. */
		pthread_mutex_unlock(&mf->mu);
		ret = check(arg, base + (start & MF_CHUNK_MASK), len, *buf, start,
			    s->was_committed);
		pthread_mutex_lock(&mf->mu);
		if (ret)
			return ret;
		ret = mark_changed(s, start, *buf, pages);
		if (ret)
			return ret;
		start = cend;
	}
	return 0;
}

/* Reconcile the swap discrepancy once a scan is over (mf->mu held). */
static void adjust_swapped(struct pgc_memfile *mf, uint64_t current_usage)
{
	if (mf->usage_expected < current_usage) {
		/*
		 * Nothing is decommitted while mu is held, so usage can only
		 * have grown since current_usage was taken: what the scan did
		 * not find must be swapped out.
		 */
		uint64_t swapped = current_usage - mf->usage_expected;

		if (mf->usage_swapped < swapped)
			memfile_acct_inc(mf, swapped - mf->usage_swapped, PGC_KIND_SYSTEM, 0);
		else
			memfile_acct_dec(mf, mf->usage_swapped - swapped, PGC_KIND_SYSTEM, 0);
		mf->usage_swapped = swapped;
	} else if (mf->usage_swapped) {
		/* More accounted than stored: a race with new commits. Drop swap. */
		memfile_acct_dec(mf, mf->usage_swapped, PGC_KIND_SYSTEM, 0);
		mf->usage_swapped = 0;
	}
}

int memfile_update_usage_locked(struct pgc_memfile *mf, uint64_t current_usage,
				const uint32_t *ids, size_t n,
				bool also_scan_committed,
				memfile_check_fn check, void *arg)
{
	struct scan_state s = { .mf = mf, .merge_lo = UINT64_MAX, .merge_hi = 0 };
	unsigned char *buf = NULL;
	size_t buf_len = 0;
	rs_node *seg;
	int ret = 0;

	if (!check)
		check = mincore_check;
	for (seg = rs_first(&mf->usage); seg; ) {
		const struct usage_info *u = rs_value(seg);
		pgc_range r = rs_range(seg);

		if (!scan_wanted(u, also_scan_committed, ids, n)) {
			seg = rs_next(seg);
			continue;
		}
		s.was_committed = u->known_committed;
		ret = scan_range(&s, r.start, r.end, check, arg, &buf, &buf_len);
		if (ret)
			break;
		/* The set may have changed while unlocked: look up again. */
		seg = rs_lower_bound(&mf->usage, r.end);
	}
	if (s.merge_lo < s.merge_hi)
		rs_merge_range(&mf->usage, (pgc_range){ s.merge_lo, s.merge_hi });
	adjust_swapped(mf, current_usage);
	free(buf);
	return ret;
}

int pgc_update_usage(pgc_memfile *mf, const uint32_t *memcg_ids, size_t n)
{
	uint64_t current, now;
	int ret;

	if (!mf)
		return -EINVAL;
	pthread_mutex_lock(&mf->mu);
	ret = pgc_total_usage(mf, &current);
	if (ret)
		goto exit;
	/* The usage set already explains what the host stores: no scan. */
	if (current == mf->usage_expected && !mf->usage_swapped)
		goto exit;
	now = util_now_ns();
	/* Swap explains the rest: rescan at most once a second. */
	if (mf->usage_scanned && current == mf->usage_expected + mf->usage_swapped &&
	    now < mf->usage_last_ns + NS_PER_SEC)
		goto exit;
	if (mf->usage_scanned && now - mf->usage_last_ns < NS_PER_SEC / USER_HZ)
		goto exit;
	if (!memcg_ids) {
		mf->usage_last_ns = now;
		mf->usage_scanned = true;
	}
	ret = memfile_update_usage_locked(mf, current, memcg_ids, n, false, NULL, NULL);
exit:
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

/* ---- segments ---------------------------------------------------------- */

int pgc_for_each_segment(pgc_memfile *mf,
			 int (*fn)(void *arg, const struct pgc_segment *seg),
			 void *arg)
{
	struct pgc_segment s;
	rs_node *n;
	int ret = 0;

	if (!mf || !fn)
		return -EINVAL;
	pthread_mutex_lock(&mf->mu);
	for (n = rs_first(&mf->usage); n && !ret; n = rs_next(n)) {
		const struct usage_info *u = rs_value(n);

		s.range = rs_range(n);
		s.kind = (enum pgc_kind)u->kind;
		s.refs = u->refs;
		s.memcg_id = u->memcg_id;
		s.known_committed = u->known_committed;
		ret = fn(arg, &s);
	}
	pthread_mutex_unlock(&mf->mu);
	return ret;
}
