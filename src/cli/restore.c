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

/* A restore in progress: its options and what it has built so far. */
struct restore {
	const char *img, *target;
	bool force;
	struct pgc_load_opts lo;
	struct pgc_image_info info;
	char *tmp;                      /* the temporary file until installed, or NULL */
	int fd;                         /* tmp, ours for truncate and fsync; -1: none */
	pgc_memfile *mf;                /* backed by a duplicate of fd while loading */
};

/* What a step returns to let the next one run (else: the exit code). */
#define GO_ON (-1)

/* Whether the arguments ask for the lazy page server (lazy.c, options of its own). */
static bool wants_lazy(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--background") == 0 || strncmp(argv[i], "--listen", 8) == 0)
			return true;
	return false;
}

/* Options and operands into @r. Returns GO_ON or the exit code. */
static int restore_parse(struct restore *r, int argc, char **argv)
{
	int opt;

	pgc_load_opts_init(&r->lo);
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+:j:h", restore_options, NULL)) != -1) {
		switch (opt) {
		case 'j':
			if (cli_opt_jobs(CMD, optarg, &r->lo.jobs))
				return EXIT_USAGE;
			break;
		case OPT_AIO:
			if (cli_opt_aio(CMD, optarg, &r->lo.aio))
				return EXIT_USAGE;
			break;
		case OPT_DIRECT:
			r->lo.direct = true;
			break;
		case OPT_FORCE:
			r->force = true;
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
	r->img = argv[optind];
	r->target = argv[optind + 1];
	return GO_ON;
}

/*
 * Check the image (into r->info) and the target before creating anything.
 * Returns GO_ON or the exit code.
 */
static int restore_check(struct restore *r)
{
	struct stat st;
	int ret;

	ret = pgc_image_info(r->img, &r->info);
	if (ret)
		return cli_fail_image(CMD, r->img, ret);
	if (r->info.file_size > (uint64_t)LLONG_MAX) {
		cli_error(CMD, r->img, "%s", pgc_strerror(-PGC_ECORRUPT));
		return EXIT_IMAGE;
	}
	if (inside_image(r->img, r->target)) {
		cli_error(CMD, r->target, "is inside the image %s; refusing to write there", r->img);
		return EXIT_IO;
	}
	if (lstat(r->target, &st) == 0) {
		if (!r->force) {
			cli_error(CMD, r->target, "already exists (use --force to replace it)");
			return EXIT_IO;
		}
		if (S_ISDIR(st.st_mode))
			return cli_fail(CMD, r->target, -EISDIR);
	}
	return GO_ON;
}

/* The temporary file beside the target, removed on a signal. Returns GO_ON or the exit code. */
static int restore_create(struct restore *r)
{
	int err;

	if (asprintf(&r->tmp, "%s.tmp-XXXXXX", r->target) < 0) {
		r->tmp = NULL;
		return cli_fail(CMD, r->target, -ENOMEM);
	}
	cli_cleanup_lock();
	r->fd = mkostemp(r->tmp, O_CLOEXEC);
	if (r->fd < 0) {
		err = -errno;
		cli_cleanup_unlock();
		free(r->tmp);
		r->tmp = NULL;
		return cli_fail(CMD, r->target, err);
	}
	cli_cleanup_unlock();
	cli_cleanup_file(r->tmp);
	return GO_ON;
}

/* Load the image into a MemoryFile on the temporary file. Returns GO_ON or the exit code. */
static int restore_load(struct restore *r)
{
	struct pgc_memfile_opts mo;
	struct cli_progress bar;
	int mfd, ret;

	/* The MemoryFile owns a duplicate; r->fd stays ours for truncate and fsync. */
	mfd = fcntl(r->fd, F_DUPFD_CLOEXEC, 0);
	if (mfd < 0)
		return cli_fail(CMD, r->target, -errno);
	pgc_memfile_opts_init(&mo);
	mo.fd = mfd;
	mo.adopt = false;
	ret = pgc_memfile_new(&mo, &r->mf);
	if (ret) {
		close(mfd);
		return cli_fail(CMD, r->target, ret);
	}

	cli_progress_init(&bar, "restore");
	r->lo.progress = cli_progress_cb;
	r->lo.progress_arg = &bar;
	cli_cleanup_progress(&bar);
	cli_s3_load_opts(r->img, &r->lo);
	ret = pgc_load(r->mf, r->img, &r->lo);
	cli_cleanup_lock();
	cli_progress_end(&bar);
	cli_cleanup_unlock();
	cli_cleanup_progress(NULL);
	if (ret)
		return cli_fail(CMD, target_error(ret) ? r->target : r->img, ret);
	pgc_memfile_destroy(r->mf);
	r->mf = NULL;
	return GO_ON;
}

/* Cut the loaded file to the image's size and make it durable. Returns GO_ON or the exit code. */
static int restore_sync(struct restore *r)
{
	uint64_t kept;
	int ret;

	ret = cut_to_size(r->fd, r->info.file_size, &kept);
	if (!ret && fsync(r->fd) != 0)
		ret = -errno;
	if (ret)
		return cli_fail(CMD, r->target, ret);
	if (kept != r->info.file_size)
		cli_error(CMD, r->target, "note: the file system takes whole huge pages only: "
			  "%" PRIu64 " bytes, of which the memory file is the first %" PRIu64
			  " (the rest is zeros)", kept, r->info.file_size);
	return GO_ON;
}

/* Rename the temporary file into place and sync its directory. Returns the exit code. */
static int restore_install(struct restore *r)
{
	int ret;

	cli_cleanup_lock();
	ret = install(r->tmp, r->target, r->force);
	if (!ret) {
		free(r->tmp);
		r->tmp = NULL;
		cli_cleanup_file(NULL);
	}
	cli_cleanup_unlock();
	if (ret) {
		if (ret == -EEXIST)
			cli_error(CMD, r->target, "already exists (use --force to replace it)");
		else
			cli_fail(CMD, r->target, ret);
		return EXIT_IO;
	}
	ret = sync_parent(r->target);
	return ret ? cli_fail(CMD, r->target, ret) : EXIT_OK;
}

/* Free what @r still holds; a temporary file not installed is removed. */
static void restore_cleanup(struct restore *r)
{
	pgc_memfile_destroy(r->mf);
	if (r->fd >= 0)
		close(r->fd);
	if (r->tmp) {
		cli_cleanup_lock();
		unlink(r->tmp);
		cli_cleanup_unlock();
		cli_cleanup_file(NULL);
		free(r->tmp);
	}
}

int cmd_restore(int argc, char **argv)
{
	struct restore r = { .fd = -1 };
	int ret;

	if (wants_lazy(argc, argv))
		return cmd_restore_lazy(argc, argv);
	ret = restore_parse(&r, argc, argv);
	if (ret == GO_ON)
		ret = restore_check(&r);
	if (ret == GO_ON)
		ret = restore_create(&r);
	if (ret == GO_ON)
		ret = restore_load(&r);
	if (ret == GO_ON)
		ret = restore_sync(&r);
	if (ret == GO_ON)
		ret = restore_install(&r);
	restore_cleanup(&r);
	return ret;
}
