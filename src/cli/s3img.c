/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3img.c - images at s3://BUCKET/PREFIX for the commands that take an
 * IMAGE (docs/s3.md), through one narrow seam: the command runs as usual
 * on a local copy in a private temporary directory, and this file moves
 * that copy. save writes the image locally, then uploads pages.img by
 * multipart upload, pagemap.img, and memfile.img last, as the commit point
 * (the old memfile.img is deleted first, so a reader never pairs it with
 * the new pages.img; a failed upload aborts and leaves no image). Readers
 * fetch memfile.img and pagemap.img whole. restore (eager or lazy) reads
 * pages.img by range as the loader needs it (s3src.c), through a sparse
 * placeholder of its size in the local copy; inspect needs only the
 * placeholder; verify and export, which read every byte anyway, fetch it
 * whole by ranged GETs and check that it did not change meanwhile. The
 * image's own checksums check every byte.
 * S3 failures exit 2 with the request that failed; a bad image exits 3.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "s3src.h"

#define PART_SIZE (16u << 20)         /* multipart part and ranged GET size */
#define SMALL_MAX (64u << 20)         /* memfile.img, pagemap.img */
/*
 * Restores from S3: the fill's GETs in flight (the loader's workers) and
 * the most bytes of neighbouring blocks it asks for in one GET. Eager
 * restores want throughput; lazy ones a small window, since a demand GET
 * queues at the server behind the fill's (docs/s3.md, "Reads").
 */
#define S3_JOBS 4
#define S3_FILL_READ (8u << 20)
#define S3_LAZY_JOBS 2
#define S3_LAZY_FILL_READ (4u << 20)

struct s3img {
	const char *cmd, *url;
	char bucket[64], prefix[1024];
	struct s3_client *s;
	char stage[4096];                 /* the private temporary directory */
	char local[4200];                 /* stage/img: the local image */
	unsigned char *buf;               /* PART_SIZE */
	struct s3_config cfg;             /* for the pages source's clients */
	struct cli_s3src *src;            /* restore: pages.img by range */
	char up_key[1100], up_id[512];    /* save: the multipart upload in progress */
	const char *cache_dir;            /* restore --cache-dir, or NULL */
};

/* The local copy being used and the URL it stands for (cli_image_name). */
static const char *shown_local, *shown_url;
static char shown_buf[4400];
/* The pages source of shown_local's pages.img (restore), or NULL. */
static struct cli_s3src *shown_src;

void cli_s3_load_opts(const char *img, struct pgc_load_opts *lo)
{
	if (!shown_src || !img || !shown_local || strcmp(img, shown_local) != 0)
		return;
	lo->pages_source = cli_s3src_ops(shown_src);
	if (!lo->jobs)
		lo->jobs = lo->background ? S3_LAZY_JOBS : S3_JOBS;
	lo->max_read = lo->background ? S3_LAZY_FILL_READ : S3_FILL_READ;
}

const char *cli_image_name(const char *path)
{
	size_t n;

	if (!path || !shown_local)
		return path;
	n = strlen(shown_local);
	if (strncmp(path, shown_local, n) != 0 || (path[n] && path[n] != '/'))
		return path;
	if (!path[n])
		return shown_url;
	snprintf(shown_buf, sizeof(shown_buf), "%s%s", shown_url, path + n);
	return shown_buf;
}

static const char *env_lookup(const char *name)
{
	return getenv(name);
}

static int s3_fail(struct s3img *m, int err)
{
	cli_error(m->cmd, m->url, "%s (%s)", s3_last_error(m->s)[0] ? s3_last_error(m->s)
				   : strerror(-err), strerror(-err));
	return EXIT_IO;
}

/* "PREFIX/NAME" (or "NAME" for an empty prefix) into @key. */
static void object_key(const struct s3img *m, const char *name, char *key, size_t len)
{
	snprintf(key, len, "%s%s%s", m->prefix, m->prefix[0] ? "/" : "", name);
}

static int full_write(int fd, const void *p, size_t n, off_t off)
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

