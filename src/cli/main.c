/* SPDX-License-Identifier: Apache-2.0 */
/*
 * main.c - the pgckpt command: dispatch to the subcommands, --help and
 * --version, the helpers every subcommand shares (error lines, exit
 * statuses, size and number parsing), and the handling of SIGINT, SIGTERM
 * and SIGHUP: a helper thread receives them, removes the temporary files
 * the interrupted operation registered, and exits with 128 + the signal.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* ---- help ---------------------------------------------------------------- */

static const char usage_main[] =
	"Usage: pgckpt COMMAND [OPTION]... ARG...\n"
	"Checkpoint and restore memory files.\n"
	"\n"
	"Commands:\n"
	"  save    [-c zstd[:N]|none] [--aio B] [-j N] [--block-size S] [--parent P] SOURCE IMAGE\n"
	"  restore [--aio B] [-j N] [--direct] [--force] [--cache-dir D] IMAGE TARGET\n"
	"  restore --background --listen SOCKET [--once] [--timeout SEC] IMAGE\n"
	"  inspect [--json] IMAGE\n"
	"  verify  IMAGE\n"
	"  flatten IMAGE OUT\n"
	"  ws-merge IMAGE OUT WS...\n"
	"  export  --criu [--force] IMAGE DIR\n"
	"  bench   [--json] [-c zstd[:N]|none] [--block-size S] [--runs N] FILE\n"
	"\n"
	"An IMAGE may be s3://BUCKET/PREFIX (S3-compatible storage, AWS_* variables).\n"
	"\n"
	"  -h, --help     show this help, or a command's with 'pgckpt COMMAND --help'\n"
	"  -V, --version  show the version\n"
	"\n"
	"Exit status: 0 ok, 1 usage error, 2 I/O or system error,\n"
	"3 bad or corrupt image, 128+N killed by signal N.\n";

static const char usage_save[] =
	"Usage: pgckpt save [OPTION]... SOURCE IMAGE\n"
	"Save the memory file SOURCE (a tmpfs or hugetlbfs file, a sparse file,\n"
	"/proc/PID/fd/N, /proc/PID/map_files/START-END) into the image directory\n"
	"IMAGE. The image is written atomically; an existing image is replaced.\n"
	"\n"
	"  -c, --compress zstd[:N]|none  compression, zstd level N in 1..19 (default zstd:1)\n"
	"      --block-size S            memory per block, a page multiple up to 4M\n"
	"                                (K/M/G suffixes; default 1M)\n"
	"  -j, --jobs N                  compression threads (default: online CPUs)\n"
	"      --aio B                   auto, threads, libaio or uring (default: $PGCKPT_AIO or auto)\n"
	"      --parent P                store only the pages that differ from image P's and\n"
	"                                reference the rest (P is only read; its chain must stay\n"
	"                                in place; without -c, P's compression)\n"
	"  -h, --help                    show this help\n";

static const char usage_flatten[] =
	"Usage: pgckpt flatten IMAGE OUT\n"
	"Write the image IMAGE with all the pages of its chain of parents into the\n"
	"standalone image OUT, atomically; its parents may then be removed.\n"
	"OUT may not be IMAGE or one of its parents.\n"
	"\n"
	"  -h, --help     show this help\n";

static const char usage_ws_merge[] =
	"Usage: pgckpt ws-merge IMAGE OUT WS...\n"
	"Merge the working sets WS (recorded with restore --record-working-set\n"
	"from restores of IMAGE) into one, OUT, for --working-set: the blocks\n"
	"more recordings hold first, then by their mean position. Every WS must\n"
	"be a working set of IMAGE. OUT is written atomically (it may be a WS).\n"
	"\n"
	"  -h, --help     show this help\n";

