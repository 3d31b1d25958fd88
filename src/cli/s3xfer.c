/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3xfer.c - moving one image directory between S3 and the stage of
 * cli_s3_run (s3img.c). Fetching: memfile.img and pagemap.img whole,
 * then pages.img downloaded whole by ranged GETs (checked afterwards not
 * to have changed), or left remote: a sparse placeholder of its size
 * (the image's size checks run on it; nothing reads its bytes), with, for
 * restores, a layer of the pages source (s3src.c) and its cache.
 * Uploading: memfile.img deleted first (no image while the objects are
 * replaced), pages.img by multipart upload, pagemap.img, and memfile.img
 * last, as the commit point; a failed upload aborts, and so does SIGINT
 * or SIGTERM, from the signal thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "s3img.h"

#define SMALL_MAX (64u << 20)         /* memfile.img, pagemap.img */

int s3x_fail(struct s3img *m, int err)
{
	cli_error(m->cmd, m->url, "%s (%s)", s3_last_error(m->s)[0] ? s3_last_error(m->s)
				   : strerror(-err), strerror(-err));
	return EXIT_IO;
}

/* "PREFIX/NAME" (or "NAME" for an empty prefix) into @key. */
static void object_key(const struct s3where *w, const char *name, char *key, size_t len)
{
	snprintf(key, len, "%s%s%s", w->prefix, w->prefix[0] ? "/" : "", name);
}

/*
 * How fetching one object ended, reported by report() (on the main
 * thread: a fetch may run on a thread of its own, which prints nothing).
 */
struct got {
	enum { GOT_OK, GOT_S3, GOT_FILE, GOT_TOO_BIG, GOT_CHANGED } how;
	int err;                      /* -errno, GOT_S3 and GOT_FILE */
	char text[512];               /* GOT_S3: the request that failed */
	char path[5500];              /* GOT_FILE */
	uint64_t size;                /* the object's */
};

static void got_s3(struct got *g, struct s3_client *s, int err)
{
	g->how = GOT_S3;
	g->err = err;
	snprintf(g->text, sizeof(g->text), "%s", s3_last_error(s));
}

/* Report @g (of object NAME of @w). Returns its exit status. */
static int report(struct s3img *m, const struct s3where *w, const char *name,
		  const struct got *g)
{
	switch (g->how) {
	case GOT_OK:
		return EXIT_OK;
	case GOT_S3:
		cli_error(m->cmd, m->url, "%s (%s)", g->text[0] ? g->text : strerror(-g->err),
			  strerror(-g->err));
		return EXIT_IO;
	case GOT_FILE:
		return cli_fail(m->cmd, g->path, g->err);
	case GOT_TOO_BIG:
		cli_error(m->cmd, w->url, "%s is %" PRIu64 " bytes: not a pgckpt image", name,
			  g->size);
		return EXIT_IMAGE;
	default:
		cli_error(m->cmd, w->url, "%s changed while it was read; try again", name);
		return EXIT_IO;
	}
}

/*
 * Fetch object NAME of @w into @w->dir/NAME through @s, @buf (S3IMG_PART
 * bytes), with no HEAD: the first GET says its size and ETag, and the
 * rest is asked for with If-Match on that ETag, so an object replaced
 * meanwhile is refused, never mixed in. A @small one (memfile.img,
 * pagemap.img) may have SMALL_MAX bytes. Prints nothing.
 */
static void fetch(struct s3_client *s, unsigned char *buf, const struct s3where *w,
		  const char *name, bool small, struct got *g)
{
	char key[1100], etag[S3_ETAG_MAX];
	uint64_t off;
	size_t n;
	int fd, ret;

	memset(g, 0, sizeof(*g));
	object_key(w, name, key, sizeof(key));
	ret = s3_get_first(s, w->bucket, key, buf, S3IMG_PART, &n, &g->size, etag);
	if (ret)
		return got_s3(g, s, ret);
	if (small && g->size > SMALL_MAX) {
		g->how = GOT_TOO_BIG;
		return;
	}
	snprintf(g->path, sizeof(g->path), "%s/%s", w->dir, name);
	fd = open(g->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		g->how = GOT_FILE;
		g->err = -errno;
		return;
	}
	for (off = 0;;) {
		ret = cli_pwrite_full(fd, buf, n, (off_t)off);
		if (ret) {
			g->how = GOT_FILE;
			g->err = ret;
			break;
		}
		off += n;
		if (off == g->size)
			break;
		n = g->size - off < S3IMG_PART ? (size_t)(g->size - off) : S3IMG_PART;
		ret = s3_get_range_if(s, w->bucket, key, etag, off, buf, n);
		if (ret == -ESTALE) {
			g->how = GOT_CHANGED;
			break;
		}
		if (ret) {
			got_s3(g, s, ret);
			break;
		}
	}
	if (close(fd) && g->how == GOT_OK) {
		g->how = GOT_FILE;
		g->err = -errno;
	}
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
static int image_id(struct s3img *m, const struct s3where *w, const char *key,
		    const char *etag, uint64_t size, char *id, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	char path[5500];
	unsigned char *buf;
	ssize_t n;
	int fd;

	h = fnv1a(h, w->bucket, strlen(w->bucket) + 1);
	h = fnv1a(h, key, strlen(key) + 1);
	h = fnv1a(h, etag, strlen(etag) + 1);
	h = fnv1a(h, &size, sizeof(size));
	snprintf(path, sizeof(path), "%s/memfile.img", w->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	buf = m->buf;   /* S3IMG_PART; memfile.img may be larger: hashed in pieces */
	while ((n = read(fd, buf, S3IMG_PART)) > 0)
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
static int stay_remote(struct s3img *m, const struct s3where *w, bool with_source,
		       uint64_t size, const char *etag)
{
	char key[1100], path[5500];
	int fd, ret;

	object_key(w, "pages.img", key, sizeof(key));
	snprintf(path, sizeof(path), "%s/pages.img", w->dir);
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
	ret = m->src ? 0 : cli_s3src_new(&m->cfg, w->bucket, &m->src);
	if (!ret)
		ret = cli_s3src_add(m->src, key, etag, size);
	if (ret)
		return cli_fail(m->cmd, NULL, ret);
	if (!m->cache_dir)
		return EXIT_OK;
	ret = image_id(m, w, key, etag, size, path, sizeof(path));
	if (!ret)
		ret = cli_s3src_cache(m->src, m->cache_dir, path);
	if (ret == -EPERM || ret == -ELOOP) {
		cli_error(m->cmd, m->cache_dir, "refusing a cache directory (or file in it) "
			  "that is a symlink, or not this user's alone (owner, mode 0700)");
		return EXIT_IO;
	}
	return ret ? cli_fail(m->cmd, m->cache_dir, ret) : EXIT_OK;
}

/* What the helper thread of s3x_fetch does beside memfile.img. */
struct side {
	struct s3img *m;
	const struct s3where *w;
	bool head_pages;              /* then pages.img's size and ETag */
	struct got pagemap, pages;
	char etag[S3_ETAG_MAX];
};

static void *side_run(void *arg)
{
	struct side *d = arg;
	char key[1100];
	int ret;

	fetch(d->m->s2, d->m->buf2, d->w, "pagemap.img", true, &d->pagemap);
	if (d->pagemap.how != GOT_OK || !d->head_pages)
		return NULL;
	object_key(d->w, "pages.img", key, sizeof(key));
	ret = s3_head(d->m->s2, d->w->bucket, key, &d->pages.size, d->etag);
	if (ret)
		got_s3(&d->pages, d->m->s2, ret);
	return NULL;
}

int s3x_fetch(struct s3img *m, const struct s3where *w, enum s3_pages pages)
{
	struct side d = { .m = m, .w = w, .head_pages = pages != S3_PAGES_WHOLE };
	struct got g;
	pthread_t t;
	bool threaded;
	int ret;

	if (mkdir(w->dir, 0700))
		return cli_fail(m->cmd, w->dir, -errno);
	/*
	 * memfile.img, and beside it, on a thread and client of their own,
	 * pagemap.img and pages.img's HEAD: one round trip, not three. The
	 * memfile.img names the pages.img it goes with (pages_bytes, every
	 * block's checksum), and every GET of pages.img carries If-Match on
	 * the ETag seen here, so a replaced image is never mixed in.
	 */
	if (!m->s2 && s3_client_new(&m->cfg, &m->s2))
		return cli_fail(m->cmd, NULL, -ENOMEM);
	if (!m->buf2 && !(m->buf2 = malloc(S3IMG_PART)))
		return cli_fail(m->cmd, NULL, -ENOMEM);
	threaded = pthread_create(&t, NULL, side_run, &d) == 0;
	if (!threaded)
		side_run(&d);          /* no thread: one after the other */
	fetch(m->s, m->buf, w, "memfile.img", true, &g);
	if (threaded)
		pthread_join(t, NULL);
	ret = report(m, w, "memfile.img", &g);
	if (!ret)
		ret = report(m, w, "pagemap.img", &d.pagemap);
	if (!ret)
		ret = report(m, w, "pages.img", &d.pages);
	if (ret)
		return ret;
	if (pages == S3_PAGES_WHOLE) {
		fetch(m->s, m->buf, w, "pages.img", false, &g);
		return report(m, w, "pages.img", &g);
	}
	return stay_remote(m, w, pages == S3_PAGES_SOURCE, d.pages.size, d.etag);
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
		ret = s3_abort_upload(s, m->up_bucket, m->up_key, m->up_id);
	if (ret)
		cli_error(m->cmd, m->url, "could not abort the multipart upload of %s: %s "
			  "(ListMultipartUploads shows it)", m->up_key,
			  s && s3_last_error(s)[0] ? s3_last_error(s) : strerror(-ret));
	s3_client_free(s);
	memset(&c, 0, sizeof(c));
}

/* Start the multipart upload of @key, registered for abort_on_signal. */
static int upload_begin(struct s3img *m, const struct s3where *w, const char *key,
			struct s3_upload **u)
{
	int ret;

	/* No signal between the upload's start and its registration. */
	cli_cleanup_lock();
	ret = s3_upload_begin(m->s, w->bucket, key, u);
	if (!ret) {
		snprintf(m->up_bucket, sizeof(m->up_bucket), "%s", w->bucket);
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

/* Upload @w->dir/NAME: multipart for pages.img, one PUT for the others. */
static int push(struct s3img *m, const struct s3where *w, const char *name, bool multipart)
{
	struct s3_upload *u = NULL;
	char key[1100], path[5500];
	struct stat st;
	uint64_t off;
	int fd, ret = 0;

	object_key(w, name, key, sizeof(key));
	snprintf(path, sizeof(path), "%s/%s", w->dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st)) {
		ret = cli_fail(m->cmd, path, -errno);
		goto out;
	}
	if (!multipart) {
		if (st.st_size > (off_t)S3IMG_PART) {
			cli_error(m->cmd, path, "too large for one PUT");
			ret = EXIT_IO;
			goto out;
		}
		ret = cli_pread_full(fd, m->buf, (size_t)st.st_size, 0);
		if (ret) {
			ret = cli_fail(m->cmd, path, ret);
			goto out;
		}
		ret = s3_put(m->s, w->bucket, key, m->buf, (size_t)st.st_size, NULL);
		if (ret)
			ret = s3x_fail(m, ret);
		goto out;
	}
	ret = upload_begin(m, w, key, &u);
	if (ret) {
		ret = s3x_fail(m, ret);
		goto out;
	}
	off = 0;
	do {
		size_t n = (uint64_t)st.st_size - off < S3IMG_PART ? (size_t)((uint64_t)st.st_size - off)
								 : S3IMG_PART;

		ret = cli_pread_full(fd, m->buf, n, (off_t)off);
		if (ret) {
			upload_end(u, true);
			ret = cli_fail(m->cmd, path, ret);
			goto out;
		}
		ret = s3_upload_part(u, m->buf, n);
		if (ret) {
			ret = s3x_fail(m, ret);
			upload_end(u, true);
			goto out;
		}
		off += n;
	} while (off < (uint64_t)st.st_size);
	ret = upload_end(u, false);
	if (ret)
		ret = s3x_fail(m, ret);
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

int s3x_upload(struct s3img *m, const struct s3where *w)
{
	char key[1100];
	int ret;

	/* No image while the objects are replaced: memfile.img goes first. */
	object_key(w, "memfile.img", key, sizeof(key));
	ret = s3_delete(m->s, w->bucket, key);
	if (ret)
		return s3x_fail(m, ret);
	ret = push(m, w, "pages.img", true);
	if (!ret)
		ret = push(m, w, "pagemap.img", false);
	if (!ret)
		ret = push(m, w, "memfile.img", false); /* the commit point */
	return ret;
}