static int full_read(int fd, void *p, size_t n, off_t off)
{
	while (n) {
		ssize_t r = pread(fd, p, n, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO; /* the file shrank */
		p = (char *)p + r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

/* Fetch object NAME into stage/img/NAME; @etag (may be NULL) gets its ETag. */
static int fetch(struct s3img *m, const char *name, bool small, char etag[S3_ETAG_MAX])
{
	char key[1100], path[4300], now[S3_ETAG_MAX];
	uint64_t size, off;
	int fd, ret;

	object_key(m, name, key, sizeof(key));
	ret = s3_head(m->s, m->bucket, key, &size, etag);
	if (ret)
		return s3_fail(m, ret);
	if (small && size > SMALL_MAX) {
		cli_error(m->cmd, m->url, "%s is %" PRIu64 " bytes: not a pgckpt image", name, size);
		return EXIT_IMAGE;
	}
	snprintf(path, sizeof(path), "%s/%s", m->local, name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return cli_fail(m->cmd, path, -errno);
	for (off = 0; off < size; off += PART_SIZE) {
		size_t n = size - off < PART_SIZE ? (size_t)(size - off) : PART_SIZE;

		ret = s3_get_range(m->s, m->bucket, key, off, m->buf, n);
		if (ret) {
			close(fd);
			return s3_fail(m, ret);
		}
		ret = full_write(fd, m->buf, n, (off_t)off);
		if (ret) {
			close(fd);
			return cli_fail(m->cmd, path, ret);
		}
	}
	if (close(fd))
		return cli_fail(m->cmd, path, -errno);
	/* The same object from the first byte to the last. */
	if (etag && etag[0]) {
		ret = s3_head(m->s, m->bucket, key, &off, now);
		if (ret)
			return s3_fail(m, ret);
		if (strcmp(now, etag) || off != size) {
			cli_error(m->cmd, m->url, "%s changed while it was read; try again", name);
			return EXIT_IO;
		}
	}
	return EXIT_OK;
}

/* FNV-1a 64 of @len bytes at @p, continuing from @h. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t len)
{
	const unsigned char *b = p;

	while (len--)
		h = (h ^ *b++) * 0x100000001b3ull;
	return h;
}

/*
 * The cache's name for the image: a hash of pages.img's URL, ETag and
 * size and of memfile.img's bytes (which name its pages.img: index,
 * checksums, identity), so a replaced image never meets the old blocks.
 */
static int image_id(struct s3img *m, const char *key, const char *etag, uint64_t size,
		    char *id, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	char path[4300];
	unsigned char *buf;
	ssize_t n;
	int fd;

	h = fnv1a(h, m->bucket, strlen(m->bucket) + 1);
	h = fnv1a(h, key, strlen(key) + 1);
	h = fnv1a(h, etag, strlen(etag) + 1);
	h = fnv1a(h, &size, sizeof(size));
	snprintf(path, sizeof(path), "%s/memfile.img", m->local);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	buf = m->buf;   /* PART_SIZE; memfile.img may be larger: hashed in pieces */
	while ((n = read(fd, buf, PART_SIZE)) > 0)
		h = fnv1a(h, buf, (size_t)n);
	close(fd);
	if (n < 0)
		return -errno;
	snprintf(id, len, "%016" PRIx64, h);
	return 0;
}

/*
 * pages.img stays remote: a sparse placeholder of its size in the local
 * copy (the image's size checks run on it; nothing reads its bytes) and,
 * for @with_source, the source the loader reads it from.
 */
static int stay_remote(struct s3img *m, bool with_source)
{
	char key[1100], path[4300], etag[S3_ETAG_MAX];
	uint64_t size;
	int fd, ret;

	object_key(m, "pages.img", key, sizeof(key));
	ret = s3_head(m->s, m->bucket, key, &size, etag);
	if (ret)
		return s3_fail(m, ret);
	snprintf(path, sizeof(path), "%s/pages.img", m->local);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return cli_fail(m->cmd, path, -errno);
	ret = size > INT64_MAX || ftruncate(fd, (off_t)size) ? -EFBIG : 0;
	if (close(fd) && !ret)
		ret = -errno;
	if (ret)
		return cli_fail(m->cmd, path, ret);
	if (!with_source)
		return EXIT_OK;
	ret = cli_s3src_new(&m->cfg, m->bucket, key, etag, size, &m->src);
	if (ret)
		return cli_fail(m->cmd, NULL, ret);
	if (!m->cache_dir)
		return EXIT_OK;
	ret = image_id(m, key, etag, size, path, sizeof(path));
	if (!ret)
		ret = cli_s3src_cache(m->src, m->cache_dir, path);
	if (ret == -EPERM || ret == -ELOOP) {
		cli_error(m->cmd, m->cache_dir, "refusing a cache directory (or file in it) "
			  "that is a symlink, or not this user's alone (owner, mode 0700)");
		return EXIT_IO;
	}
	return ret ? cli_fail(m->cmd, m->cache_dir, ret) : EXIT_OK;
}

static int download(struct s3img *m)
{
	char etag[S3_ETAG_MAX];
	int ret;

	if (mkdir(m->local, 0700))
		return cli_fail(m->cmd, m->local, -errno);
	/* memfile.img first: it names the pages.img it goes with (pages_bytes,
	 * checked with every block's checksum when the image is read). */
	ret = fetch(m, "memfile.img", true, NULL);
	if (!ret)
		ret = fetch(m, "pagemap.img", true, NULL);
	if (ret)
		return ret;
	if (strcmp(m->cmd, "restore") == 0 || strcmp(m->cmd, "inspect") == 0)
		return stay_remote(m, strcmp(m->cmd, "restore") == 0);
	return fetch(m, "pages.img", false, etag);
}

/*
 * On SIGINT or SIGTERM during a multipart upload (from the signal thread,
 * just before the exit): abort it from a client of its own, so that no
 * parts stay behind. The main thread's request in flight dies with the
 * process; a part arriving after the abort is refused.
 */
static void abort_on_signal(void *arg)
{
	struct s3img *m = arg;
	struct s3_config c = m->cfg;
	struct s3_client *s = NULL;
	int ret;

	c.retries = 1;
	if (c.timeout_ms > 5000)
		c.timeout_ms = 5000;
	ret = s3_client_new(&c, &s);
	if (!ret)
		ret = s3_abort_upload(s, m->bucket, m->up_key, m->up_id);
	if (ret)
		cli_error(m->cmd, m->url, "could not abort the multipart upload of %s: %s "
			  "(ListMultipartUploads shows it)", m->up_key,
			  s && s3_last_error(s)[0] ? s3_last_error(s) : strerror(-ret));
	s3_client_free(s);
	memset(&c, 0, sizeof(c));
}

/* Start the multipart upload of @key, registered for abort_on_signal. */
static int upload_begin(struct s3img *m, const char *key, struct s3_upload **u)
{
	int ret;

	/* No signal between the upload's start and its registration. */
	cli_cleanup_lock();
	ret = s3_upload_begin(m->s, m->bucket, key, u);
	if (!ret) {
		snprintf(m->up_key, sizeof(m->up_key), "%s", key);
		snprintf(m->up_id, sizeof(m->up_id), "%s", s3_upload_id(*u));
		cli_cleanup_call(abort_on_signal, m);
	}
	cli_cleanup_unlock();
	return ret;
}

/* End @u: complete it, or with @abort abort it; a signal no longer aborts it. */
static int upload_end(struct s3_upload *u, bool abort)
{
	int ret;

	cli_cleanup_lock();
	ret = abort ? s3_upload_abort(u) : s3_upload_complete(u, NULL); /* aborts on failure */
	cli_cleanup_call(NULL, NULL);
	cli_cleanup_unlock();
	return ret;
}

/* Upload stage/img/NAME: multipart for pages.img, one PUT for the others. */
static int push(struct s3img *m, const char *name, bool multipart)
{
	struct s3_upload *u = NULL;
	char key[1100], path[4300];
	struct stat st;
	uint64_t off;
	int fd, ret = 0;

	object_key(m, name, key, sizeof(key));
	snprintf(path, sizeof(path), "%s/%s", m->local, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st)) {
		ret = cli_fail(m->cmd, path, -errno);
		goto out;
	}
	if (!multipart) {
		if (st.st_size > (off_t)PART_SIZE) {
			cli_error(m->cmd, path, "too large for one PUT");
			ret = EXIT_IO;
			goto out;
		}
		ret = full_read(fd, m->buf, (size_t)st.st_size, 0);
		if (ret) {
			ret = cli_fail(m->cmd, path, ret);
			goto out;
		}
		ret = s3_put(m->s, m->bucket, key, m->buf, (size_t)st.st_size, NULL);
		if (ret)
			ret = s3_fail(m, ret);
		goto out;
	}
	ret = upload_begin(m, key, &u);
	if (ret) {
		ret = s3_fail(m, ret);
		goto out;
	}
	off = 0;
	do {
		size_t n = (uint64_t)st.st_size - off < PART_SIZE ? (size_t)((uint64_t)st.st_size - off)
								 : PART_SIZE;

		ret = full_read(fd, m->buf, n, (off_t)off);
		if (ret) {
			upload_end(u, true);
			ret = cli_fail(m->cmd, path, ret);
			goto out;
		}
		ret = s3_upload_part(u, m->buf, n);
		if (ret) {
			ret = s3_fail(m, ret);
			upload_end(u, true);
			goto out;
		}
		off += n;
	} while (off < (uint64_t)st.st_size);
	ret = upload_end(u, false);
	if (ret)
		ret = s3_fail(m, ret);
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

static int upload(struct s3img *m)
{
	char key[1100];
	int ret;

	/* No image while the objects are replaced: memfile.img goes first. */
	object_key(m, "memfile.img", key, sizeof(key));
	ret = s3_delete(m->s, m->bucket, key);
	if (ret)
		return s3_fail(m, ret);
	ret = push(m, "pages.img", true);
	if (!ret)
		ret = push(m, "pagemap.img", false);
	if (!ret)
		ret = push(m, "memfile.img", false); /* the commit point */
	return ret;
}

/* The index of the one s3:// argument of @argv, -1 for none, -2 for two. */
static int find_url(int argc, char **argv)
{
	int i, at = -1;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strncmp(argv[i], "s3://", 5) == 0) {
			if (at >= 0)
				return -2;
			at = i;
		}
	}
	return at;
}

/*
 * Take --cache-dir DIR (or --cache-dir=DIR) out of @argv (before any
 * "--"), into *@dir. Returns the new argc, or -1 for one without DIR.
 */
static int take_cache_dir(int argc, char **argv, const char **dir)
{
	int i, n;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strncmp(argv[i], "--cache-dir", 11) != 0 || (argv[i][11] && argv[i][11] != '='))
			continue;
		n = argv[i][11] ? 1 : 2;
		if (i + n > argc || (n == 1 && !argv[i][12]))
			return -1;
		*dir = n == 1 ? argv[i] + 12 : argv[i + 1];
		memmove(argv + i, argv + i + n, (size_t)(argc - i - n + 1) * sizeof(*argv));
		argc -= n;
		i--;
	}
	return argc;
}

