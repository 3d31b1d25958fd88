/* SPDX-License-Identifier: Apache-2.0 */
/*
 * clock.c - the library's clock: CLOCK_MONOTONIC in nanoseconds, for
 * statistics (load and wait times) and rate limits (usage rescans).
 */
#include <time.h>

#include "util/util.h"

uint64_t util_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
