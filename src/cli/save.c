/* SPDX-License-Identifier: Apache-2.0 */
/*
 * save.c - `pgckpt save`: open a memory file read-only (a tmpfs or
 * hugetlbfs file, a sparse disk file, /proc/PID/fd/N, a
 * /proc/PID/map_files entry), adopt it as a MemoryFile and write it into
 * an image directory with pgc_save, which builds the image in a temporary
 * sibling and renames it into place. If SIGINT or SIGTERM arrives, the
 * signal thread removes that temporary directory; the image's name never
 * holds a half image and an older image stays whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define CMD "save"

enum { OPT_AIO = 256, OPT_BLOCK_SIZE };

static const struct option save_options[] = {
	{ "compress",   required_argument, NULL, 'c' },
	{ "jobs",       required_argument, NULL, 'j' },
	{ "aio",        required_argument, NULL, OPT_AIO },
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
	{ "help",       no_argument,       NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

int cmd_save(int argc, char **argv)
{
	struct pgc_memfile_opts mo;
	struct pgc_save_opts so;
	struct cli_progress bar;
	pgc_memfile *mf = NULL;
	const char *src, *img;
	struct stat st;
	int opt, fd = -1, ret;

	pgc_save_opts_init(&so);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:j:h", save_options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (cli_opt_compress(CMD, optarg, &so))
				return EXIT_USAGE;
			break;
		case 'j':
			if (cli_opt_jobs(CMD, optarg, &so.jobs))
				return EXIT_USAGE;
			break;
		case OPT_AIO:
			if (cli_opt_aio(CMD, optarg, &so.aio))
				return EXIT_USAGE;
			break;
		case OPT_BLOCK_SIZE:
			if (cli_opt_block_size(CMD, optarg, &so))
				return EXIT_USAGE;
			break;
		case 'h':
			cli_help(CMD);
			return EXIT_OK;
		default:
			return cli_bad_option(CMD, opt, argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage(CMD, "expected SOURCE and IMAGE");
	src = argv[optind];
	img = argv[optind + 1];

	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = cli_fail(CMD, src, -errno);
		goto exit;
	}
	if (fstat(fd, &st) != 0) {
		ret = cli_fail(CMD, src, -errno);
		goto exit;
	}
	if (!S_ISREG(st.st_mode)) {
		cli_error(CMD, src, "not a memory file (%s)",
			  S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
		ret = EXIT_IO;
		goto exit;
	}

	pgc_memfile_opts_init(&mo);
	mo.fd = fd;
	mo.adopt = true;
	ret = pgc_memfile_new(&mo, &mf);
	if (ret) {
		ret = cli_fail(CMD, src, ret);
		goto exit;
	}
	fd = -1;        /* owned by mf now */
	pgc_mark_savable(mf);   /* this MemoryFile exists to be saved */

	cli_progress_init(&bar, "save");
	so.logical_size = (uint64_t)st.st_size;
	so.progress = cli_progress_cb;
	so.progress_arg = &bar;
	cli_cleanup_progress(&bar);
	cli_cleanup_image(img);
	ret = pgc_save(mf, img, &so);
	cli_cleanup_lock();
	cli_progress_end(&bar);
	cli_cleanup_unlock();
	cli_cleanup_image(NULL);
	cli_cleanup_progress(NULL);
	if (ret == -EEXIST || (ret == -ENOTDIR && lstat(img, &st) == 0 &&
				!S_ISDIR(st.st_mode))) {
		cli_error(CMD, img, "exists and is not a pgckpt image; refusing to replace it");
		ret = EXIT_IO;
	} else if (ret) {
		ret = cli_fail(CMD, img, ret);
	}
exit:
	pgc_memfile_destroy(mf);
	if (fd >= 0)
		close(fd);
	return ret;
}