static const char usage_restore[] =
	"Usage: pgckpt restore [OPTION]... IMAGE TARGET\n"
	"Restore the image IMAGE into a new sparse file TARGET (zero pages are\n"
	"holes). TARGET is built under a temporary name beside it and renamed\n"
	"into place, so a failed restore leaves nothing behind.\n"
	"\n"
	"      --force    replace TARGET if it exists\n"
	"      --direct   read raw (-c none) images with O_DIRECT\n"
	"  -j, --jobs N   decompression threads (default: online CPUs; for s3://\n"
	"                 images, ranged GETs in flight: default 4, lazy 2)\n"
	"      --aio B    auto, threads, libaio or uring (default: $PGCKPT_AIO or auto)\n"
	"      --cache-dir D  s3:// images: keep verified blocks in the directory D\n"
	"                 (made 0700; this user's alone) and read them from there\n"
	"  -h, --help     show this help\n"
	"\n"
	"   or: pgckpt restore --background --listen SOCKET [OPTION]... IMAGE\n"
	"Lazy restore for other processes: load IMAGE into memory in the background\n"
	"and serve it over userfaultfd to consumers that connect to SOCKET with\n"
	"Firecracker's UFFD handoff (docs/lazy.md), each in its own thread, until\n"
	"SIGINT or SIGTERM. One line per consumer on stderr. The socket (mode 0600)\n"
	"is removed on exit.\n"
	"\n"
	"      --once                    stop after the first consumer is served\n"
	"      --timeout SEC             stop after SEC seconds without a consumer\n"
	"                                (exit 2 if none was served)\n"
	"      --handshake-timeout SEC   wait for a consumer's handoff (default 1)\n"
	"      --allow-uid UID           also serve processes of user UID (repeatable;\n"
	"                                by default only this uid and root)\n"
	"      --fault-bytes S           bytes served around a fault, 4K..4M (default 64K)\n"
	"      --no-push                 serve faults only (with --fault-bytes 4K: the\n"
	"                                naive one-page-per-fault baseline)\n"
	"      --record-working-set WS   record the blocks consumers ask for, in order,\n"
	"                                into WS (written when a session ends)\n"
	"      --working-set WS          load WS's blocks first and place them in each\n"
	"                                consumer before it asks (a WS that does not\n"
	"                                fit IMAGE is ignored with a warning)\n"
	"  -j N, --aio B, --direct, --cache-dir D   as above, for the background load\n";

static const char usage_inspect[] =
	"Usage: pgckpt inspect [--json] IMAGE\n"
	"Describe the image IMAGE: format version, sizes, ratio, segments, blocks,\n"
	"compression.\n"
	"\n"
	"      --json     print one JSON object (keys in docs/cli.md)\n"
	"  -h, --help     show this help\n";

static const char usage_verify[] =
	"Usage: pgckpt verify IMAGE\n"
	"Check every checksum of the image IMAGE and of its parents, decoding\n"
	"every block, and that each parent is the image its child recorded.\n"
	"Prints \"IMAGE: ok\" and exits 0, or names the problem and exits 3.\n"
	"\n"
	"  -h, --help     show this help\n";

static const char usage_export[] =
	"Usage: pgckpt export --criu [--force] IMAGE DIR\n"
	"Write a CRIU pagemap.img and raw pages-1.img of the image IMAGE into DIR\n"
	"(created if missing) as new files, mode 0600.\n"
	"\n"
	"      --criu     CRIU format (the only one)\n"
	"      --force    replace existing pagemap.img and pages-1.img (never\n"
	"                 writing through them)\n"
	"  -h, --help     show this help\n";

static const char usage_bench[] =
	"Usage: pgckpt bench [OPTION]... FILE\n"
	"Measure pgckpt on the memory file FILE, in-process: save, eager restore\n"
	"into fresh memory, and a background restore seen from the consumer\n"
	"(time until ready, until every page is in, random 4 KiB reads during\n"
	"the load), and lazy restores for a consumer process it forks (first\n"
	"access, fault p50/p99, every page placed, a working set touched with\n"
	"and without a recorded one; medians of the runs). The image is written\n"
	"to a temporary directory and removed.\n"
	"\n"
	"  -c, --compress zstd[:N]|none  compression (default zstd:1)\n"
	"      --block-size S            memory per block (default 1M)\n"
	"  -j, --jobs N                  worker threads (default: online CPUs)\n"
	"      --aio B                   auto, threads, libaio or uring\n"
	"      --runs N                  best of N runs (default 3)\n"
	"      --accesses N              random reads during the load (default 2000)\n"
	"      --dir D                   where the image goes (default /dev/shm)\n"
	"      --json                    one JSON object (keys in docs/cli.md)\n"
	"      --no-lazy                 no lazy restores\n"
	"  -h, --help                    show this help\n";

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
	bool uses_aio;          /* reads $PGCKPT_AIO */
};

