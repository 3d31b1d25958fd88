/* SPDX-License-Identifier: Apache-2.0 */
/*
 * find_range.c - runs placement vectors against find_range.
 *
 * Usage: find_range [VECTORS.tsv]  (default: tests/vectors/find_range.tsv
 * under $PGCKPT_SRC, or relative to the current directory). The format is
 * described in the file's header. Prints each failing case and ends with
 * "N passed, N failed"; exits 0 only if every case passes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/findrange.h"

static const struct rs_ops refs_ops = { .value_size = sizeof(uint64_t) };

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end ? -EINVAL : 0;
}

/* Fill @usage from "START-END:REFS,..." or "-". */
static int parse_usage(char *s, struct rangeset *usage)
{
	char *save = NULL, *tok;

	if (!strcmp(s, "-"))
		return 0;
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(tok, '-'), *colon = strchr(tok, ':');
		uint64_t start, end, refs;

		if (!dash || !colon || colon < dash)
			return -EINVAL;
		*dash = *colon = '\0';
		if (parse_u64(tok, &start) || parse_u64(dash + 1, &end) ||
		    parse_u64(colon + 1, &refs) || rs_insert(usage, (pgc_range){ start, end }, &refs))
			return -EINVAL;
	}
	return 0;
}

/* Run one line. Returns 1 pass, 0 fail, -1 malformed. */
static int run_case(char *line, int lineno)
{
	char *f[8], *save = NULL;
	struct rangeset usage;
	uint64_t size, len, align, want = 0;
	bool want_fail;
	pgc_range got = { 0, 0 };
	int n = 0, ret, pass = -1;

	for (char *t = strtok_r(line, "\t\n", &save); t && n < 8; t = strtok_r(NULL, "\t\n", &save))
		f[n++] = t;
	rs_init(&usage, &refs_ops);
	if (n != 7 || (strcmp(f[1], "up") && strcmp(f[1], "down")) ||
	    parse_usage(f[2], &usage) || parse_u64(f[3], &size) || parse_u64(f[4], &len) ||
	    parse_u64(f[5], &align))
		goto exit;
	want_fail = !strcmp(f[6], "fail");
	if (!want_fail && parse_u64(f[6], &want))
		goto exit;
	ret = find_range(&usage, size, len, align,
			     strcmp(f[1], "up") ? PGC_TOP_DOWN : PGC_BOTTOM_UP, &got);
	if (want_fail)
		pass = ret == -ENOMEM;
	else
		pass = ret == 0 && got.start == want && got.end == want + len;
	if (!pass)
		printf("FAIL %s (line %d): want %s, got %s %" PRIu64 "\n", f[0], lineno, f[6],
		       ret ? "error" : "start", ret ? (uint64_t)-ret : got.start);
exit:
	if (pass < 0)
		printf("malformed line %d\n", lineno);
	rs_clear(&usage);
	return pass;
}

int main(int argc, char **argv)
{
	const char *src = getenv("PGCKPT_SRC");
	char path[4096], line[4096];
	int passed = 0, failed = 0, lineno = 0;
	FILE *f;

	if (argc > 1)
		snprintf(path, sizeof(path), "%s", argv[1]);
	else
		snprintf(path, sizeof(path), "%s%stests/vectors/find_range.tsv",
			 src ? src : "", src ? "/" : "");
	f = fopen(path, "r");
	if (!f) {
		perror(path);
		return 1;
	}
	printf("vectors: %s\n", path);
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (run_case(line, lineno) > 0)
			passed++;
		else
			failed++;
	}
	fclose(f);
	printf("%d passed, %d failed\n", passed, failed);
	return failed || !passed ? 1 : 0;
}
