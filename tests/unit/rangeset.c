/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rangeset.c - randomised tests of the generic range set against a naive
 * model (one value per key in a small key space), checking every
 * operation's result, the whole set and rs_check() after each step, plus
 * a few directed cases (split/merge hooks, gap search at the edges, a
 * large set for the O(log n) paths).
 */
#include "alloc/rangeset.h"
#include "test.h"

#define NKEYS 384
#define ABSENT 0u

static uint32_t model[NKEYS];          /* 0: no segment; else the value */
static struct rangeset set;
static const struct rs_ops u32_ops = { .value_size = sizeof(uint32_t) };

static pgc_range rand_range(void)
{
	uint64_t a = test_rand_below(NKEYS), len = 1 + test_rand_below(test_rand_below(4) ? 16 : NKEYS);
	uint64_t b = a + len > NKEYS ? NKEYS : a + len;

	return (pgc_range){ a, b };
}

static bool model_free(pgc_range r)
{
	for (uint64_t k = r.start; k < r.end; k++)
		if (model[k] != ABSENT)
			return false;
	return true;
}

static bool model_covered(pgc_range r)
{
	for (uint64_t k = r.start; k < r.end; k++)
		if (model[k] == ABSENT)
			return false;
	return true;
}

/*
 * The model's first segment at or after *@k: [*@k, *@e), one value.
 * Returns false when there is none.
 */
static bool model_segment(uint64_t *k, uint64_t *e)
{
	while (*k < NKEYS && model[*k] == ABSENT)
		(*k)++;
	if (*k >= NKEYS)
		return false;
	for (*e = *k + 1; *e < NKEYS && model[*e] == model[*k]; (*e)++)
		;
	return true;
}

/* Compare the set with the model segment by segment; rs_check too. */
static bool compare_all(void)
{
	const char *why = NULL;
	rs_node *n = rs_first(&set);
	uint64_t k = 0, e;

	if (rs_check(&set, &why) != 0) {
		printf("  rs_check: %s\n", why);
		return false;
	}
	for (; model_segment(&k, &e); k = e) {
		if (!n || rs_range(n).start != k || rs_range(n).end != e ||
		    *(uint32_t *)rs_value(n) != model[k]) {
			printf("  segment [%llu,%llu)=%u missing or different\n",
			       (unsigned long long)k, (unsigned long long)e, model[k]);
			return false;
		}
		n = rs_next(n);
	}
	if (n) {
		printf("  extra segment at %llu\n", (unsigned long long)rs_range(n).start);
		return false;
	}
	return true;
}

/* The model's gap containing or starting at @key (false if @key is in a segment). */
static bool model_gap(uint64_t key, struct rs_gap *g)
{
	uint64_t s = key, e = key;

	if (key < NKEYS && model[key] != ABSENT)
		return false;
	while (s > 0 && model[s - 1] == ABSENT)
		s--;
	while (e < NKEYS && model[e] == ABSENT)
		e++;
	g->start = s;
	g->end = e == NKEYS ? RS_MAX_KEY : e;
	return true;
}

/*
 * Every gap of the model, in order: before the first segment, between
 * consecutive segments (empty when they touch), after the last one.
 */
static size_t model_gaps(struct rs_gap *gaps)
{
	size_t n = 0;
	uint64_t k = 0, e, prev_end = 0;

	for (; model_segment(&k, &e); k = e) {
		gaps[n++] = (struct rs_gap){ prev_end, k };
		prev_end = e;
	}
	gaps[n++] = (struct rs_gap){ prev_end, RS_MAX_KEY };
	return n;
}

static bool model_next_gap(struct rs_gap g, uint64_t min, struct rs_gap *out)
{
	static struct rs_gap gaps[NKEYS + 2];
	size_t n = model_gaps(gaps), i;

	for (i = 0; i < n; i++) {
		if (gaps[i].start > g.start && gaps[i].end - gaps[i].start >= min) {
			*out = gaps[i];
			return true;
		}
	}
	return false;
}

static bool model_prev_gap(struct rs_gap g, uint64_t min, struct rs_gap *out)
{
	static struct rs_gap gaps[NKEYS + 2];
	size_t n = model_gaps(gaps), i;

	for (i = n; i-- > 0;) {
		if (gaps[i].end < g.end && gaps[i].end - gaps[i].start >= min) {
			*out = gaps[i];
			return true;
		}
	}
	return false;
}

static int add_fn(void *arg, pgc_range r, void *val)
{
	uint32_t *v = val;

	(void)r;
	*v = *v % 3 + 1 + (uint32_t)(uintptr_t)arg % 2;
	if (*v == ABSENT)
		*v = 1;
	return 0;
}

