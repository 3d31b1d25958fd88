/* SPDX-License-Identifier: Apache-2.0 */
/*
 * findrange.c - placement of new allocations, a port of gVisor's
 * findAvailableRange{TopDown,BottomUp}.
 *
 * Top-down placement matters for the host: application and internal
 * mappings are handed out from high addresses downwards, so allocating
 * file offsets downwards too lets sequential mappings merge into fewer
 * host VMAs. The file grows by doubling to make room below its end.
 */
#include <errno.h>

#include "findrange.h"

/* File offsets are int64 on the host. */
#define MAX_OFFSET ((uint64_t)INT64_MAX)

static int find_bottom_up(const struct rangeset *usage, uint64_t length,
			  uint64_t mask, pgc_range *out)
{
	struct rs_gap gap = rs_first_gap(usage);
	bool ok = true;

	for (; ok; ok = rs_next_large_enough_gap(usage, gap, length, &gap)) {
		uint64_t start = (gap.start + mask) & ~mask;
		uint64_t end = start + length;

		/* Alignment or length overflowed the offset space. */
		if (start < gap.start || end < start || end > MAX_OFFSET)
			return -ENOMEM;
		if (end <= gap.end) {
			*out = (pgc_range){ start, end };
			return 0;
		}
	}
	/* The last gap ends at RS_MAX_KEY, so the loop always returns. */
	return -ENOMEM;
}

static int find_top_down(const struct rangeset *usage, uint64_t file_size,
			 uint64_t length, uint64_t mask, pgc_range *out)
{
	struct rs_gap last = rs_last_gap(usage), gap = last;
	uint64_t min;

	/* Existing gaps, from the end of the file backwards. */
	for (;;) {
		uint64_t end = gap.end < file_size ? gap.end : file_size;
		uint64_t start = end - length;

		if (start > end)   /* this and every earlier gap is too small */
			break;
		start &= ~mask;
		if (start >= gap.start) {
			*out = (pgc_range){ start, start + length };
			return 0;
		}
		if (!rs_prev_large_enough_gap(usage, gap, length, &gap))
			break;
	}

	/* Grow the file: the smallest doubling that fits above the last segment. */
	min = (last.start + mask) & ~mask;
	if (min < last.start || min + length < min)
		return -ENOMEM;
	for (;;) {
		uint64_t start;

		if (file_size == 0)
			file_size = PGC_CHUNK_SIZE;
		else if (file_size > MAX_OFFSET / 2)
			return -ENOMEM;
		else
			file_size *= 2;
		start = file_size - length;
		if (start > file_size)
			continue;
		start &= ~mask;
		if (start >= min) {
			*out = (pgc_range){ start, start + length };
			return 0;
		}
	}
}

int find_range(const struct rangeset *usage, uint64_t file_size, uint64_t length,
	       uint64_t alignment, enum pgc_direction dir, pgc_range *out)
{
	if (!length || !alignment || (alignment & (alignment - 1)))
		return -EINVAL;
	if (dir == PGC_BOTTOM_UP)
		return find_bottom_up(usage, length, alignment - 1, out);
	return find_top_down(usage, file_size, length, alignment - 1, out);
}
