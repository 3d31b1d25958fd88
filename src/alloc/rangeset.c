/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rangeset.c - the generic range set behind every segment set of a
 * MemoryFile (usage, reclaim, evictable ranges, the loader's unloaded set).
 *
 * An AVL tree of disjoint segments ordered by start, with parent links for
 * O(1) amortised iteration. Each node is augmented with its subtree's
 * lowest start (lo), highest end (hi) and largest gap between two of its
 * own segments (maxgap); these depend only on the subtree, so rotations
 * keep them with a local recomputation, and they make the allocator's
 * "next / previous gap of at least N bytes" O(log n) — the role gVisor's
 * augmented B-tree plays for its generated segment sets.
 *
 * Nodes never move their values: removal relinks nodes instead of
 * swapping payloads, so a value pointer stays valid until its own node is
 * removed or merged away.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rangeset.h"

struct rs_node {
	rs_node *left, *right, *parent;
	uint64_t start, end;
	uint64_t lo, hi, maxgap;   /* augmentation over the subtree */
	int height;
	uint64_t val[];            /* ops->value_size bytes, 8-byte aligned */
};

/* ---- nodes and augmentation --------------------------------------------- */

static rs_node *node_new(const struct rangeset *rs, pgc_range r, const void *val)
{
	size_t vs = (rs->ops->value_size + 7) & ~(size_t)7;
	rs_node *n = calloc(1, sizeof(*n) + vs);

	if (!n)
		return NULL;
	n->start = n->lo = r.start;
	n->end = n->hi = r.end;
	n->height = 1;
	if (val)
		memcpy(n->val, val, rs->ops->value_size);
	return n;
}

static int height(const rs_node *n) { return n ? n->height : 0; }

static uint64_t max3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a > b ? a : b;

	return m > c ? m : c;
}

/* Recompute @n's height and augmentation from its children. */
static void fix(rs_node *n)
{
	uint64_t gl = 0, gr = 0, ml = 0, mr = 0;
	int hl = height(n->left), hr = height(n->right);

	n->height = 1 + (hl > hr ? hl : hr);
	n->lo = n->start;
	n->hi = n->end;
	if (n->left) {
		n->lo = n->left->lo;
		gl = n->start - n->left->hi;
		ml = n->left->maxgap;
	}
	if (n->right) {
		n->hi = n->right->hi;
		gr = n->right->lo - n->end;
		mr = n->right->maxgap;
	}
	n->maxgap = max3(gl, gr, ml > mr ? ml : mr);
}

/* Point whatever pointed at @old (parent link or root) to @new. */
static void replace_child(struct rangeset *rs, rs_node *parent, rs_node *old, rs_node *new)
{
	if (!parent)
		rs->root = new;
	else if (parent->left == old)
		parent->left = new;
	else
		parent->right = new;
	if (new)
		new->parent = parent;
}

static rs_node *rotate_left(struct rangeset *rs, rs_node *n)
{
	rs_node *r = n->right;

	replace_child(rs, n->parent, n, r);
	n->right = r->left;
	if (n->right)
		n->right->parent = n;
	r->left = n;
	n->parent = r;
	fix(n);
	fix(r);
	return r;
}

static rs_node *rotate_right(struct rangeset *rs, rs_node *n)
{
	rs_node *l = n->left;

	replace_child(rs, n->parent, n, l);
	n->left = l->right;
	if (n->left)
		n->left->parent = n;
	l->right = n;
	n->parent = l;
	fix(n);
	fix(l);
	return l;
}

/* Walk from @n to the root, rebalancing and fixing augmentation. */
static void retrace(struct rangeset *rs, rs_node *n)
{
	while (n) {
		int bal = height(n->left) - height(n->right);

		if (bal > 1) {
			if (height(n->left->left) < height(n->left->right))
				rotate_left(rs, n->left);
			n = rotate_right(rs, n);
		} else if (bal < -1) {
			if (height(n->right->right) < height(n->right->left))
				rotate_right(rs, n->right);
			n = rotate_left(rs, n);
		} else {
			fix(n);
		}
		n = n->parent;
	}
}