static uint32_t model_add(uint32_t v, uint32_t arg)
{
	uint32_t n = v % 3 + 1 + arg % 2;

	return n == ABSENT ? 1 : n;
}

struct visit_ctx {
	uint64_t next;
	bool ok;
};

static int visit_fn(void *arg, pgc_range r, const void *val)
{
	struct visit_ctx *c = arg;
	uint32_t v = *(const uint32_t *)val;

	for (uint64_t k = r.start; k < r.end; k++)
		if (model[k] != v)
			c->ok = false;
	for (uint64_t k = c->next; k < r.start; k++)
		if (model[k] != ABSENT)
			c->ok = false;
	c->next = r.end;
	return 0;
}

static void test_random_ops(void)
{
	long ops = getenv("RS_OPS") ? atol(getenv("RS_OPS")) : 150000;
	long i;

	rs_init(&set, &u32_ops);
	memset(model, 0, sizeof(model));
	for (i = 0; i < ops && !test_case_failed; i++) {
		pgc_range r = rand_range();
		uint32_t v = 1 + (uint32_t)test_rand_below(3);
		int op = (int)test_rand_below(10), ret;

		switch (op) {
		case 0: case 1: case 2: /* insert */
			ret = rs_insert(&set, r, &v);
			if (model_free(r)) {
				CHECK_EQ(ret, 0);
				for (uint64_t k = r.start; k < r.end; k++)
					model[k] = v;
			} else {
				CHECK_EQ(ret, -EEXIST);
			}
			break;
		case 3: /* remove range */
			CHECK_EQ(rs_remove_range(&set, r), 0);
			for (uint64_t k = r.start; k < r.end; k++)
				model[k] = ABSENT;
			break;
		case 4: { /* mutate, full or not */
			bool full = test_rand_below(2);
			uint32_t arg = (uint32_t)test_rand_below(2);

			ret = rs_mutate_range(&set, r, full, add_fn, (void *)(uintptr_t)arg);
			if (full && !model_covered(r)) {
				CHECK_EQ(ret, -EINVAL);
				break;
			}
			CHECK_EQ(ret, 0);
			for (uint64_t k = r.start; k < r.end; k++)
				if (model[k] != ABSENT)
					model[k] = model_add(model[k], arg);
			break;
		}
		case 5: { /* isolate a node and remove it */
			rs_node *n = rs_lower_bound(&set, r.start);

			if (!n || rs_range(n).start >= r.end)
				break;
			n = rs_isolate(&set, n, r);
			CHECK(n != NULL);
			if (!n)
				break;
			pgc_range nr = rs_range(n);
			CHECK(nr.start >= r.start && nr.end <= r.end);
			rs_remove(&set, n);
			for (uint64_t k = nr.start; k < nr.end; k++)
				model[k] = ABSENT;
			rs_merge_range(&set, nr);   /* isolate may have split: remerge */
			rs_merge_range(&set, (pgc_range){ r.start, r.end });
			break;
		}
		case 6: { /* lookups */
			uint64_t key = test_rand_below(NKEYS + 2);
			rs_node *n = rs_find(&set, key);
			bool in = key < NKEYS && model[key] != ABSENT;

			CHECK_EQ(n != NULL, in);
			CHECK_EQ(rs_covered(&set, r), model_covered(r));
			struct visit_ctx c = { r.start, true };
			rs_visit_range(&set, r, visit_fn, &c);
			for (uint64_t k = c.next; k < r.end; k++)
				if (model[k] != ABSENT)
					c.ok = false;
			CHECK(c.ok);
			break;
		}
		default: { /* gaps */
			uint64_t key = test_rand_below(NKEYS + 1), min = test_rand_below(40);
			struct rs_gap g, mg = { 0, 0 }, got = { 0, 0 }, want = { 0, 0 };
			bool ok = rs_find_gap(&set, key, &g);

			CHECK_EQ(ok, model_gap(key, &mg));
			if (!ok)
				break;
			CHECK(g.start == mg.start && g.end == mg.end);
			bool a = rs_next_large_enough_gap(&set, g, min, &got);
			bool b = model_next_gap(g, min, &want);
			CHECK_EQ(a, b);
			if (a && b)
				CHECK(got.start == want.start && got.end == want.end);
			a = rs_prev_large_enough_gap(&set, g, min, &got);
			b = model_prev_gap(g, min, &want);
			CHECK_EQ(a, b);
			if (a && b)
				CHECK(got.start == want.start && got.end == want.end);
			break;
		}
		}
		if (!compare_all()) {
			test_case_failed = 1;
		}
		if (test_case_failed)
			printf("  after op %ld (kind %d) on [%llu,%llu)\n", i, op,
			       (unsigned long long)r.start, (unsigned long long)r.end);
	}
	printf("  %ld random operations, %zu segments at the end\n", i, rs_count(&set));
	rs_clear(&set);
	CHECK(rs_empty(&set));
}

