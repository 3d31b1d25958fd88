/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_ws.c - libFuzzer harness for the working-set file decoder
 * (sf_ws_decode), whose input is a file a user names. Decoded for the
 * image id 42 of 100 blocks, as the seeds were written (and for another
 * id, which must then be refused): an accepted file must hold 1..100
 * distinct block numbers below 100; a refused one must return no blocks.
 *
 * Built with -fsanitize=fuzzer by `make fuzz`, and with -DREPLAY plus
 * replay.c by the normal build, which runs tests/fuzz/corpus/ws/.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "statefile/statefile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t seen[100] = { 0 };
	uint32_t *blocks;
	size_t n, i;
	int ret;

	ret = sf_ws_decode(data, size, 42, 100, &blocks, &n);
	if (ret) {
		if (blocks || n)
			abort();
		return 0;
	}
	if (!n || n > 100)
		abort();
	for (i = 0; i < n; i++) {
		if (blocks[i] >= 100 || seen[blocks[i]])
			abort();
		seen[blocks[i]] = 1;
	}
	free(blocks);
	/* The same bytes never pass for another image. */
	if (sf_ws_decode(data, size, 43, 100, &blocks, &n) != -ESTALE || blocks)
		abort();
	return 0;
}
