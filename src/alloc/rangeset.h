/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rangeset.h - a generic set of disjoint half-open ranges of uint64 keys,
 * each carrying a fixed-size value, kept maximally merged.
 *
 * It is the C counterpart of gVisor's generated segment sets (usageSet,
 * reclaimSet, evictableRangeSet, the loader's unloaded set): a balanced
 * search tree ordered by range start, augmented with the largest gap in
 * each subtree so that "next/previous gap of at least N bytes" is
 * O(log n), like gVisor's augmented B-tree. Keys live in [0, UINT64_MAX);
 * the last gap ends at UINT64_MAX.
 *
 * Values are copied in and out by size (ops->value_size <= RS_MAX_VALUE).
 * Adjacent segments are merged whenever ops->merge agrees, after every
 * insertion and after rs_mutate_range(); rs_check() verifies that and
 * every other invariant (the tests call it).
 *
 * Not thread-safe: callers hold their own lock.
 */
#ifndef PGC_RANGESET_H
#define PGC_RANGESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgckpt.h"

#define RS_MAX_VALUE 64
#define RS_MAX_KEY UINT64_MAX

struct rs_ops {
	size_t value_size;
	/*
	 * merge - @v1 on @r1 is immediately followed by @v2 on @r2. If they may
	 * be merged, store the merged value in @v1 and return true. NULL means
	 * "merge when the values are bytewise equal".
	 */
	bool (*merge)(const pgc_range *r1, void *v1, const pgc_range *r2, const void *v2);
	/*
	 * split - the segment @r with value @v is being split at @at
	 * (r->start < at < r->end). Adjust @v for [r->start, at) in place and
	 * write the value for [at, r->end) into @right. NULL means "copy".
	 */
	void (*split)(const pgc_range *r, void *v, uint64_t at, void *right);
};

typedef struct rs_node rs_node;

struct rangeset {
	const struct rs_ops *ops;
	rs_node *root;
	size_t count;
};

/* A gap: a maximal range not covered by any segment. */
struct rs_gap {
	uint64_t start;
	uint64_t end;
};

void rs_init(struct rangeset *rs, const struct rs_ops *ops);
/* Free every node. The set is empty (and reusable) afterwards. */
void rs_clear(struct rangeset *rs);

static inline bool rs_empty(const struct rangeset *rs) { return rs->count == 0; }
static inline size_t rs_count(const struct rangeset *rs) { return rs->count; }

/* Segment access. Value pointers stay valid until the node is removed or merged. */
pgc_range rs_range(const rs_node *n);
void *rs_value(rs_node *n);

/* Iteration, NULL at the ends. */
rs_node *rs_first(const struct rangeset *rs);
rs_node *rs_last(const struct rangeset *rs);
rs_node *rs_next(const rs_node *n);
rs_node *rs_prev(const rs_node *n);

/* The segment containing @key, or NULL. */
rs_node *rs_find(const struct rangeset *rs, uint64_t key);
/* The first segment whose end is > @key (contains @key or lies after it), or NULL. */
rs_node *rs_lower_bound(const struct rangeset *rs, uint64_t key);

/*
 * rs_insert - add [r.start, r.end) with *@val. The range must be non-empty
 * and lie entirely in a gap. Merges with its neighbours when ops->merge
 * agrees. Returns 0, -EINVAL (empty range), -EEXIST (overlap), -ENOMEM.
 */
int rs_insert(struct rangeset *rs, pgc_range r, const void *val);

/*
 * rs_isolate - split @n (if needed) so that its range lies within @r, which
 * must intersect it. Returns the isolated node, or NULL on -ENOMEM (the set
 * is unchanged then).
 */
rs_node *rs_isolate(struct rangeset *rs, rs_node *n, pgc_range r);

/* rs_remove - remove @n. Returns the node after it, or NULL. */
rs_node *rs_remove(struct rangeset *rs, rs_node *n);

/*
 * rs_remove_range - remove everything inside @r (splitting segments that
 * straddle its edges). Returns 0 or -ENOMEM (the set is then unchanged).
 */
int rs_remove_range(struct rangeset *rs, pgc_range r);

/* rs_covered - whether every key of @r lies in some segment. */
bool rs_covered(const struct rangeset *rs, pgc_range r);

/*
 * rs_mutate_range - isolate every segment intersecting @r to its part
 * inside @r and call @fn on it (stop early if @fn returns non-zero), then
 * merge what can be merged in and around @r. If @full, @r must be covered
 * entirely (checked before anything changes; -EINVAL otherwise).
 * Returns 0, @fn's non-zero value, -EINVAL, or -ENOMEM (no segment has been
 * changed when a split fails: all splits are done before @fn is called).
 */
int rs_mutate_range(struct rangeset *rs, pgc_range r, bool full,
		    int (*fn)(void *arg, pgc_range r, void *val), void *arg);

/*
 * rs_visit_range - call @fn for each segment intersecting @r, with the
 * segment's range clipped to @r, without changing the set. Stops early and
 * returns @fn's value when non-zero; returns 0 otherwise.
 */
int rs_visit_range(const struct rangeset *rs, pgc_range r,
		   int (*fn)(void *arg, pgc_range r, const void *val), void *arg);

/* rs_merge_around - try to merge the segments around and inside @r. */
void rs_merge_range(struct rangeset *rs, pgc_range r);

/*
 * Gaps. rs_first_gap is the gap starting at 0 (possibly empty: start ==
 * end); rs_last_gap is the gap ending at RS_MAX_KEY (possibly empty).
 */
struct rs_gap rs_first_gap(const struct rangeset *rs);
struct rs_gap rs_last_gap(const struct rangeset *rs);
/* The gap containing @key or starting at @key, if any. */
bool rs_find_gap(const struct rangeset *rs, uint64_t key, struct rs_gap *out);
/*
 * rs_next_large_enough_gap - the first gap that starts strictly after
 * @g.start and is at least @min bytes long. O(log n). Returns false if none.
 */
bool rs_next_large_enough_gap(const struct rangeset *rs, struct rs_gap g,
			      uint64_t min, struct rs_gap *out);
/* rs_prev_large_enough_gap - the last such gap that ends strictly before @g.end. */
bool rs_prev_large_enough_gap(const struct rangeset *rs, struct rs_gap g,
			      uint64_t min, struct rs_gap *out);

/*
 * rs_check - verify every invariant: ranges non-empty, ordered, disjoint;
 * no two adjacent segments mergeable; tree balance and the gap
 * augmentation; count. Returns 0 or -EUCLEAN with a description in @why
 * (if non-NULL, static storage).
 */
int rs_check(const struct rangeset *rs, const char **why);

#endif /* PGC_RANGESET_H */
