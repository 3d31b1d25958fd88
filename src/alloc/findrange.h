/* SPDX-License-Identifier: Apache-2.0 */
/*
 * findrange.h - where Allocate places a new range: gVisor's
 * findAvailableRange, ported exactly (tests/vectors/find_range.tsv pins
 * its behaviour).
 */
#ifndef PGC_FINDRANGE_H
#define PGC_FINDRANGE_H

#include <stdint.h>

#include "pgckpt.h"
#include "rangeset.h"

/*
 * find_range - find @length bytes (non-zero) aligned to @alignment (a
 * power of two) outside every segment of @usage, for a file currently
 * @file_size bytes long.
 * Bottom-up: the lowest fit in the first large-enough gap. Top-down: the
 * highest fit at or below the end of the file, searching gaps backwards
 * from the end; failing that, the end of the smallest file obtained by
 * doubling @file_size (from one 1 GiB chunk when the file is empty) that
 * fits it above the last segment. The range may end past @file_size: the
 * caller then grows the file.
 * Returns 0 and *@out, or -ENOMEM when no range fits within int64 offsets
 * (-EINVAL for a zero length or a bad alignment).
 */
int find_range(const struct rangeset *usage, uint64_t file_size, uint64_t length,
	       uint64_t alignment, enum pgc_direction dir, pgc_range *out);

#endif /* PGC_FINDRANGE_H */
