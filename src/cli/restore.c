/* SPDX-License-Identifier: Apache-2.0 */
/*
 * restore.c - `pgckpt restore`: load an image eagerly into a new sparse
 * file. The file is built under a temporary name beside TARGET
 * ("TARGET.tmp-XXXXXX", mode 0600) as the backing file of an empty
 * MemoryFile, filled by pgc_load (zero pages stay holes), cut to the
 * image's logical size, fsynced and renamed into place: without --force
 * the rename refuses to replace anything. Any failure, SIGINT or SIGTERM
 * removes the temporary file, so TARGET is either whole or absent.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define CMD "restore"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

enum { OPT_AIO = 256, OPT_DIRECT, OPT_FORCE };

static const struct option restore_options[] = {
	{ "jobs",   required_argument, NULL, 'j' },
	{ "aio",    required_argument, NULL, OPT_AIO },
	{ "direct", no_argument,       NULL, OPT_DIRECT },
	{ "force",  no_argument,       NULL, OPT_FORCE },
	{ "help",   no_argument,       NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Errors of pgc_load that concern the file being written, not the image. */
static bool target_error(int err)
{
	return err == -ENOSPC || err == -EDQUOT || err == -EFBIG || err == -EROFS;
}

/* The directory holding @path, malloc'd ("." or "/" where that is it). */
static char *parent_of(const char *path)
{
	char *dir = strdup(path), *slash;

	if (!dir)
		return NULL;
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	return dir;
}

/* Whether @target would be created inside the image directory @img. */
static bool inside_image(const char *img, const char *target)
{
	char *dir = parent_of(target);
	struct stat a, b;
	bool ret;

	ret = dir && stat(dir, &a) == 0 && stat(img, &b) == 0 &&
	      a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	free(dir);
	return ret;
}

/* fsync the directory holding @path so the rename is durable. */
static int sync_parent(const char *path)
{
	char *dir = parent_of(path);
	int fd, ret = 0;

	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	free(dir);
	return ret;
}

/* Move @tmp to @target; replace an existing @target only if @force. */
static int install(const char *tmp, const char *target, bool force)
{
	if (force)
		return rename(tmp, target) ? -errno : 0;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, target, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* No RENAME_NOREPLACE on this file system: link() never replaces. */
	if (link(tmp, target) != 0)
		return -errno;
	unlink(tmp);
	return 0;
}

/*
 * Cut the restored file @fd to @size. hugetlbfs takes whole huge pages
 * only: there the file keeps the size the MemoryFile gave it, @size
 * rounded up to one. *@kept is the size the file has. Returns 0 or -errno.
 */
static int cut_to_size(int fd, uint64_t size, uint64_t *kept)
{
	struct stat st;
	int err;

	*kept = size;
	if (ftruncate(fd, (off_t)size) == 0)
		return 0;
	err = errno;
	if (err != EINVAL || fstat(fd, &st) != 0 || (uint64_t)st.st_size < size ||
	    (uint64_t)st.st_size - size >= (uint64_t)st.st_blksize)
		return -err;
	*kept = (uint64_t)st.st_size;
	return 0;
}

