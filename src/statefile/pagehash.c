/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pagehash.c - XXH3-64 of one page compiled for AVX2, for sf_page_hash
 * (block.c), which takes it where the CPU has AVX2. Every save hashes
 * every non-zero page it reads, and the distribution's libxxhash is
 * built for SSE2 only: on pages in the cache (a save's are, after its
 * zero test) its XXH3 took 88 ms per GiB here, the AVX2 code 43 ms.
 * This is xxHash's own code, inlined from its header
 * (XXH_INLINE_ALL) with the AVX2 kernel selected; the hash is the same
 * function (tests/unit/statefile.c compares the two).
 */
#include "sf_internal.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2")
#define XXH_INLINE_ALL
#define XXH_VECTOR 2              /* XXH_AVX2 */
#include <xxhash.h>

uint64_t sf_page_hash_avx2(const void *page)
{
	return XXH3_64bits(page, SF_PAGE_SIZE);
}
#endif
