/* SPDX-License-Identifier: Apache-2.0 */
/*
 * evict.c - unit tests of evictable memory: marking, the delayed eviction
 * modes (disabled, manual, enabled via the idle reclaimer, host memory
 * pressure), eviction order, racing pgc_mark_unevictable from inside an
 * eviction, and bad input.
 */
#include <pthread.h>
#include <stdbool.h>

#include "pgckpt.h"
#include "test.h"

#define MAX_CALLS 1024

struct user {
	pgc_evictable_user base;        /* first: the callback gets &base */
	pgc_memfile *mf;
	pthread_mutex_t mu;
	pgc_range calls[MAX_CALLS];
	int ncalls;
	/* Optional action on the first call. */
	pgc_range unevict_on_first;
	bool all_unevict_on_first;
};

static void user_evict(pgc_evictable_user *base, pgc_range er)
{
	struct user *u = (struct user *)base;
	bool first;

	pthread_mutex_lock(&u->mu);
	first = u->ncalls == 0;
	if (u->ncalls < MAX_CALLS)
		u->calls[u->ncalls++] = er;
	pthread_mutex_unlock(&u->mu);
	/* No MemoryFile lock is held here: calling back in is allowed. */
	if (first && u->unevict_on_first.end)
		pgc_mark_unevictable(u->mf, base, u->unevict_on_first);
	if (first && u->all_unevict_on_first)
		pgc_mark_all_unevictable(u->mf, base);
}

static void user_init(struct user *u, pgc_memfile *mf)
{
	memset(u, 0, sizeof(*u));
	u->base.evict = user_evict;
	u->mf = mf;
	pthread_mutex_init(&u->mu, NULL);
}