int cmd_restore(int argc, char **argv)
{
	struct pgc_memfile_opts mo;
	struct pgc_load_opts lo;
	struct pgc_image_info info;
	struct cli_progress bar;
	pgc_memfile *mf = NULL;
	const char *img, *target;
	char *tmp = NULL;
	bool force = false;
	struct stat st;
	uint64_t kept;
	int opt, fd = -1, mfd, ret;
	int i;

	/* The lazy page server (lazy.c) has options of its own. */
	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--background") == 0 || strncmp(argv[i], "--listen", 8) == 0)
			return cmd_restore_lazy(argc, argv);

	pgc_load_opts_init(&lo);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:j:h", restore_options, NULL)) != -1) {
		switch (opt) {
		case 'j':
			if (cli_opt_jobs(CMD, optarg, &lo.jobs))
				return EXIT_USAGE;
			break;
		case OPT_AIO:
			if (cli_opt_aio(CMD, optarg, &lo.aio))
				return EXIT_USAGE;
			break;
		case OPT_DIRECT:
			lo.direct = true;
			break;
		case OPT_FORCE:
			force = true;
			break;
		case 'h':
			cli_help(CMD);
			return EXIT_OK;
		default:
			return cli_bad_option(CMD, opt, argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage(CMD, "expected IMAGE and TARGET");
	img = argv[optind];
	target = argv[optind + 1];

	/* Check the image and the target before creating anything. */
	ret = pgc_image_info(img, &info);
	if (ret)
		return cli_fail_image(CMD, img, ret);
	if (info.file_size > (uint64_t)LLONG_MAX) {
		cli_error(CMD, img, "%s", pgc_strerror(-PGC_ECORRUPT));
		return EXIT_IMAGE;
	}
	if (inside_image(img, target)) {
		cli_error(CMD, target, "is inside the image %s; refusing to write there", img);
		return EXIT_IO;
	}
	if (lstat(target, &st) == 0) {
		if (!force) {
			cli_error(CMD, target, "already exists (use --force to replace it)");
			return EXIT_IO;
		}
		if (S_ISDIR(st.st_mode))
			return cli_fail(CMD, target, -EISDIR);
	}

	if (asprintf(&tmp, "%s.tmp-XXXXXX", target) < 0) {
		tmp = NULL;
		ret = cli_fail(CMD, target, -ENOMEM);
		goto exit;
	}
	cli_cleanup_lock();
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		cli_cleanup_unlock();
		free(tmp);
		tmp = NULL;
		ret = cli_fail(CMD, target, ret);
		goto exit;
	}
	cli_cleanup_unlock();
	cli_cleanup_file(tmp);

	/* The MemoryFile owns a duplicate; fd stays ours for truncate and fsync. */
	mfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (mfd < 0) {
		ret = cli_fail(CMD, target, -errno);
		goto exit;
	}
	pgc_memfile_opts_init(&mo);
	mo.fd = mfd;
	mo.adopt = false;
	ret = pgc_memfile_new(&mo, &mf);
	if (ret) {
		close(mfd);
		ret = cli_fail(CMD, target, ret);
		goto exit;
	}

	cli_progress_init(&bar, "restore");
	lo.progress = cli_progress_cb;
	lo.progress_arg = &bar;
	cli_cleanup_progress(&bar);
	ret = pgc_load(mf, img, &lo);
	cli_cleanup_lock();
	cli_progress_end(&bar);
	cli_cleanup_unlock();
	cli_cleanup_progress(NULL);
	if (ret) {
		ret = cli_fail(CMD, target_error(ret) ? target : img, ret);
		goto exit;
	}
	pgc_memfile_destroy(mf);
	mf = NULL;

	ret = cut_to_size(fd, info.file_size, &kept);
	if (!ret && fsync(fd) != 0)
		ret = -errno;
	if (ret) {
		ret = cli_fail(CMD, target, ret);
		goto exit;
	}
	if (kept != info.file_size)
		cli_error(CMD, target, "note: the file system takes whole huge pages only: "
			  "%" PRIu64 " bytes, of which the memory file is the first %" PRIu64
			  " (the rest is zeros)", kept, info.file_size);
	cli_cleanup_lock();
	ret = install(tmp, target, force);
	if (!ret) {
		free(tmp);
		tmp = NULL;
		cli_cleanup_file(NULL);
	}
	cli_cleanup_unlock();
	if (ret) {
		if (ret == -EEXIST)
			cli_error(CMD, target, "already exists (use --force to replace it)");
		else
			cli_fail(CMD, target, ret);
		ret = EXIT_IO;
		goto exit;
	}
	ret = sync_parent(target);
	if (ret)
		ret = cli_fail(CMD, target, ret);
exit:
	pgc_memfile_destroy(mf);
	if (fd >= 0)
		close(fd);
	if (tmp) {
		cli_cleanup_lock();
		unlink(tmp);
		cli_cleanup_unlock();
		cli_cleanup_file(NULL);
		free(tmp);
	}
	return ret;
}