static const struct command commands[] = {
	{ "save",    cmd_save,    usage_save,    true },
	{ "restore", cmd_restore, usage_restore, true },
	{ "inspect", cmd_inspect, usage_inspect, false },
	{ "verify",  cmd_verify,  usage_verify,  false },
	{ "export",  cmd_export,  usage_export,  false },
	{ "flatten", cmd_flatten, usage_flatten, false },
	{ "ws-merge", cmd_ws_merge, usage_ws_merge, false },
	{ "bench",   cmd_bench,   usage_bench,   true },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; name && i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

void cli_help(const char *cmd)
{
	const struct command *c = find_command(cmd);

	fputs(c ? c->usage : usage_main, stdout);
}

/* ---- errors ---------------------------------------------------------------- */

__attribute__((format(printf, 3, 0)))
static void verror(const char *cmd, const char *file, const char *fmt, va_list ap)
{
	fputs("pgckpt: ", stderr);
	if (cmd)
		fprintf(stderr, "%s: ", cmd);
	if (file)
		fprintf(stderr, "%s: ", cli_image_name(file));
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void cli_error(const char *cmd, const char *file, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(cmd, file, fmt, ap);
	va_end(ap);
}

int cli_fail_image(const char *cmd, const char *img, int err)
{
	struct stat st;

	/* A plain file where an image directory belongs is a foreign image. */
	if (err == -ENOTDIR && stat(img, &st) == 0 && !S_ISDIR(st.st_mode))
		err = -PGC_EFOREIGN;
	return cli_fail(cmd, img, err);
}

/*
 * -PGC_EPARENT for the image @img: find the first unsound link of its
 * chain and name both ends, with the reason (missing, damaged, another
 * image). Returns EXIT_IMAGE.
 */
static int parent_fail(const char *cmd, const char *img)
{
	char cur[PATH_MAX], par[PATH_MAX];
	struct pgc_image_info info;
	int d, ret;

	snprintf(cur, sizeof(cur), "%s", img);
	for (d = 0; d <= PGC_MAX_DEPTH; d++) {
		ret = pgc_image_parent(cur, par, sizeof(par));
		if (ret == 0) {
			memcpy(cur, par, sizeof(cur));
			continue;
		}
		if (ret != -PGC_EPARENT)
			break;
		ret = pgc_image_info(par, &info);
		if (ret == 0 || ret == -PGC_EPARENT)
			cli_error(cmd, cur, "its parent %s is not the image it was saved against "
				  "(replaced or rewritten)", par);
		else
			cli_error(cmd, cur, "its parent %s is missing or damaged: %s", par,
				  pgc_strerror(ret));
		return EXIT_IMAGE;
	}
	cli_error(cmd, img, "%s", pgc_strerror(-PGC_EPARENT));
	return EXIT_IMAGE;
}

int cli_fail(const char *cmd, const char *file, int err)
{
	if (err == -PGC_EPARENT && file)
		return parent_fail(cmd, file);
	cli_error(cmd, file, "%s", pgc_strerror(err));
	return pgc_is_image_error(err) ? EXIT_IMAGE : EXIT_IO;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(cmd, NULL, fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try 'pgckpt %s%s--help' for more information.\n",
		cmd ? cmd : "", cmd ? " " : "");
	return EXIT_USAGE;
}

int cli_bad_option(const char *cmd, int opt, char **argv)
{
	const char *arg = argv[optind - 1];

	if (opt == ':')
		return cli_usage(cmd, "option '%s' needs an argument", arg);
	if (optopt && optopt != '?' && (arg[0] != '-' || arg[1] != '-'))
		return cli_usage(cmd, "unknown option '-%c'", optopt);
	return cli_usage(cmd, "unknown option '%s'", arg);
}

/* ---- files ----------------------------------------------------------------- */

int cli_pread_full(int fd, void *p, size_t n, off_t off)
{
	while (n) {
		ssize_t r = pread(fd, p, n, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		p = (char *)p + r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

int cli_pwrite_full(int fd, const void *p, size_t n, off_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p = (const char *)p + w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

/* ---- parsing --------------------------------------------------------------- */

int cli_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1] != '\0' && strcmp(end + 1, "iB") != 0 &&
	    strcmp(end + 1, "B") != 0)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int cli_parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int cli_opt_jobs(const char *cmd, const char *arg, int *jobs)
{
	long n;

	if (cli_parse_int(arg, 1, 1024, &n))
		return cli_usage(cmd, "bad job count '%s' (1..1024)", arg);
	*jobs = (int)n;
	return 0;
}

int cli_opt_compress(const char *cmd, const char *arg, struct pgc_save_opts *so)
{
	long level = 1;

	if (strcmp(arg, "none") == 0) {
		so->compress = PGC_COMPRESS_NONE;
		return 0;
	}
	if (strncmp(arg, "zstd", 4) != 0 || (arg[4] != '\0' && arg[4] != ':') ||
	    (arg[4] == ':' && cli_parse_int(arg + 5, 1, 19, &level)))
		return cli_usage(cmd, "bad compression '%s' (zstd, zstd:1..19 or none)", arg);
	so->compress = PGC_COMPRESS_ZSTD;
	so->level = (int)level;
	return 0;
}

int cli_opt_block_size(const char *cmd, const char *arg, struct pgc_save_opts *so)
{
	uint64_t bs;

	if (cli_parse_size(arg, &bs) || bs == 0 || bs % PGC_PAGE_SIZE || bs > (4u << 20))
		return cli_usage(cmd, "bad block size '%s' (a multiple of 4K up to 4M)", arg);
	so->block_size = (uint32_t)bs;
	return 0;
}

static bool aio_name_ok(const char *arg)
{
	static const char *const names[] = { "auto", "threads", "libaio", "uring" };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(arg, names[i]) == 0)
			return true;
	return false;
}

int cli_opt_aio(const char *cmd, const char *arg, const char **aio)
{
	if (!aio_name_ok(arg))
		return cli_usage(cmd, "bad aio backend '%s' (auto, threads, libaio, uring)", arg);
	*aio = arg;
	return 0;
}

/* $PGCKPT_AIO is the default of --aio: a bad value is the same usage error. */
static int check_aio_env(const char *cmd)
{
	const char *env = getenv("PGCKPT_AIO");

	if (!env || aio_name_ok(env))
		return 0;
	return cli_usage(cmd, "bad aio backend '%s' in PGCKPT_AIO (auto, threads, libaio, uring)",
			 env);
}

int cli_open_source(const char *cmd, const char *path, int *fd, struct stat *st)
{
	const char *what = NULL;
	int ret;

	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	*fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (*fd < 0)
		return cli_fail(cmd, path, -errno);
	if (fstat(*fd, st) != 0) {
		ret = cli_fail(cmd, path, -errno);
		goto fail;
	}
	if (S_ISDIR(st->st_mode))
		what = "a directory";
	else if (S_ISFIFO(st->st_mode))
		what = "a FIFO";
	else if (S_ISSOCK(st->st_mode))
		what = "a socket";
	else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		what = "a device";
	if (what || !S_ISREG(st->st_mode)) {
		cli_error(cmd, path, "not a regular file or memory file (%s)",
			  what ? what : "unknown type");
		ret = EXIT_IO;
		goto fail;
	}
	if ((uint64_t)st->st_size > PGC_MAX_FILE_SIZE) {
		cli_error(cmd, path, "%" PRIu64 " bytes: larger than the 128 TiB an image can hold",
			  (uint64_t)st->st_size);
		ret = EXIT_IO;
		goto fail;
	}
	if (fcntl(*fd, F_SETFL, 0) != 0) {
		ret = cli_fail(cmd, path, -errno);
		goto fail;
	}
	return EXIT_OK;
fail:
	close(*fd);
	*fd = -1;
	return ret;
}

void cli_human_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)n;
	unsigned u = 0;

	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", n);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
}

/* ---- signals --------------------------------------------------------------- */

/* Recursive: the setters below may be called with the lock held. */
static pthread_mutex_t cleanup_mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static char *cleanup_path;          /* temporary file to unlink */
static char *cleanup_parent;        /* directory of the image being saved */
static char *cleanup_prefix;        /* "NAME.tmp-" */
static char **cleanup_known;        /* temporary siblings that existed before */
static size_t cleanup_nknown;
static struct cli_progress *cleanup_bar;
static char *cleanup_stage;         /* s3img.c's private directory */
static void (*cleanup_fn)(void *);  /* cli_cleanup_call */
static void *cleanup_arg;

void cli_cleanup_lock(void)
{
	pthread_mutex_lock(&cleanup_mu);
}

void cli_cleanup_unlock(void)
{
	pthread_mutex_unlock(&cleanup_mu);
}

void cli_cleanup_file(const char *path)
{
	pthread_mutex_lock(&cleanup_mu);
	free(cleanup_path);
	cleanup_path = path ? strdup(path) : NULL;
	pthread_mutex_unlock(&cleanup_mu);
}

void cli_cleanup_call(void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&cleanup_mu);
	cleanup_fn = fn;
	cleanup_arg = arg;
	pthread_mutex_unlock(&cleanup_mu);
}

