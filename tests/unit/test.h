/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test.h - the tiny harness every unit test program shares.
 *
 * Each program is one area. It calls test_init(argc, argv) first, which
 * takes the seed from argv[1] or $PGCKPT_SEED (else from the clock), prints
 * it, and moves into a fresh temporary directory. Cases are run with
 * TEST_RUN(fn); CHECK() records a failure with file:line and continues.
 * test_done() prints "N passed, N failed" and returns the exit status
 * (0 all passed, 1 any failed). test_skip() exits 77.
 */
#ifndef PGC_TEST_H
#define PGC_TEST_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t test_seed;
static uint64_t test_rng_state;
static int test_passed, test_failed, test_case_failed;
static char test_dir[256];

static inline uint64_t test_rand(void)
{
	/* splitmix64: small, seedable, good enough for tests. */
	uint64_t z = (test_rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static inline uint64_t test_rand_below(uint64_t n) { return n ? test_rand() % n : 0; }

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t test_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline void test_fill_random(void *buf, size_t len)
{
	unsigned char *p = buf;
	while (len >= 8) {
		uint64_t v = test_rand();
		memcpy(p, &v, 8);
		p += 8;
		len -= 8;
	}
	while (len--)
		*p++ = (unsigned char)test_rand();
}

static inline void test_init(int argc, char **argv)
{
	const char *s = argc > 1 ? argv[1] : getenv("PGCKPT_SEED");
	if (s && *s) {
		test_seed = strtoull(s, NULL, 0);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		test_seed = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec;
	}
	test_rng_state = test_seed;
	printf("%s: seed %" PRIu64 " (rerun: %s %" PRIu64 ")\n", argv[0], test_seed, argv[0], test_seed);
	snprintf(test_dir, sizeof(test_dir), "%s/pgckpt-test.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(test_dir) || chdir(test_dir) != 0) {
		perror("test temp dir");
		exit(1);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
}

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			printf("  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			test_case_failed = 1;                                  \
		}                                                              \
	} while (0)

/* CHECK_EQ for integers, printing both sides. */
#define CHECK_EQ(a, b)                                                         \
	do {                                                                   \
		long long _a = (long long)(a), _b = (long long)(b);            \
		if (_a != _b) {                                                \
			printf("  FAIL %s:%d: %s == %s (%lld != %lld)\n",      \
			       __FILE__, __LINE__, #a, #b, _a, _b);           \
			test_case_failed = 1;                                  \
		}                                                              \
	} while (0)

#define TEST_RUN(fn)                                                           \
	do {                                                                   \
		test_case_failed = 0;                                          \
		fn();                                                          \
		if (test_case_failed) {                                        \
			test_failed++;                                         \
			printf("not ok %s\n", #fn);                            \
		} else {                                                       \
			test_passed++;                                         \
			printf("ok %s\n", #fn);                                \
		}                                                              \
	} while (0)

static inline int test_done(void)
{
	char cmd[300];
	if (chdir("/") == 0 && test_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", test_dir);
		if (system(cmd) != 0)
			printf("warning: could not remove %s\n", test_dir);
	}
	printf("%d passed, %d failed\n", test_passed, test_failed);
	return test_failed ? 1 : 0;
}

static inline void test_skip(const char *why)
{
	printf("skip: %s\n", why);
	exit(77);
}

#endif /* PGC_TEST_H */
