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
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define CMD "save"

enum { OPT_AIO = 256, OPT_BLOCK_SIZE, OPT_PARENT };

static const struct option save_options[] = {
	{ "compress",   required_argument, NULL, 'c' },
	{ "jobs",       required_argument, NULL, 'j' },
	{ "aio",        required_argument, NULL, OPT_AIO },
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
	{ "parent",     required_argument, NULL, OPT_PARENT },
	{ "help",       no_argument,       NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/*
 * IMAGE must name a directory entry of its own: the image is built beside
 * it and renamed over it, which "." , ".." and "/" cannot be.
 */
static int check_image_name(const char *img)
{
	const char *end = img + strlen(img), *base;

	while (end > img + 1 && end[-1] == '/')
		end--;
	base = memrchr(img, '/', (size_t)(end - img));
	base = base ? base + 1 : img;
	if (base == end || (end - base == 1 && base[0] == '.') ||
	    (end - base == 2 && base[0] == '.' && base[1] == '.')) {
		cli_error(CMD, img, "an image needs a name of its own (not '.', '..' or '/'), "
			  "such as DIR/img");
		return EXIT_IO;
	}
	return EXIT_OK;
}

/* The source's size now (UINT64_MAX if unknown). */
static uint64_t fd_size(pgc_memfile *mf)
{
	struct stat st;

	if (!mf || fstat(pgc_memfile_fd(mf), &st) != 0)
		return UINT64_MAX;
	return (uint64_t)st.st_size;
}

/* Report the failure @err of saving @src (@size0 bytes at the start) into @img. */
static int save_failed(const char *src, const char *img, uint64_t size_now, uint64_t size0,
		       int err)
{
	struct stat st;

	if (size_now < size0) {
		cli_error(CMD, src, "the file shrank during the save (from %" PRIu64 " to %" PRIu64
			  " bytes); no image written", size0, size_now);
		return EXIT_IO;
	}
	if (lstat(img, &st) == 0 && S_ISLNK(st.st_mode)) {
		cli_error(CMD, img, "is a symbolic link; an image is replaced only under its own "
			  "name (give the directory it points to)");
		return EXIT_IO;
	}
	if (err == -ENOTEMPTY) {
		cli_error(CMD, img, "holds files that are not part of a pgckpt image; "
			  "refusing to replace it");
		return EXIT_IO;
	}
	if (err == -ELOOP) {
		cli_error(CMD, img, "is the parent or one of its ancestors; a child never "
			  "replaces its parent");
		return EXIT_USAGE;
	}
	if (err == -EEXIST || (err == -ENOTDIR && lstat(img, &st) == 0 && !S_ISDIR(st.st_mode))) {
		cli_error(CMD, img, "exists and is not a pgckpt image; refusing to replace it");
		return EXIT_IO;
	}
	return cli_fail(CMD, img, err);
}

/*
 * The parent must be a sound chain below the depth limit; without -c the
 * child takes its compression. Returns an exit status.
 */
static int check_parent(const char *parent, const char *img, struct pgc_save_opts *so,
			bool compress_set)
{
	struct pgc_image_info info;
	int ret = pgc_image_info(parent, &info);

	if (ret)
		return cli_fail_image(CMD, parent, ret);
	if (info.depth >= PGC_MAX_DEPTH) {
		cli_error(CMD, parent, "has %d ancestors already, the most a chain allows; "
			  "flatten it first", PGC_MAX_DEPTH);
		return EXIT_IMAGE;
	}
	if (!compress_set) {
		so->compress = info.compress;
		so->level = info.level;
	} else if (so->compress != info.compress) {
		cli_error(CMD, img, "a child is compressed as its parent %s is (%s)", parent,
			  info.compress == PGC_COMPRESS_NONE ? "-c none" : "-c zstd");
		return EXIT_USAGE;
	}
	return EXIT_OK;
}

int cmd_save(int argc, char **argv)
{
	struct pgc_memfile_opts mo;
	struct pgc_save_opts so;
	struct cli_progress bar;
	pgc_memfile *mf = NULL;
	const char *src, *img;
	struct stat st;
	bool compress_set = false;
	int opt, fd = -1, ret;

	pgc_save_opts_init(&so);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:c:j:h", save_options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			if (cli_opt_compress(CMD, optarg, &so))
				return EXIT_USAGE;
			compress_set = true;
			break;
		case OPT_PARENT:
			so.parent = optarg;
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

	ret = check_image_name(img);
	if (!ret && so.parent)
		ret = check_parent(so.parent, img, &so, compress_set);
	if (ret)
		return ret;
	ret = cli_open_source(CMD, src, &fd, &st);
	if (ret)
		goto exit;

	/* Read through the mapping; a source that shrinks meanwhile: SIGBUS, exit 2. */
	ret = cli_catch_shrink(CMD, src, fd, (uint64_t)st.st_size);
	if (ret) {
		ret = cli_fail(CMD, src, ret);
		goto exit;
	}
	pgc_memfile_opts_init(&mo);
	mo.fd = fd;
	mo.adopt = true;
	mo.adopt_mapped = true;
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
	if (ret)
		ret = save_failed(src, img, fd_size(mf), (uint64_t)st.st_size, ret);
exit:
	pgc_memfile_destroy(mf);
	if (fd >= 0)
		close(fd);
	return ret;
}