/* Whether @argv asks for an incremental save (--parent P or --parent=P). */
static bool wants_parent(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strncmp(argv[i], "--parent", 8) == 0 && (!argv[i][8] || argv[i][8] == '='))
			return true;
	return false;
}

static int setup(struct s3img *m)
{
	char err[256];
	const char *tmp = getenv("TMPDIR");
	int ret = s3_parse_url(m->url, m->bucket, sizeof(m->bucket), m->prefix, sizeof(m->prefix));

	if (ret != 1)
		return cli_usage(m->cmd, "'%s' is not s3://BUCKET/PREFIX (a bucket name is 3 to "
				 "63 of a-z 0-9 . -)", m->url);
	ret = s3_config_load(&m->cfg, env_lookup, err, sizeof(err));
	if (ret) {
		cli_error(m->cmd, m->url, "%s", err);
		return EXIT_IO;
	}
	ret = s3_client_new(&m->cfg, &m->s);
	m->buf = malloc(PART_SIZE);
	if (ret || !m->buf)
		return cli_fail(m->cmd, NULL, -ENOMEM);
	snprintf(m->stage, sizeof(m->stage), "%s/pgckpt-s3.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	cli_cleanup_lock(); /* no signal between the mkdtemp and its registration */
	if (!mkdtemp(m->stage)) {
		cli_cleanup_unlock();
		ret = -errno;
		m->stage[0] = '\0';
		return cli_fail(m->cmd, tmp && *tmp ? tmp : "/tmp", ret);
	}
	cli_cleanup_stage(m->stage);
	cli_cleanup_unlock();
	snprintf(m->local, sizeof(m->local), "%s/img", m->stage);
	return EXIT_OK;
}

int cli_s3_run(const char *cmd, int (*fn)(int, char **), int argc, char **argv)
{
	struct s3img m = { .cmd = cmd };
	bool save = strcmp(cmd, "save") == 0;
	int at, ret;

	argc = take_cache_dir(argc, argv, &m.cache_dir);
	if (argc < 0)
		return cli_usage(cmd, "option '--cache-dir' needs an argument");
	at = find_url(argc, argv);
	if (m.cache_dir && (at < 0 || strcmp(cmd, "restore") != 0))
		return cli_usage(cmd, "--cache-dir applies to restores of s3:// images only");
	if (at == -1)
		return fn(argc, argv);
	if (at == -2)
		return cli_usage(cmd, "only one s3:// argument, the IMAGE");
	if (strcmp(cmd, "bench") == 0 || (save && at != argc - 1))
		return cli_usage(cmd, "only the IMAGE may be s3://BUCKET/PREFIX");
	/* A chain names its parent by a local path: not across S3 yet. */
	if (strcmp(cmd, "flatten") == 0 || (save && wants_parent(argc, argv)))
		return cli_usage(cmd, "incremental images (--parent, flatten) are not "
				 "supported on s3:// yet (docs/s3.md)");
	m.url = argv[at];
	ret = setup(&m);
	if (ret)
		goto out;
	if (!save) {
		ret = download(&m);
		if (ret)
			goto out;
	}
	argv[at] = m.local;
	shown_local = m.local;
	shown_url = m.url;
	shown_src = m.src;
	ret = fn(argc, argv);
	shown_local = shown_url = NULL;
	shown_src = NULL;
	argv[at] = (char *)m.url;
	/* What a failed range GET said, beside the load's error. */
	if (ret && m.src && cli_s3src_error(m.src)[0])
		cli_error(cmd, m.url, "%s", cli_s3src_error(m.src));
	if (save && ret == EXIT_OK)
		ret = upload(&m);
out:
	if (m.stage[0]) {
		cli_remove_tree(m.stage);
		cli_cleanup_stage(NULL);
	}
	cli_s3src_free(m.src);
	s3_client_free(m.s);
	memset(&m.cfg, 0, sizeof(m.cfg));   /* the secrets */
	free(m.buf);
	return ret;
}
