/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wsmerge.c - `pgckpt ws-merge IMAGE OUT WS...`: merge working-set
 * recordings of restores of IMAGE (--record-working-set) into one, OUT,
 * for --working-set (pgc_ws_merge: the blocks more recordings hold first,
 * then by mean position). Every WS must be a working set of IMAGE; a bad
 * one is named and nothing is written.
 */
#include <errno.h>
#include <string.h>

#include "cli.h"

#define CMD "ws-merge"

int cmd_ws_merge(int argc, char **argv)
{
	const char *const *in;
	size_t n, bad;
	int ret;

	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		cli_help(CMD);
		return EXIT_OK;
	}
	if (argc < 4 || argv[1][0] == '-')
		return cli_usage(CMD, "expected IMAGE, OUT and at least one WS");
	n = (size_t)argc - 3;
	if (n > PGC_WS_MERGE_MAX)
		return cli_usage(CMD, "at most %d working sets", PGC_WS_MERGE_MAX);
	in = (const char *const *)(argv + 3);
	ret = pgc_ws_merge(argv[1], in, n, argv[2], &bad);
	if (!ret)
		return EXIT_OK;
	if (bad < n && ret == -ESTALE) {
		cli_error(CMD, in[bad], "not a working set of %s (another image's)", argv[1]);
		return EXIT_IMAGE;
	}
	if (bad < n && ret == -ENODATA) {
		cli_error(CMD, in[bad], "empty working set");
		return EXIT_IMAGE;
	}
	if (bad < n)
		return cli_fail(CMD, in[bad], ret);
	if (ret == -ENOMEM || ret == -EINVAL)
		return cli_fail(CMD, NULL, ret);
	/* The image, or writing OUT. */
	return pgc_is_image_error(ret) ? cli_fail_image(CMD, argv[1], ret) : cli_fail(CMD, argv[2], ret);
}
