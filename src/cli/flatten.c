/* SPDX-License-Identifier: Apache-2.0 */
/*
 * flatten.c - `pgckpt flatten IMAGE OUT`: restore the image IMAGE, with
 * every page of its chain of parents, into an anonymous memory file and
 * save that as the standalone image OUT (same compression and block
 * size), which pgc_save writes atomically. OUT may not be IMAGE or one of
 * its parents: replacing a parent would break the children saved
 * against it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define CMD "flatten"

/* Whether @out names @img or one of its ancestors (same directory). */
static bool in_chain(const char *img, const char *out)
{
	char cur[PATH_MAX], par[PATH_MAX];
	struct stat so, si;
	int d;

	if (stat(out, &so) != 0)
		return false;
	snprintf(cur, sizeof(cur), "%s", img);
	for (d = 0; d <= PGC_MAX_DEPTH; d++) {
		if (stat(cur, &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
			return true;
		if (pgc_image_parent(cur, par, sizeof(par)) != 0)
			break;
		memcpy(cur, par, sizeof(cur));
	}
	return false;
}

int cmd_flatten(int argc, char **argv)
{
	struct pgc_memfile_opts mo;
	struct pgc_save_opts so;
	struct pgc_load_opts lo;
	struct pgc_image_info info;
	pgc_memfile *mf = NULL;
	const char *img, *out;
	int ret;

	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		cli_help(CMD);
		return EXIT_OK;
	}
	if (argc != 3 || argv[1][0] == '-')
		return cli_usage(CMD, "expected IMAGE and OUT");
	img = argv[1];
	out = argv[2];
	ret = pgc_image_info(img, &info);
	if (ret)
		return cli_fail_image(CMD, img, ret);
	if (in_chain(img, out)) {
		cli_error(CMD, out, "is %s or one of its parents; give another name", img);
		return EXIT_USAGE;
	}
	pgc_memfile_opts_init(&mo);
	ret = pgc_memfile_new(&mo, &mf);
	if (ret)
		return cli_fail(CMD, NULL, ret);
	pgc_load_opts_init(&lo);
	cli_s3_load_opts(img, &lo);
	ret = pgc_load(mf, img, &lo);
	if (ret) {
		ret = cli_fail(CMD, img, ret);
		goto exit;
	}
	pgc_mark_savable(mf);
	pgc_save_opts_init(&so);
	so.compress = info.compress;
	so.level = info.level;
	so.block_size = info.block_size;
	so.logical_size = info.file_size;
	cli_cleanup_image(out);
	ret = pgc_save(mf, out, &so);
	cli_cleanup_image(NULL);
	if (ret)
		ret = cli_fail(CMD, out, ret);
exit:
	pgc_memfile_destroy(mf);
	return ret;
}