/* Link a detached node into the tree by its start. The slot must be free. */
static void link_node(struct rangeset *rs, rs_node *n)
{
	rs_node **slot = &rs->root, *parent = NULL;

	while (*slot) {
		parent = *slot;
		slot = n->start < parent->start ? &parent->left : &parent->right;
	}
	*slot = n;
	n->parent = parent;
	n->left = n->right = NULL;
	rs->count++;
	retrace(rs, n);
}

/* Unlink @n from the tree (relinking, never moving values) and free it. */
static void unlink_node(struct rangeset *rs, rs_node *n)
{
	rs_node *from;

	if (n->left && n->right) {
		rs_node *s = n->right;

		while (s->left)
			s = s->left;
		/* Detach the successor, then put it where @n was. */
		if (s->parent != n) {
			from = s->parent;
			replace_child(rs, s->parent, s, s->right);
			s->right = n->right;
			s->right->parent = s;
		} else {
			from = s;
		}
		replace_child(rs, n->parent, n, s);
		s->left = n->left;
		s->left->parent = s;
	} else {
		rs_node *child = n->left ? n->left : n->right;

		from = n->parent;
		replace_child(rs, n->parent, n, child);
	}
	rs->count--;
	free(n);
	retrace(rs, from);
}

/* After changing @n's start or end in place (order unchanged). */
static void bounds_changed(struct rangeset *rs, rs_node *n)
{
	retrace(rs, n);
}

/* ---- basic access -------------------------------------------------------- */

void rs_init(struct rangeset *rs, const struct rs_ops *ops)
{
	rs->ops = ops;
	rs->root = NULL;
	rs->count = 0;
}

static void free_subtree(rs_node *n)
{
	while (n) {
		rs_node *l = n->left;

		free_subtree(n->right);
		free(n);
		n = l;
	}
}

void rs_clear(struct rangeset *rs)
{
	free_subtree(rs->root);
	rs->root = NULL;
	rs->count = 0;
}

pgc_range rs_range(const rs_node *n)
{
	return (pgc_range){ n->start, n->end };
}

void *rs_value(rs_node *n)
{
	return n->val;
}

static rs_node *leftmost(rs_node *n)
{
	while (n && n->left)
		n = n->left;
	return n;
}

static rs_node *rightmost(rs_node *n)
{
	while (n && n->right)
		n = n->right;
	return n;
}

rs_node *rs_first(const struct rangeset *rs) { return leftmost(rs->root); }
rs_node *rs_last(const struct rangeset *rs) { return rightmost(rs->root); }

rs_node *rs_next(const rs_node *n)
{
	if (n->right)
		return leftmost(n->right);
	while (n->parent && n->parent->right == n)
		n = n->parent;
	return n->parent;
}

rs_node *rs_prev(const rs_node *n)
{
	if (n->left)
		return rightmost(n->left);
	while (n->parent && n->parent->left == n)
		n = n->parent;
	return n->parent;
}

rs_node *rs_lower_bound(const struct rangeset *rs, uint64_t key)
{
	rs_node *n = rs->root, *best = NULL;

	while (n) {
		if (n->end > key) {
			best = n;
			n = n->left;
		} else {
			n = n->right;
		}
	}
	return best;
}

rs_node *rs_find(const struct rangeset *rs, uint64_t key)
{
	rs_node *n = rs_lower_bound(rs, key);

	return n && n->start <= key ? n : NULL;
}

/* ---- merging ------------------------------------------------------------- */

static bool can_merge(const struct rangeset *rs, rs_node *a, const rs_node *b, void *merged)
{
	pgc_range ra = rs_range(a), rb = rs_range(b);

	if (a->end != b->start)
		return false;
	memcpy(merged, a->val, rs->ops->value_size);
	if (!rs->ops->merge)
		return memcmp(a->val, b->val, rs->ops->value_size) == 0;
	return rs->ops->merge(&ra, merged, &rb, b->val);
}

/* Merge @n with its successor if they are adjacent and mergeable. */
static bool merge_next(struct rangeset *rs, rs_node *n)
{
	uint64_t merged[RS_MAX_VALUE / 8];
	rs_node *next = rs_next(n);

	if (!next || !can_merge(rs, n, next, merged))
		return false;
	memcpy(n->val, merged, rs->ops->value_size);
	n->end = next->end;
	unlink_node(rs, next);
	bounds_changed(rs, n);
	return true;
}

