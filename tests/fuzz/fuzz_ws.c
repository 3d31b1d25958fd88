/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_ws.c - libFuzzer harness for the working-set file decoder
 * (sf_ws_decode_set), whose input is a file a user names. Decoded for the
 * image id 42 of 100 blocks and 4096 pages, as the seeds were written (and
 * for another id, which must then be refused): an accepted file must hold
 * 1..100 distinct block numbers below 100 and distinct page numbers below
 * 4096; a refused one must return nothing. The block-only decoder must
 * agree with it.
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
	uint8_t seen[100] = { 0 }, pseen[4096] = { 0 };
	struct sf_ws ws;
	uint32_t *blocks;
	size_t n, i;
	int ret;

	ret = sf_ws_decode_set(data, size, 42, 100, 4096, &ws);
	if (ret) {
		if (ws.blocks || ws.n || ws.pages || ws.npages)
			abort();
		return 0;
	}
	if (!ws.n || ws.n > 100 || ws.npages > 4096 || (ws.npages && !ws.pages))
		abort();
	for (i = 0; i < ws.n; i++) {
		if (ws.blocks[i] >= 100 || seen[ws.blocks[i]])
			abort();
		seen[ws.blocks[i]] = 1;
	}
	for (i = 0; i < ws.npages; i++) {
		if (ws.pages[i] >= 4096 || pseen[ws.pages[i]])
			abort();
		pseen[ws.pages[i]] = 1;
	}
	/* The block-only decoder takes the same file, with the same blocks. */
	if (sf_ws_decode(data, size, 42, 100, &blocks, &n) || n != ws.n ||
	    memcmp(blocks, ws.blocks, n * sizeof(*blocks)))
		abort();
	free(blocks);
	sf_ws_free(&ws);
	/* The same bytes never pass for another image. */
	if (sf_ws_decode_set(data, size, 43, 100, 4096, &ws) != -ESTALE || ws.blocks)
		abort();
	return 0;
}