void cli_cleanup_stage(const char *dir)
{
	pthread_mutex_lock(&cleanup_mu);
	free(cleanup_stage);
	cleanup_stage = dir ? strdup(dir) : NULL;
	pthread_mutex_unlock(&cleanup_mu);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void cli_remove_tree(const char *dir)
{
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void cli_cleanup_progress(struct cli_progress *p)
{
	pthread_mutex_lock(&cleanup_mu);
	cleanup_bar = p;
	pthread_mutex_unlock(&cleanup_mu);
}

static void forget_image(void)
{
	size_t i;

	for (i = 0; i < cleanup_nknown; i++)
		free(cleanup_known[i]);
	free(cleanup_known);
	free(cleanup_parent);
	free(cleanup_prefix);
	cleanup_known = NULL;
	cleanup_nknown = 0;
	cleanup_parent = cleanup_prefix = NULL;
}

/* Split @path into its directory and "BASENAME.tmp-"; false if it has no name. */
static bool split_image_path(const char *path, char **parent, char **prefix)
{
	const char *slash, *base;
	size_t len = strlen(path);

	while (len > 1 && path[len - 1] == '/')
		len--;
	slash = memrchr(path, '/', len);
	base = slash ? slash + 1 : path;
	if (base == path + len)
		return false;
	if (!slash)
		*parent = strdup(".");
	else if (slash == path)
		*parent = strdup("/");
	else
		*parent = strndup(path, (size_t)(slash - path));
	if (asprintf(prefix, "%.*s.tmp-", (int)(path + len - base), base) < 0)
		*prefix = NULL;
	return *parent && *prefix;
}

void cli_cleanup_image(const char *path)
{
	struct dirent *de;
	char **known;
	DIR *dir;

	pthread_mutex_lock(&cleanup_mu);
	forget_image();
	if (!path || !split_image_path(path, &cleanup_parent, &cleanup_prefix))
		goto exit;
	dir = opendir(cleanup_parent);
	if (!dir)
		goto exit;
	while ((de = readdir(dir)) != NULL) {
		if (strncmp(de->d_name, cleanup_prefix, strlen(cleanup_prefix)) != 0)
			continue;
		known = realloc(cleanup_known, (cleanup_nknown + 1) * sizeof(*known));
		if (!known)
			break;
		cleanup_known = known;
		known[cleanup_nknown] = strdup(de->d_name);
		if (known[cleanup_nknown])
			cleanup_nknown++;
	}
	closedir(dir);
exit:
	if (path && !cleanup_prefix)
		forget_image();
	pthread_mutex_unlock(&cleanup_mu);
}

/* Remove the files in the temporary image directory @name, then it. */
static void remove_tmp_dir(int parent_fd, const char *name)
{
	struct dirent *de;
	DIR *dir;
	int fd;

	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	while ((de = readdir(dir)) != NULL)
		if (de->d_type == DT_REG)
			unlinkat(fd, de->d_name, 0);
	closedir(dir);
	unlinkat(parent_fd, name, AT_REMOVEDIR);
}

/* Remove the temporary siblings of the image that appeared after registration. */
static void remove_new_tmp_dirs(void)
{
	struct dirent *de;
	size_t i;
	DIR *dir;

	dir = opendir(cleanup_parent);
	if (!dir)
		return;
	while ((de = readdir(dir)) != NULL) {
		if (strncmp(de->d_name, cleanup_prefix, strlen(cleanup_prefix)) != 0 ||
		    de->d_type != DT_DIR)
			continue;
		for (i = 0; i < cleanup_nknown; i++)
			if (strcmp(de->d_name, cleanup_known[i]) == 0)
				break;
		if (i == cleanup_nknown)
			remove_tmp_dir(dirfd(dir), de->d_name);
	}
	closedir(dir);
}

static int drain_fd = -1;           /* cli_signal_drain */
static bool drained;

void cli_signal_drain(int fd)
{
	pthread_mutex_lock(&cleanup_mu);
	drain_fd = fd;
	pthread_mutex_unlock(&cleanup_mu);
}

/*
 * A source that shrinks under save's mapping raises SIGBUS on the thread
 * that reads past its new end. That thread cannot go on: it marks the
 * fault, hands it to the signal thread as SIGUSR1 and waits there for the
 * exit (kill is async-signal-safe; returning would fault again).
 */
static atomic_bool bus_seen;         /* lock-free: safe in a signal handler */
static const char *shrink_cmd, *shrink_src;
static int shrink_fd = -1;
static uint64_t shrink_size;

static void on_sigbus(int sig)
{
	(void)sig;
	atomic_store(&bus_seen, true);
	kill(getpid(), SIGUSR1);
	for (;;)
		pause();
}

int cli_catch_shrink(const char *cmd, const char *src, int fd, uint64_t size)
{
	struct sigaction sa = { .sa_handler = on_sigbus };

	pthread_mutex_lock(&cleanup_mu);
	shrink_cmd = cmd;
	shrink_src = src;
	shrink_fd = fd;
	shrink_size = size;
	pthread_mutex_unlock(&cleanup_mu);
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGBUS, &sa, NULL) ? -errno : 0;
}

/* Say that the source shrank (from the signal thread, cleanup_mu held). */
static void report_shrink(void)
{
	struct stat st;
	uint64_t now = fstat(shrink_fd, &st) == 0 ? (uint64_t)st.st_size : 0;

	cli_error(shrink_cmd, shrink_src, "the file shrank during the save (from %" PRIu64
		  " to %" PRIu64 " bytes); no image written", shrink_size, now);
}

static void *signal_main(void *arg)
{
	sigset_t *set = arg;
	int sig = 0;

	for (;;) {
		while (sigwait(set, &sig) != 0)
			;
		/* SIGUSR1 means something only as the SIGBUS hand-off above. */
		if (sig == SIGUSR1 && !atomic_load(&bus_seen))
			continue;
		/* Held until _exit: the main thread cannot start a rename meanwhile. */
		pthread_mutex_lock(&cleanup_mu);
		if (drain_fd < 0 || drained || atomic_load(&bus_seen))
			break;
		/* The first signal asks the command to finish; a second one stops it. */
		drained = true;
		if (write(drain_fd, &sig, sizeof(sig)) != (ssize_t)sizeof(sig))
			break;
		pthread_mutex_unlock(&cleanup_mu);
	}
	if (cleanup_bar)
		cli_progress_end(cleanup_bar);
	if (cleanup_path)
		unlink(cleanup_path);
	if (cleanup_prefix)
		remove_new_tmp_dirs();
	if (cleanup_stage)
		cli_remove_tree(cleanup_stage);
	if (cleanup_fn)
		cleanup_fn(cleanup_arg);
	if (atomic_load(&bus_seen)) {
		report_shrink();
		fflush(stderr);
		_exit(EXIT_IO);
	}
	fprintf(stderr, "pgckpt: interrupted by %s\n", strsignal(sig));
	fflush(stderr);
	_exit(128 + sig);
}

int cli_signals_start(void)
{
	static sigset_t set;
	pthread_attr_t attr;
	pthread_t tid;
	int ret;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);       /* cli_catch_shrink's hand-off */
	ret = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (ret)
		return -ret;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&tid, &attr, signal_main, &set);
	pthread_attr_destroy(&attr);
	if (ret) {
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
		return -ret;
	}
	return 0;
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	const struct command *c;
	int ret;

	if (argc < 2)
		return cli_usage(NULL, "no command given");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		const char *topic = argc > 2 && strcmp(argv[1], "help") == 0 ? argv[2] : NULL;

		if (topic && !find_command(topic))
			return cli_usage(NULL, "unknown command '%s'", topic);
		cli_help(topic);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("pgckpt %s\n", pgc_version_string());
		return EXIT_OK;
	}
	c = find_command(argv[1]);
	if (!c) {
		if (argv[1][0] == '-')
			return cli_usage(NULL, "unknown option '%s'", argv[1]);
		return cli_usage(NULL, "unknown command '%s'", argv[1]);
	}
	if (c->uses_aio && check_aio_env(c->name))
		return EXIT_USAGE;
	ret = cli_signals_start();
	if (ret) {
		cli_error(c->name, NULL, "cannot start the signal thread: %s",
			  pgc_strerror(ret));
		return EXIT_IO;
	}
	/* The subcommand sees argv[0] = its own name; an s3:// IMAGE goes
	 * through a local copy (s3img.c). */
	ret = cli_s3_run(c->name, c->fn, argc - 1, argv + 1);
	if (fflush(stdout) != 0 && ret == EXIT_OK) {
		cli_error(c->name, NULL, "write error: %s", strerror(errno));
		ret = EXIT_IO;
	}
	return ret;
}
