/* SPDX-License-Identifier: Apache-2.0 */
/*
 * util.c - unit tests of src/util, the helpers every module shares: the
 * zero-page test against a single non-zero byte anywhere in the page,
 * library threads starting with every signal blocked while the caller's
 * mask stays as it was, the monotonic clock, and the one populate path
 * (whole pages inside the range only; its answer on this kernel).
 */
#include <signal.h>
#include <sys/mman.h>
#include <time.h>

#include "pgckpt.h"
#include "test.h"
#include "util/util.h"

#define PAGE PGC_PAGE_SIZE

static void test_page_is_zero(void)
{
	static uint64_t page[PAGE / 8];
	unsigned char *p = (unsigned char *)page;
	int i;

	CHECK(util_page_is_zero(page));
	/* Every word lane, plus random positions, each with one bit set. */
	for (i = 0; i < 64 + 200; i++) {
		size_t at = i < 64 ? (size_t)i * 8 + (size_t)i % 8 : test_rand_below(PAGE);

		p[at] = (unsigned char)(1u << test_rand_below(8));
		CHECK(!util_page_is_zero(page));
		p[at] = 0;
	}
	p[PAGE - 1] = 0x80;
	CHECK(!util_page_is_zero(page));
	p[PAGE - 1] = 0;
	CHECK(util_page_is_zero(page));
}

static sigset_t thread_mask;

static void *mask_main(void *arg)
{
	(void)arg;
	pthread_sigmask(SIG_SETMASK, NULL, &thread_mask);
	return NULL;
}

static void test_thread_create(void)
{
	sigset_t only_usr2, now;
	pthread_t tid;

	sigemptyset(&only_usr2);
	sigaddset(&only_usr2, SIGUSR2);
	pthread_sigmask(SIG_SETMASK, &only_usr2, NULL);
	CHECK_EQ(util_thread_create(&tid, mask_main, NULL), 0);
	CHECK_EQ(pthread_join(tid, NULL), 0);
	/* The library thread blocks everything blockable... */
	CHECK(sigismember(&thread_mask, SIGINT) == 1);
	CHECK(sigismember(&thread_mask, SIGTERM) == 1);
	CHECK(sigismember(&thread_mask, SIGUSR1) == 1);
	CHECK(sigismember(&thread_mask, SIGCHLD) == 1);
	/* A fault's signal reaches the application's handler. */
	CHECK(sigismember(&thread_mask, SIGBUS) == 0);
	CHECK(sigismember(&thread_mask, SIGSEGV) == 0);
	/* ...and the caller's mask is the one it had. */
	pthread_sigmask(SIG_SETMASK, NULL, &now);
	CHECK(sigismember(&now, SIGUSR2) == 1);
	CHECK(sigismember(&now, SIGINT) == 0);
	CHECK(sigismember(&now, SIGUSR1) == 0);
	sigemptyset(&now);
	pthread_sigmask(SIG_SETMASK, &now, NULL);
}

static void test_util_now_ns(void)
{
	struct timespec ms2 = { 0, 2000000 };
	uint64_t a, b;

	a = util_now_ns();
	CHECK(a > 0);
	nanosleep(&ms2, NULL);
	b = util_now_ns();
	CHECK(b >= a + 2000000);
	CHECK(b - a < 10ull * 1000000000ull);
}

/* How many of the @n pages at @p are resident. */
static size_t resident(void *p, size_t n)
{
	unsigned char vec[8];
	size_t i, r = 0;

	if (n > sizeof(vec) || mincore(p, n * PAGE, vec) != 0)
		return SIZE_MAX;
	for (i = 0; i < n; i++)
		r += vec[i] & 1;
	return r;
}

static void test_populate_write(void)
{
	unsigned char *p = mmap(NULL, 6 * PAGE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	CHECK(p != MAP_FAILED);
	if (p == MAP_FAILED)
		return;
	/* No whole page inside: nothing to do. */
	CHECK_EQ(util_populate_write(p + 1, PAGE - 1), 0);
	CHECK_EQ(resident(p, 6), 0);
	/* From the middle of page 1 to the middle of page 5: pages 2..4. */
	ret = util_populate_write(p + PAGE + PAGE / 2, 4 * PAGE);
	if (ret == -EOPNOTSUPP) {
		/* A kernel without MADV_POPULATE_WRITE (< 5.14): switched off. */
		printf("  note: MADV_POPULATE_WRITE unsupported here\n");
		CHECK_EQ(util_populate_write(p, 6 * PAGE), -EOPNOTSUPP);
		CHECK_EQ(resident(p, 6), 0);
	} else {
		CHECK_EQ(ret, 0);
		CHECK_EQ(resident(p, 1), 0);
		CHECK_EQ(resident(p + PAGE, 1), 0);
		CHECK_EQ(resident(p + 2 * PAGE, 3), 3);
		CHECK_EQ(resident(p + 5 * PAGE, 1), 0);
	}
	munmap(p, 6 * PAGE);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(test_page_is_zero);
	TEST_RUN(test_thread_create);
	TEST_RUN(test_util_now_ns);
	TEST_RUN(test_populate_write);
	return test_done();
}