void rs_merge_range(struct rangeset *rs, pgc_range r)
{
	/* Start with the segment that ends at r.start, if any. */
	rs_node *n = r.start ? rs_lower_bound(rs, r.start - 1) : rs_first(rs);

	while (n && n->start <= r.end) {
		if (!merge_next(rs, n))
			n = rs_next(n);
	}
}

/* ---- insertion, splitting, removal --------------------------------------- */

int rs_insert(struct rangeset *rs, pgc_range r, const void *val)
{
	uint64_t tmp[RS_MAX_VALUE / 8];
	rs_node *next, *prev, *n;

	if (r.start >= r.end)
		return -EINVAL;
	next = rs_lower_bound(rs, r.start);
	if (next && next->start < r.end)
		return -EEXIST;
	prev = next ? rs_prev(next) : rs_last(rs);

	/* Merge into the previous segment, then maybe the next one too. */
	if (prev && prev->end == r.start) {
		pgc_range pr = rs_range(prev);

		memcpy(tmp, prev->val, rs->ops->value_size);
		if (rs->ops->merge ? rs->ops->merge(&pr, tmp, &r, val)
				   : !memcmp(tmp, val, rs->ops->value_size)) {
			memcpy(prev->val, tmp, rs->ops->value_size);
			prev->end = r.end;
			bounds_changed(rs, prev);
			(void)merge_next(rs, prev);
			return 0;
		}
	}
	/* Merge into the next segment by extending it down. */
	if (next && next->start == r.end) {
		pgc_range nr = rs_range(next);

		memcpy(tmp, val, rs->ops->value_size);
		if (rs->ops->merge ? rs->ops->merge(&r, tmp, &nr, next->val)
				   : !memcmp(tmp, next->val, rs->ops->value_size)) {
			memcpy(next->val, tmp, rs->ops->value_size);
			next->start = r.start;
			bounds_changed(rs, next);
			return 0;
		}
	}
	n = node_new(rs, r, val);
	if (!n)
		return -ENOMEM;
	link_node(rs, n);
	return 0;
}

/*
 * Split @n at @at (n->start < at < n->end) using the preallocated @spare
 * for the right part; @n keeps the left part. Returns the right node.
 */
static rs_node *split_with(struct rangeset *rs, rs_node *n, uint64_t at, rs_node *spare)
{
	pgc_range r = rs_range(n);

	spare->start = at;
	spare->end = n->end;
	if (rs->ops->split)
		rs->ops->split(&r, n->val, at, spare->val);
	else
		memcpy(spare->val, n->val, rs->ops->value_size);
	n->end = at;
	bounds_changed(rs, n);
	link_node(rs, spare);
	return spare;
}

/*
 * Preallocate the (at most two) nodes needed to split the segments that
 * straddle the edges of @r. Returns 0 or -ENOMEM; unused spares are freed
 * by spares_free.
 */
static int spares_get(struct rangeset *rs, pgc_range r, rs_node *spare[2])
{
	static const pgc_range none = { 0, 1 };
	rs_node *a = rs_find(rs, r.start), *b = r.end ? rs_find(rs, r.end - 1) : NULL;
	int need = 0, i;

	if (a && a->start < r.start)
		need++;
	if (b && b->end > r.end)
		need++;
	spare[0] = spare[1] = NULL;
	for (i = 0; i < need; i++) {
		spare[i] = node_new(rs, none, NULL);
		if (!spare[i])
			return -ENOMEM;
	}
	return 0;
}

static void spares_free(rs_node *spare[2])
{
	free(spare[0]);
	free(spare[1]);
}

/* Split at the edges of @r with the spares. Returns the first node in @r. */
static rs_node *split_edges(struct rangeset *rs, pgc_range r, rs_node *spare[2])
{
	int used = 0;
	rs_node *n = rs_find(rs, r.start), *last;

	if (n && n->start < r.start) {
		n = split_with(rs, n, r.start, spare[used]);
		spare[used++] = NULL;
	}
	last = r.end ? rs_find(rs, r.end - 1) : NULL;
	if (last && last->end > r.end) {
		split_with(rs, last, r.end, spare[used]);
		spare[used++] = NULL;
	}
	return rs_lower_bound(rs, r.start);
}

