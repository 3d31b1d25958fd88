/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_handoff.c - libFuzzer harness for the lazy-restore handoff JSON
 * parser (lazy_parse_regions), input from another process. The input
 * is parsed as is, with a small and the full region limit; an accepted
 * message must format back (lazy_format_regions, in each form a
 * Firecracker version writes) into JSON that parses to the same regions,
 * and every prefix of it tried here must be -ENODATA (never -EINVAL: the
 * server waits for more bytes).
 *
 * Built with -fsanitize=fuzzer by `make fuzz`, and with -DREPLAY plus
 * replay.c by the normal build, which runs tests/fuzz/corpus/handoff/.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lazy/lazy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct lazy_map maps[LAZY_MAX_REGIONS], again[LAZY_MAX_REGIONS];

/* The first @n of maps[], written in @form, must parse back to themselves. */
static void check_round_trip(size_t n, int form)
{
	static char out[LAZY_MAX_REGIONS * LAZY_REGION_JSON_MAX + 2];
	size_t n2 = 0, cut;
	int len;

	len = lazy_format_regions(maps, n, (enum lazy_form)form, out, sizeof(out));
	if (len < 0)
		abort();
	if (lazy_parse_regions(out, (size_t)len, again, LAZY_MAX_REGIONS, &n2) ||
	    n2 != n || memcmp(maps, again, n * sizeof(*maps)))
		abort();
	/* Prefixes of the canonical form are incomplete, not invalid. */
	for (cut = 0; cut < (size_t)len; cut += 1 + (size_t)len / 16)
		if (lazy_parse_regions(out, cut, again, LAZY_MAX_REGIONS, &n2) != -ENODATA)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf;
	char *copy;
	size_t n = 0;
	int ret, form;

	if (size > LAZY_MAX_MSG)
		return 0;
	/* An exact-size copy so that reading past the end is caught. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	buf = copy;
	ret = lazy_parse_regions(buf, size, maps, 4, &n);
	if (ret != 0 && ret != -ENODATA && ret != -E2BIG && ret != -EINVAL)
		abort();
	if (ret == 0 && (n == 0 || n > 4))
		abort();
	ret = lazy_parse_regions(buf, size, maps, LAZY_MAX_REGIONS, &n);
	if (ret == 0) {
		if (n == 0 || n > LAZY_MAX_REGIONS)
			abort();
		for (form = LAZY_FORM_PAGE_SIZE; form <= LAZY_FORM_BOTH; form++)
			check_round_trip(n, form);
	}
	free(copy);
	return 0;
}