/* A split hook that records offsets, and a merge that adds them. */
struct span { uint64_t base; };

static void span_split(const pgc_range *r, void *v, uint64_t at, void *right)
{
	struct span *s = v, *rt = right;

	rt->base = s->base + (at - r->start);
}

static bool span_merge(const pgc_range *r1, void *v1, const pgc_range *r2, const void *v2)
{
	const struct span *a = v1, *b = v2;

	return a->base + (r1->end - r1->start) == b->base && r1->end == r2->start;
}

static const struct rs_ops span_ops = {
	.value_size = sizeof(struct span), .merge = span_merge, .split = span_split,
};

static int nop_fn(void *arg, pgc_range r, void *val)
{
	(void)arg;
	(void)r;
	(void)val;
	return 0;
}

static void test_hooks(void)
{
	struct rangeset s;
	struct span v = { 1000 };
	rs_node *n;

	rs_init(&s, &span_ops);
	CHECK_EQ(rs_insert(&s, (pgc_range){ 100, 200 }, &v), 0);
	CHECK_EQ(rs_mutate_range(&s, (pgc_range){ 130, 150 }, true, nop_fn, NULL), 0);
	/* split then merged back: offsets continuous */
	CHECK_EQ(rs_count(&s), 1);
	n = rs_isolate(&s, rs_first(&s), (pgc_range){ 130, 150 });
	CHECK(n && rs_range(n).start == 130 && ((struct span *)rs_value(n))->base == 1030);
	CHECK_EQ(rs_count(&s), 3);
	rs_merge_range(&s, (pgc_range){ 0, 300 });
	CHECK_EQ(rs_count(&s), 1);
	v.base = 5000;
	CHECK_EQ(rs_insert(&s, (pgc_range){ 200, 300 }, &v), 0);
	CHECK_EQ(rs_count(&s), 2);   /* not continuous: no merge */
	v.base = 1100;
	CHECK_EQ(rs_insert(&s, (pgc_range){ 50, 100 }, &v), 0);
	CHECK_EQ(rs_count(&s), 3);
	CHECK_EQ(rs_insert(&s, (pgc_range){ 10, 10 }, &v), -EINVAL);
	CHECK_EQ(rs_insert(&s, (pgc_range){ 60, 70 }, &v), -EEXIST);
	CHECK_EQ(rs_check(&s, NULL), 0);
	rs_clear(&s);
}

static void test_large_gaps(void)
{
	struct rangeset s;
	uint32_t v = 1;
	struct rs_gap g;
	uint64_t i, n = 200000;

	rs_init(&s, &u32_ops);
	/* Segments of 1 page with 1-page gaps; one large hole at 3/4. */
	for (i = 0; i < n; i++) {
		uint64_t at = i * 2 + (i >= 3 * n / 4 ? 100 : 0);

		v = (uint32_t)(i & 1) + 1;
		CHECK_EQ(rs_insert(&s, (pgc_range){ at, at + 1 }, &v), 0);
	}
	CHECK_EQ(rs_check(&s, NULL), 0);
	CHECK(rs_next_large_enough_gap(&s, rs_first_gap(&s), 50, &g));
	CHECK(g.end - g.start == 101);
	CHECK(rs_prev_large_enough_gap(&s, rs_last_gap(&s), 50, &g));
	CHECK(g.end - g.start == 101);
	CHECK(rs_next_large_enough_gap(&s, g, 50, &g));
	CHECK(g.end == RS_MAX_KEY);
	CHECK(!rs_prev_large_enough_gap(&s, rs_first_gap(&s), 1, &g));
	CHECK(rs_prev_large_enough_gap(&s, rs_last_gap(&s), 1, &g));
	CHECK(g.end == rs_range(rs_last(&s)).start);
	/* remove every other segment, then everything */
	for (i = 0; i < 2 * n; i += 8)
		CHECK_EQ(rs_remove_range(&s, (pgc_range){ i, i + 3 }), 0);
	CHECK_EQ(rs_check(&s, NULL), 0);
	CHECK_EQ(rs_remove_range(&s, (pgc_range){ 0, RS_MAX_KEY }), 0);
	CHECK(rs_empty(&s));
	g = rs_first_gap(&s);
	CHECK(g.start == 0 && g.end == RS_MAX_KEY);
	rs_clear(&s);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(test_hooks);
	TEST_RUN(test_large_gaps);
	TEST_RUN(test_random_ops);
	return test_done();
}