static int user_calls(struct user *u)
{
	int n;

	pthread_mutex_lock(&u->mu);
	n = u->ncalls;
	pthread_mutex_unlock(&u->mu);
	return n;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static pgc_memfile *new_mf(enum pgc_delayed_eviction mode, bool pressure, int *err)
{
	struct pgc_memfile_opts o;
	pgc_memfile *mf = NULL;

	pgc_memfile_opts_init(&o);
	o.delayed_eviction = mode;
	o.use_host_memcg_pressure = pressure;
	*err = pgc_memfile_new(&o, &mf);
	return mf;
}

static pgc_range R(uint64_t a, uint64_t b)
{
	return (pgc_range){ a, b };
}

static void test_disabled(void)
{
	struct user u;
	int err;
	pgc_memfile *mf = new_mf(PGC_EVICTION_DISABLED, true, &err);

	CHECK_EQ(err, 0);
	if (!mf)
		return;
	user_init(&u, mf);
	CHECK(!pgc_should_cache_evictable(mf));
	CHECK_EQ(pgc_mark_evictable(mf, &u.base, R(100, 200)), 0);
	pgc_wait_for_evictions(mf);
	CHECK_EQ(user_calls(&u), 1);
	CHECK_EQ(u.calls[0].start, 100);
	CHECK_EQ(u.calls[0].end, 200);
	/* Evicted ranges are unevictable until marked again. */
	pgc_start_evictions(mf);
	pgc_wait_for_evictions(mf);
	CHECK_EQ(user_calls(&u), 1);
	CHECK_EQ(pgc_mark_evictable(mf, &u.base, R(100, 200)), 0);
	pgc_wait_for_evictions(mf);
	CHECK_EQ(user_calls(&u), 2);
	pgc_memfile_destroy(mf);
}

static void test_manual(void)
{
	struct user a, b;
	int err;
	pgc_memfile *mf = new_mf(PGC_EVICTION_MANUAL, false, &err);

	CHECK_EQ(err, 0);
	if (!mf)
		return;
	user_init(&a, mf);
	user_init(&b, mf);
	CHECK(pgc_should_cache_evictable(mf));
	/* Overlapping and redundant marks merge. */
	CHECK_EQ(pgc_mark_evictable(mf, &a.base, R(0, 10)), 0);
	CHECK_EQ(pgc_mark_evictable(mf, &a.base, R(5, 15)), 0);
	CHECK_EQ(pgc_mark_evictable(mf, &a.base, R(0, 15)), 0);
	CHECK_EQ(pgc_mark_evictable(mf, &a.base, R(20, 30)), 0);
	CHECK_EQ(pgc_mark_evictable(mf, &a.base, R(40, 50)), 0);
	CHECK_EQ(pgc_mark_unevictable(mf, &a.base, R(45, 60)), 0);
	CHECK_EQ(pgc_mark_evictable(mf, &b.base, R(5, 6)), 0);
	/* Unknown user: nothing to do. */
	CHECK_EQ(pgc_mark_unevictable(mf, (pgc_evictable_user *)&err, R(0, 1)), 0);
	pgc_mark_all_unevictable(mf, (pgc_evictable_user *)&err);

	sleep_ms(50);
	CHECK_EQ(user_calls(&a), 0);
	CHECK_EQ(user_calls(&b), 0);
	pgc_start_evictions(mf);
	pgc_wait_for_evictions(mf);
	/* From the end backwards. */
	CHECK_EQ(user_calls(&a), 3);
	CHECK_EQ(a.calls[0].start, 40);
	CHECK_EQ(a.calls[0].end, 45);
	CHECK_EQ(a.calls[1].start, 20);
	CHECK_EQ(a.calls[1].end, 30);
	CHECK_EQ(a.calls[2].start, 0);
	CHECK_EQ(a.calls[2].end, 15);
	CHECK_EQ(user_calls(&b), 1);
	CHECK_EQ(b.calls[0].start, 5);

	/* Marked then unmarked before eviction: never evicted. */
	CHECK_EQ(pgc_mark_evictable(mf, &b.base, R(7, 9)), 0);
	pgc_mark_all_unevictable(mf, &b.base);
	pgc_start_evictions(mf);
	pgc_wait_for_evictions(mf);
	CHECK_EQ(user_calls(&b), 1);
	/* Pending at destroy: dropped. */
	CHECK_EQ(pgc_mark_evictable(mf, &b.base, R(7, 9)), 0);
	pgc_memfile_destroy(mf);
	CHECK_EQ(user_calls(&b), 1);
}

static void test_racing_unevictable(void)
{
	struct user u;
	int err, i;
	bool ok = true;
	pgc_memfile *mf = new_mf(PGC_EVICTION_MANUAL, false, &err);

	CHECK_EQ(err, 0);
	if (!mf)
		return;
	user_init(&u, mf);
	/* 100 disjoint ranges [2i, 2i+1); the first eviction unmarks [0, 100). */
	for (i = 0; i < 100; i++)
		CHECK_EQ(pgc_mark_evictable(mf, &u.base, R(2 * i, 2 * i + 1)), 0);
	u.unevict_on_first = R(0, 100);
	pgc_start_evictions(mf);
	pgc_wait_for_evictions(mf);
	CHECK_EQ(user_calls(&u), 50);
	for (i = 0; i < u.ncalls; i++)
		if (u.calls[i].start < 100 || u.calls[i].end != u.calls[i].start + 1)
			ok = false;
	CHECK(ok);
	CHECK_EQ(u.calls[0].start, 198);

	/* Everything unmarked from inside the first eviction. */
	user_init(&u, mf);
	u.all_unevict_on_first = true;
	for (i = 0; i < 100; i++)
		CHECK_EQ(pgc_mark_evictable(mf, &u.base, R(2 * i, 2 * i + 1)), 0);
	pgc_start_evictions(mf);
	pgc_wait_for_evictions(mf);
	CHECK_EQ(user_calls(&u), 1);
	pgc_memfile_destroy(mf);
}

static void test_enabled_idle_reclaimer(void)
{
	struct user u;
	int err, i;
	pgc_memfile *mf = new_mf(PGC_EVICTION_ENABLED, false, &err);

	CHECK_EQ(err, 0);
	if (!mf)
		return;
	user_init(&u, mf);
	CHECK(!pgc_should_cache_evictable(mf));
	CHECK_EQ(pgc_mark_evictable(mf, &u.base, R(0, 4096)), 0);
	/* The idle reclaimer starts the eviction. */
	for (i = 0; i < 5000 && user_calls(&u) == 0; i++)
		sleep_ms(1);
	pgc_wait_for_evictions(mf);
	CHECK_EQ(user_calls(&u), 1);
	pgc_memfile_destroy(mf);
}

static void test_pressure(void)
{
	struct user u;
	int err;
	pgc_memfile *mf = new_mf(PGC_EVICTION_ENABLED, true, &err);

	if (!mf) {
		/* No cgroup v2 PSI here: creation must fail cleanly. */
		printf("  PSI trigger unavailable: %s\n", pgc_strerror(err));
		CHECK(err < 0);
		return;
	}
	CHECK_EQ(err, 0);
	CHECK(pgc_should_cache_evictable(mf));
	user_init(&u, mf);
	CHECK_EQ(pgc_mark_evictable(mf, &u.base, R(0, 10)), 0);
	/* Whether pressure shows up is up to the host; both are fine. */
	pgc_start_evictions(mf);
	pgc_wait_for_evictions(mf);
	CHECK_EQ(user_calls(&u), 1);
	pgc_memfile_destroy(mf);
}

static void test_default_mode(void)
{
	struct pgc_memfile_opts o;
	pgc_memfile *mf = NULL;

	/* Default is "enabled"; pressure is ignored unless enabled. */
	pgc_memfile_opts_init(&o);
	o.delayed_eviction = PGC_EVICTION_MANUAL;
	o.use_host_memcg_pressure = true;
	CHECK_EQ(pgc_memfile_new(&o, &mf), 0);
	CHECK(pgc_should_cache_evictable(mf));
	pgc_memfile_destroy(mf);
	CHECK_EQ(pgc_memfile_new(NULL, &mf), 0);
	CHECK(!pgc_should_cache_evictable(mf));
	pgc_wait_for_evictions(mf);
	pgc_memfile_destroy(mf);
}

static void test_many_users(void)
{
	struct user *u = calloc(200, sizeof(*u));
	int err, i, total = 0;
	pgc_memfile *mf = new_mf(PGC_EVICTION_MANUAL, false, &err);

	CHECK(u != NULL);
	CHECK_EQ(err, 0);
	if (!mf || !u)
		goto exit;
	for (i = 0; i < 200; i++) {
		user_init(&u[i], mf);
		CHECK_EQ(pgc_mark_evictable(mf, &u[i].base, R((uint64_t)i, (uint64_t)i + 1)), 0);
	}
	for (i = 0; i < 200; i += 2)
		pgc_mark_all_unevictable(mf, &u[i].base);
	pgc_start_evictions(mf);
	pgc_wait_for_evictions(mf);
	for (i = 0; i < 200; i++) {
		total += user_calls(&u[i]);
		if (i % 2)
			CHECK(user_calls(&u[i]) == 1 && u[i].calls[0].start == (uint64_t)i);
	}
	CHECK_EQ(total, 100);
exit:
	pgc_memfile_destroy(mf);
	free(u);
}

static void test_bad_input(void)
{
	struct user u;
	int err;
	pgc_memfile *mf = new_mf(PGC_EVICTION_MANUAL, false, &err);

	if (!mf)
		return;
	user_init(&u, mf);
	CHECK_EQ(pgc_mark_evictable(mf, &u.base, R(5, 5)), -EINVAL);
	CHECK_EQ(pgc_mark_evictable(mf, &u.base, R(6, 5)), -EINVAL);
	CHECK_EQ(pgc_mark_evictable(mf, NULL, R(0, 5)), -EINVAL);
	CHECK_EQ(pgc_mark_evictable(NULL, &u.base, R(0, 5)), -EINVAL);
	CHECK_EQ(pgc_mark_unevictable(mf, &u.base, R(5, 5)), -EINVAL);
	u.base.evict = NULL;
	CHECK_EQ(pgc_mark_evictable(mf, &u.base, R(0, 5)), -EINVAL);
	pgc_start_evictions(mf);
	pgc_wait_for_evictions(mf);
	pgc_start_evictions(NULL);
	pgc_wait_for_evictions(NULL);
	pgc_mark_all_unevictable(NULL, &u.base);
	CHECK(!pgc_should_cache_evictable(NULL));
	pgc_memfile_destroy(mf);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(test_disabled);
	TEST_RUN(test_manual);
	TEST_RUN(test_racing_unevictable);
	TEST_RUN(test_enabled_idle_reclaimer);
	TEST_RUN(test_pressure);
	TEST_RUN(test_default_mode);
	TEST_RUN(test_many_users);
	TEST_RUN(test_bad_input);
	return test_done();
}
