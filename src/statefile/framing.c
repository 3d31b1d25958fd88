/* SPDX-License-Identifier: Apache-2.0 */
/*
 * framing.c - CRIU image framing and the I/O underneath it: a growable
 * buffer that records are packed into (u32 little-endian length, then a
 * packed protobuf-c message), a cursor that takes records back out with
 * every length checked against the bytes that are really there, and
 * write / pread loops that turn short transfers into retries or errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sf_internal.h"

/* ---- output buffer ------------------------------------------------------ */

void sf_buf_free(struct sf_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

/* Make room for @extra more bytes. */
static int buf_reserve(struct sf_buf *b, size_t extra)
{
	size_t cap;
	uint8_t *p;

	if (b->err)
		return b->err;
	if (extra <= b->cap - b->len)
		return 0;
	if (extra > SIZE_MAX / 2 - b->len) {
		b->err = -ENOMEM;
		return b->err;
	}
	cap = b->cap ? b->cap : 4096;
	while (cap - b->len < extra)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->err = -ENOMEM;
		return b->err;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

int sf_buf_put(struct sf_buf *b, const void *data, size_t len)
{
	int ret;

	if (!len)
		return b->err;
	ret = buf_reserve(b, len);
	if (ret)
		return ret;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

int sf_buf_put_u32(struct sf_buf *b, uint32_t v)
{
	uint8_t le[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };

	return sf_buf_put(b, le, sizeof(le));
}

int sf_buf_put_record(struct sf_buf *b, const ProtobufCMessage *msg)
{
	size_t sz = protobuf_c_message_get_packed_size(msg);
	int ret;

	if (sz > SF_MAX_RECORD)
		return -EOVERFLOW;
	ret = buf_reserve(b, 4 + sz);
	if (ret)
		return ret;
	sf_buf_put_u32(b, (uint32_t)sz);
	if (protobuf_c_message_pack(msg, b->p + b->len) != sz) {
		b->err = -EOVERFLOW;
		return b->err;
	}
	b->len += sz;
	return 0;
}

/* ---- input cursor ------------------------------------------------------- */

uint32_t sf_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

int sf_cursor_record(struct sf_cursor *c, size_t max, const uint8_t **rec, size_t *rlen)
{
	size_t left = c->len - c->pos;
	uint32_t n;

	if (left < 4)
		return -PGC_ETRUNCATED;
	n = sf_get_u32(c->p + c->pos);
	if (n > max)
		return -PGC_ECORRUPT;
	if (n > left - 4)
		return -PGC_ETRUNCATED;
	*rec = c->p + c->pos + 4;
	*rlen = n;
	c->pos += 4 + (size_t)n;
	return 0;
}

/* ---- I/O ---------------------------------------------------------------- */

int sf_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	ssize_t n;

	if (off > INT64_MAX || len > INT64_MAX - off)
		return -EINVAL;
	while (len) {
		n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

ssize_t sf_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	size_t done = 0;
	ssize_t n;

	if (off > INT64_MAX || len > INT64_MAX - off)
		return -EINVAL;
	while (done < len) {
		n = pread(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int sf_write_file_at(int dirfd, const char *name, const void *buf, size_t len, bool trunc)
{
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (trunc ? O_TRUNC : O_EXCL);
	int fd, ret;

	fd = openat(dirfd, name, flags, 0600);
	if (fd < 0)
		return -errno;
	ret = sf_pwrite_all(fd, buf, len, 0);
	if (ret)
		goto exit;
	if (fsync(fd) != 0)
		ret = -errno;
exit:
	if (close(fd) != 0 && !ret)
		ret = errno == EINTR ? 0 : -errno;
	return ret;
}

/*
 * Create a new file for @name in @dirfd under a temporary name (written
 * to @tmp), mode 0600: O_EXCL and O_NOFOLLOW, so nothing that exists is
 * ever opened. Returns the fd or -errno.
 */
int sf_create_tmp(int dirfd, const char *name, char *tmp, size_t len)
{
	struct timespec ts;
	int i, fd;

	for (i = 0; i < 100; i++) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		snprintf(tmp, len, ".%s.tmp-%d-%lx", name, (int)getpid(),
			 (unsigned long)ts.tv_nsec ^ ((unsigned long)i << 20));
		fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0600);
		if (fd >= 0 || errno != EEXIST)
			return fd >= 0 ? fd : -errno;
	}
	return -EEXIST;
}

/* Move @tmp to @name in @dirfd: a new name only, unless @force. */
int sf_install(int dirfd, const char *tmp, const char *name, bool force)
{
	/* rename() replaces the entry itself: a symlink there is never followed. */
	if (force)
		return renameat(dirfd, tmp, dirfd, name) ? -errno : 0;
	if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* No RENAME_NOREPLACE here: link() never replaces either. */
	if (linkat(dirfd, tmp, dirfd, name, 0) != 0)
		return -errno;
	unlinkat(dirfd, tmp, 0);
	return 0;
}
