/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3cache.c - the local cache of an s3:// image's pages.img (restore
 * --cache-dir DIR): blocks the loader has verified are kept in a sparse
 * copy, DIR/ID.pages, at their own offsets, and DIR/ID.idx lists the
 * byte ranges it holds. ID names the image (s3img.c hashes the object's
 * URL, ETag and size with memfile.img's bytes), so a replaced image never
 * meets another's blocks. A read that the cache covers whole is served
 * from it; anything else goes to S3. Cached bytes are checked again by
 * the loader like any others.
 *
 * Safety: DIR must be a directory (not a symlink) owned by this user and
 * writable by no one else; it is made 0700 when missing. The files are
 * opened with O_NOFOLLOW and must be regular, ours and singly linked.
 * The index is replaced atomically (written beside, fsynced, renamed)
 * after the data it lists was fsynced, so a crash leaves at worst ranges
 * unlisted, never listed ranges without their bytes. Two restores sharing
 * an image's cache write the same bytes; the last index written wins.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "s3cache.h"

#define IDX_MAGIC "PGCKPTC1"
#define IDX_MAX (16u << 20)          /* bytes of index accepted */

struct cli_s3cache {
	int dirfd, fd;                   /* DIR, ID.pages */
	char id[80];
	uint64_t size;                   /* of pages.img */
	pthread_mutex_t mu;
	uint64_t (*ext)[2];              /* sorted, disjoint, merged [start, end) (under mu) */
	size_t next, cap;
	bool dirty;                      /* ranges added since the index was read */
};

/* Open DIR (made 0700 when missing), refusing one another user could change. */
static int open_dir(const char *dir)
{
	struct stat st;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT) {
		if (mkdir(dir, 0700) && errno != EEXIST)
			return -errno;
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0)
		return errno == ENOTDIR ? -ELOOP : -errno;
	if (fstat(fd, &st) || st.st_uid != geteuid() || (st.st_mode & 022)) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/* Open DIR/NAME for @flags, refusing anything but a regular file of ours with one link. */
static int open_file(int dirfd, const char *name, int flags)
{
	struct stat st;
	int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    st.st_nlink != 1) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/* Add [start, end) to the ranges, merging. Caller holds mu. Returns 0 or -ENOMEM. */
static int ext_add_locked(struct cli_s3cache *c, uint64_t start, uint64_t end)
{
	size_t i = 0, j;

	while (i < c->next && c->ext[i][1] < start)
		i++;
	/* Ranges i .. j-1 touch [start, end): they merge into one. */
	for (j = i; j < c->next && c->ext[j][0] <= end; j++) {
		start = c->ext[j][0] < start ? c->ext[j][0] : start;
		end = c->ext[j][1] > end ? c->ext[j][1] : end;
	}
	if (j == i) {
		if (c->next == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 64;
			void *n = realloc(c->ext, cap * sizeof(*c->ext));

			if (!n)
				return -ENOMEM;
			c->ext = n;
			c->cap = cap;
		}
		memmove(c->ext + i + 1, c->ext + i, (c->next - i) * sizeof(*c->ext));
		c->next++;
	} else if (j > i + 1) {
		memmove(c->ext + i + 1, c->ext + j, (c->next - j) * sizeof(*c->ext));
		c->next -= j - i - 1;
	}
	c->ext[i][0] = start;
	c->ext[i][1] = end;
	return 0;
}

/* Whether [off, off + len) is held whole. Caller holds mu. */
static bool ext_covers_locked(const struct cli_s3cache *c, uint64_t off, uint64_t len)
{
	size_t lo = 0, hi = c->next;

	while (lo < hi) {   /* the first range ending after off */
		size_t mid = lo + (hi - lo) / 2;

		if (c->ext[mid][1] <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->next && c->ext[lo][0] <= off && c->ext[lo][1] >= off + len;
}

/* Read DIR/ID.idx (missing, damaged or of another size: an empty cache). */
static void idx_load(struct cli_s3cache *c)
{
	char name[100];
	uint8_t *buf = NULL;
	struct stat st;
	uint64_t v[2];
	size_t i;
	int fd;

	snprintf(name, sizeof(name), "%s.idx", c->id);
	fd = open_file(c->dirfd, name, O_RDONLY);
	if (fd < 0)
		return;
	if (fstat(fd, &st) || st.st_size < 16 || st.st_size > IDX_MAX || (st.st_size - 16) % 16)
		goto out;
	buf = malloc((size_t)st.st_size);
	if (!buf || pread(fd, buf, (size_t)st.st_size, 0) != st.st_size)
		goto out;
	memcpy(v, buf + 8, 8);
	if (memcmp(buf, IDX_MAGIC, 8) || v[0] != c->size)
		goto out;
	for (i = 16; i < (size_t)st.st_size; i += 16) {
		memcpy(v, buf + i, 16);
		if (v[0] >= v[1] || v[1] > c->size || ext_add_locked(c, v[0], v[1]))
			break;
	}
	if (i < (size_t)st.st_size)
		c->next = 0;   /* damaged: trust none of it */
out:
	free(buf);
	close(fd);
}

int cli_s3cache_open(const char *dir, const char *id, uint64_t size, struct cli_s3cache **out)
{
	struct cli_s3cache *c = calloc(1, sizeof(*c));
	char name[100];
	struct stat st;
	int ret;

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	c->fd = -1;
	c->size = size;
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->dirfd = open_dir(dir);
	ret = c->dirfd < 0 ? c->dirfd : 0;
	if (!ret) {
		snprintf(name, sizeof(name), "%s.pages", id);
		c->fd = open_file(c->dirfd, name, O_RDWR | O_CREAT);
		ret = c->fd < 0 ? c->fd : 0;
	}
	if (!ret && (fstat(c->fd, &st) || (uint64_t)st.st_size != size)) {
		/* New, or not this image's size: start it empty (no index read). */
		if (ftruncate(c->fd, 0) || ftruncate(c->fd, (off_t)size))
			ret = -errno;
	} else if (!ret) {
		idx_load(c);
	}
	if (ret) {
		cli_s3cache_close(c);
		return ret;
	}
	*out = c;
	return 0;
}

ssize_t cli_s3cache_read(struct cli_s3cache *c, void *buf, size_t len, uint64_t off)
{
	bool hit;

	pthread_mutex_lock(&c->mu);
	hit = ext_covers_locked(c, off, len);
	pthread_mutex_unlock(&c->mu);
	if (!hit || cli_pread_full(c->fd, buf, len, (off_t)off))
		return 0;   /* a miss: S3 has it */
	return (ssize_t)len;
}

void cli_s3cache_put(struct cli_s3cache *c, const void *buf, size_t len, uint64_t off)
{
	bool have;

	if (off > c->size || len > c->size - off)
		return;
	pthread_mutex_lock(&c->mu);
	have = ext_covers_locked(c, off, len);
	pthread_mutex_unlock(&c->mu);
	if (have)
		return;
	if (cli_pwrite_full(c->fd, buf, len, (off_t)off))
		return;   /* ENOSPC and the like: not kept, nothing else lost */
	pthread_mutex_lock(&c->mu);
	if (!ext_add_locked(c, off, off + len))
		c->dirty = true;
	pthread_mutex_unlock(&c->mu);
}

/* Write the index beside, fsync it, rename it into place, fsync DIR. */
static int idx_store(struct cli_s3cache *c)
{
	char name[100], tmp[140];
	uint64_t head = c->size;
	size_t len = 16 + c->next * 16;
	uint8_t *buf = malloc(len);
	int fd, ret = 0;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, IDX_MAGIC, 8);
	memcpy(buf + 8, &head, 8);
	memcpy(buf + 16, c->ext, c->next * 16);
	snprintf(name, sizeof(name), "%s.idx", c->id);
	snprintf(tmp, sizeof(tmp), "%s.idx.%ld.tmp", c->id, (long)getpid());
	unlinkat(c->dirfd, tmp, 0);
	fd = open_file(c->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL);
	if (fd < 0) {
		free(buf);
		return fd;
	}
	errno = 0;
	if (write(fd, buf, len) != (ssize_t)len || fsync(fd))
		ret = errno ? -errno : -EIO;
	close(fd);
	if (!ret && renameat(c->dirfd, tmp, c->dirfd, name))
		ret = -errno;
	if (ret)
		unlinkat(c->dirfd, tmp, 0);
	else if (fsync(c->dirfd))
		ret = -errno;
	free(buf);
	return ret;
}

int cli_s3cache_close(struct cli_s3cache *c)
{
	int ret = 0;

	if (!c)
		return 0;
	/* The data first: the index never lists bytes a crash could lose. */
	if (c->dirty && c->fd >= 0)
		ret = fdatasync(c->fd) ? -errno : idx_store(c);
	if (c->fd >= 0)
		close(c->fd);
	if (c->dirfd >= 0)
		close(c->dirfd);
	pthread_mutex_destroy(&c->mu);
	free(c->ext);
	free(c);
	return ret;
}
