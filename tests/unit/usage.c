/* SPDX-License-Identifier: Apache-2.0 */
/*
 * usage.c - unit tests of the usage scan's swap-discrepancy accounting
 * (gVisor's updateUsageLocked), driven through the internal scan with a
 * commit check the test controls: bytes the host stores beyond what the
 * scan finds committed are accounted as swapped System memory of memcg 0,
 * follow the host's figure up and down, and are dropped when the scan
 * finds more than the host stores.
 */
#include "alloc/memfile.h"
#include "memgen.h"
#include "pgckpt.h"
#include "test.h"

#define PAGE PGC_PAGE_SIZE

/* Commit check: the first *arg pages of the file are committed. */
static int first_pages_check(void *arg, const void *addr, size_t len,
			     unsigned char *committed, uint64_t off, bool was_committed)
{
	uint64_t upto = *(const uint64_t *)arg * PAGE, i;

	(void)addr;
	(void)was_committed;
	for (i = 0; i < len / PAGE; i++)
		committed[i] = off + i * PAGE < upto;
	return 0;
}

/* One scan with the host storing @current bytes; returns System and Anonymous bytes. */
static void scan(pgc_memfile *mf, uint64_t current, uint64_t committed_pages,
		 uint64_t *system, uint64_t *anon)
{
	struct pgc_accounting a;

	pthread_mutex_lock(&mf->mu);
	CHECK_EQ(memfile_update_usage_locked(mf, current, NULL, 0, false,
					     first_pages_check, &committed_pages), 0);
	pthread_mutex_unlock(&mf->mu);
	CHECK_EQ(pgc_accounting(mf, PGC_MEMCG_ALL, &a), 0);
	*system = a.kind[PGC_KIND_SYSTEM];
	*anon = a.kind[PGC_KIND_ANONYMOUS];
}

static void test_swap_discrepancy(void)
{
	pgc_memfile *mf = memgen_memfile();
	struct pgc_alloc_opts o = { .kind = PGC_KIND_ANONYMOUS };
	struct pgc_accounting a;
	uint64_t sys, anon;
	pgc_range r;

	CHECK_EQ(pgc_allocate(mf, 16 * PAGE, &o, &r), 0);
	CHECK_EQ(r.start, 0);
	/* 8 pages found, the host stores 20: 12 are swapped. */
	scan(mf, 20 * PAGE, 8, &sys, &anon);
	CHECK_EQ(anon, 8 * PAGE);
	CHECK_EQ(sys, 12 * PAGE);
	CHECK_EQ(mf->usage_swapped, 12 * PAGE);
	/* Fewer swapped now (14 stored): the swap accounting follows. */
	scan(mf, 14 * PAGE, 8, &sys, &anon);
	CHECK_EQ(anon, 8 * PAGE);
	CHECK_EQ(sys, 6 * PAGE);
	CHECK_EQ(mf->usage_swapped, 6 * PAGE);
	/* More found than stored (a race with new commits): swap dropped. */
	scan(mf, 4 * PAGE, 8, &sys, &anon);
	CHECK_EQ(anon, 8 * PAGE);
	CHECK_EQ(sys, 0);
	CHECK_EQ(mf->usage_swapped, 0);
	/* The rest found committed too, 3 more stored: 3 swapped again. */
	scan(mf, 19 * PAGE, 16, &sys, &anon);
	CHECK_EQ(anon, 16 * PAGE);
	CHECK_EQ(sys, 3 * PAGE);
	/* Swap is System memory of memcg 0 only. */
	CHECK_EQ(pgc_accounting(mf, 7, &a), 0);
	CHECK_EQ(a.total, 0);
	pgc_memfile_destroy(mf);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	TEST_RUN(test_swap_discrepancy);
	return test_done();
}