rs_node *rs_isolate(struct rangeset *rs, rs_node *n, pgc_range r)
{
	rs_node *spare[2];
	pgc_range c = { n->start > r.start ? n->start : r.start,
			n->end < r.end ? n->end : r.end };

	if (spares_get(rs, c, spare)) {
		spares_free(spare);
		return NULL;
	}
	n = split_edges(rs, c, spare);
	spares_free(spare);
	return n;
}

rs_node *rs_remove(struct rangeset *rs, rs_node *n)
{
	rs_node *next = rs_next(n);

	/* Relinking frees only @n: @next stays valid. */
	unlink_node(rs, n);
	return next;
}

int rs_remove_range(struct rangeset *rs, pgc_range r)
{
	rs_node *spare[2], *n;

	if (r.start >= r.end)
		return 0;
	if (spares_get(rs, r, spare)) {
		spares_free(spare);
		return -ENOMEM;
	}
	n = split_edges(rs, r, spare);
	spares_free(spare);
	while (n && n->start < r.end)
		n = rs_remove(rs, n);
	return 0;
}

/* ---- range operations ---------------------------------------------------- */

bool rs_covered(const struct rangeset *rs, pgc_range r)
{
	rs_node *n = rs_find(rs, r.start);
	uint64_t at = r.start;

	if (r.start >= r.end)
		return true;
	while (n && n->start <= at) {
		if (n->end >= r.end)
			return true;
		at = n->end;
		n = rs_next(n);
	}
	return false;
}

int rs_mutate_range(struct rangeset *rs, pgc_range r, bool full,
		    int (*fn)(void *arg, pgc_range r, void *val), void *arg)
{
	rs_node *spare[2], *n;
	int ret = 0;

	if (r.start >= r.end)
		return full ? -EINVAL : 0;
	if (full && !rs_covered(rs, r))
		return -EINVAL;
	if (spares_get(rs, r, spare)) {
		spares_free(spare);
		return -ENOMEM;
	}
	n = split_edges(rs, r, spare);
	spares_free(spare);
	for (; n && n->start < r.end; n = rs_next(n)) {
		ret = fn(arg, rs_range(n), n->val);
		if (ret)
			break;
	}
	rs_merge_range(rs, r);
	return ret;
}

int rs_visit_range(const struct rangeset *rs, pgc_range r,
		   int (*fn)(void *arg, pgc_range r, const void *val), void *arg)
{
	rs_node *n = rs_lower_bound(rs, r.start);
	int ret;

	for (; n && n->start < r.end; n = rs_next(n)) {
		pgc_range c = { n->start > r.start ? n->start : r.start,
				n->end < r.end ? n->end : r.end };

		ret = fn(arg, c, n->val);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- gaps ---------------------------------------------------------------- */

struct rs_gap rs_first_gap(const struct rangeset *rs)
{
	rs_node *f = rs_first(rs);

	return (struct rs_gap){ 0, f ? f->start : RS_MAX_KEY };
}

struct rs_gap rs_last_gap(const struct rangeset *rs)
{
	rs_node *l = rs_last(rs);

	return (struct rs_gap){ l ? l->end : 0, RS_MAX_KEY };
}

bool rs_find_gap(const struct rangeset *rs, uint64_t key, struct rs_gap *out)
{
	rs_node *next = rs_lower_bound(rs, key), *prev;

	if (next && next->start <= key)
		return false;
	prev = next ? rs_prev(next) : rs_last(rs);
	out->start = prev ? prev->end : 0;
	out->end = next ? next->start : RS_MAX_KEY;
	return true;
}

/*
 * The first node @a of @n's subtree with a->end > @key whose gap to its
 * successor inside the subtree is >= @min. O(log n): off the search path,
 * a subtree whose maxgap is large enough always yields a result.
 */
static rs_node *first_gap_after(rs_node *n, uint64_t key, uint64_t min)
{
	rs_node *r;

	if (!n || n->hi <= key || n->maxgap < min)
		return NULL;
	if (n->left && n->left->hi > key) {
		r = first_gap_after(n->left, key, min);
		if (r)
			return r;
		if (n->start - n->left->hi >= min)
			return rightmost(n->left);
	}
	if (n->end > key && n->right && n->right->lo - n->end >= min)
		return n;
	return first_gap_after(n->right, key, min);
}

/*
 * The last node @a of @n's subtree whose successor @s inside the subtree
 * has s->start < @key and s->start - a->end >= @min.
 */
static rs_node *last_gap_before(rs_node *n, uint64_t key, uint64_t min)
{
	rs_node *r;

	if (!n || n->lo >= key || n->maxgap < min)
		return NULL;
	if (n->right && n->right->lo < key) {
		r = last_gap_before(n->right, key, min);
		if (r)
			return r;
		if (n->right->lo - n->end >= min)
			return n;
	}
	if (n->start < key && n->left && n->start - n->left->hi >= min)
		return rightmost(n->left);
	return last_gap_before(n->left, key, min);
}

bool rs_next_large_enough_gap(const struct rangeset *rs, struct rs_gap g,
			      uint64_t min, struct rs_gap *out)
{
	rs_node *a = first_gap_after(rs->root, g.start, min), *last;

	if (a) {
		out->start = a->end;
		out->end = rs_next(a)->start;
		return true;
	}
	last = rs_last(rs);
	if (last && last->end > g.start && RS_MAX_KEY - last->end >= min) {
		out->start = last->end;
		out->end = RS_MAX_KEY;
		return true;
	}
	return false;
}

bool rs_prev_large_enough_gap(const struct rangeset *rs, struct rs_gap g,
			      uint64_t min, struct rs_gap *out)
{
	rs_node *a = last_gap_before(rs->root, g.end, min), *first;

	if (a) {
		out->start = a->end;
		out->end = rs_next(a)->start;
		return true;
	}
	first = rs_first(rs);
	if (first && first->start < g.end && first->start >= min) {
		out->start = 0;
		out->end = first->start;
		return true;
	}
	return false;
}

/* ---- invariant checker --------------------------------------------------- */

/* Check @n's subtree; returns its node count or -1 with *why set. */
static long check_subtree(const struct rangeset *rs, const rs_node *n, const rs_node *parent,
			  const char **why)
{
	long l, r;
	rs_node copy;
	int bal;

	if (!n)
		return 0;
	if (n->parent != parent) {
		*why = "bad parent link";
		return -1;
	}
	if (n->start >= n->end) {
		*why = "empty segment";
		return -1;
	}
	if ((n->left && n->left->hi > n->start) || (n->right && n->right->lo < n->end)) {
		*why = "segments out of order or overlapping";
		return -1;
	}
	l = check_subtree(rs, n->left, n, why);
	if (l < 0)
		return -1;
	r = check_subtree(rs, n->right, n, why);
	if (r < 0)
		return -1;
	bal = height(n->left) - height(n->right);
	if (bal < -1 || bal > 1) {
		*why = "tree out of balance";
		return -1;
	}
	copy = *n;
	fix(&copy);
	if (copy.height != n->height || copy.lo != n->lo || copy.hi != n->hi ||
	    copy.maxgap != n->maxgap) {
		*why = "stale height or gap augmentation";
		return -1;
	}
	return l + r + 1;
}

int rs_check(const struct rangeset *rs, const char **why)
{
	uint64_t merged[RS_MAX_VALUE / 8];
	const char *w = NULL;
	rs_node *n, *next;
	long count;

	if (rs->ops->value_size > RS_MAX_VALUE) {
		w = "value too large";
		goto bad;
	}
	count = check_subtree(rs, rs->root, NULL, &w);
	if (count < 0)
		goto bad;
	if ((size_t)count != rs->count) {
		w = "count does not match the tree";
		goto bad;
	}
	for (n = rs_first(rs); n && (next = rs_next(n)); n = next) {
		if (can_merge(rs, n, next, merged)) {
			w = "adjacent mergeable segments not merged";
			goto bad;
		}
	}
	return 0;
bad:
	if (why)
		*why = w;
	return -EUCLEAN;
}
