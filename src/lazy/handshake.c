/* SPDX-License-Identifier: Apache-2.0 */
/*
 * handshake.c - everything before a lazy-restore session starts: the
 * listening socket and the consumer's handoff.
 *
 * pgc_lazy_listen binds the socket inside a fresh 0700 directory beside
 * its path, makes it 0600 and renames it into place, so it is never
 * reachable with the umask's mode; a socket file already there is
 * replaced only if nobody answers on it (stale), never while a server
 * listens on it.
 *
 * A pgc_lazy_conn receives one consumer's handoff (JSON regions with the
 * uffd as SCM_RIGHTS) without blocking, so a caller can poll many pending
 * connections at once and no silent peer holds up another. It checks the
 * peer's credentials (SO_PEERCRED) first: only this process's effective
 * uid, root and the uids the caller allows may hand over a uffd.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lazy/lazy.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/* The longest handoff the client formats for LAZY_MAX_REGIONS regions must fit. */
_Static_assert(LAZY_MAX_REGIONS * LAZY_REGION_JSON_MAX + 2 <= LAZY_MAX_MSG,
	       "LAZY_MAX_MSG must hold LAZY_MAX_REGIONS regions");

/* ---- the listening socket ------------------------------------------------ */

/* Whether a server answers on the socket file @sa. */
static bool socket_is_live(const struct sockaddr_un *sa)
{
	int fd, ret;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return true;   /* cannot tell: do not replace it */
	ret = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	/* EAGAIN: a listener whose backlog is full is live too. */
	ret = ret == 0 || errno == EAGAIN || errno == EINPROGRESS;
	close(fd);
	return ret;
}

/* Move the bound socket @tmp over @path, which must not exist (anymore). */
static int put_in_place(const char *tmp, const char *path)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return errno == EEXIST ? -EADDRINUSE : -errno;
	if (link(tmp, path) != 0)
		return errno == EEXIST ? -EADDRINUSE : -errno;
	unlink(tmp);
	return 0;
}

/*
 * Bind @fd as @path with mode 0600 and listen: inside a new 0700
 * directory beside @path (no one else can connect meanwhile), then
 * renamed into place already listening, so that whoever finds the file
 * finds a live socket.
 */
static int listen_private(int fd, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX], tmp[PATH_MAX + 8];
	int dfd = -1, ret;

	if ((size_t)snprintf(dir, sizeof(dir), "%.*s.pgckpt-sock-XXXXXX",
			     slash ? (int)(slash - path + 1) : 0, path) >= sizeof(dir))
		return -ENAMETOOLONG;
	if (!mkdtemp(dir))
		return -errno;
	snprintf(tmp, sizeof(tmp), "%s/s", dir);
	if (strlen(tmp) < sizeof(sa.sun_path)) {
		memcpy(sa.sun_path, tmp, strlen(tmp) + 1);
	} else {
		/* Too long for sun_path: reach the directory through its fd. */
		dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			ret = -errno;
			goto exit;
		}
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/s", dfd);
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		goto exit;
	}
	if (chmod(tmp, 0600) != 0 || listen(fd, 128) != 0)
		ret = -errno;
	else
		ret = put_in_place(tmp, path);
	if (ret)
		unlink(tmp);
exit:
	if (dfd >= 0)
		close(dfd);
	rmdir(dir);
	return ret;
}

int pgc_lazy_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat stb;
	int fd, ret;

	if (!path || !*path)
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* Replace a stale socket, never a live one, never any other kind of file. */
	if (lstat(path, &stb) == 0) {
		if (!S_ISSOCK(stb.st_mode))
			return -EEXIST;
		if (socket_is_live(&sa))
			return -EADDRINUSE;
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = listen_private(fd, path);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/* ---- receiving a handoff ------------------------------------------------- */

static bool is_userfaultfd(int fd)
{
	char p[64], l[64];
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	n = readlink(p, l, sizeof(l) - 1);
	if (n < 0)
		return true;   /* no /proc: let the ioctls decide */
	l[n] = '\0';
	return strcmp(l, "anon_inode:[userfaultfd]") == 0;
}

static bool uid_allowed(uint32_t uid, const struct pgc_lazy_serve_opts *o)
{
	size_t i;

	if (uid == 0 || uid == (uint32_t)geteuid())
		return true;
	for (i = 0; o && o->allow_uids && i < o->nallow_uids; i++)
		if (o->allow_uids[i] == uid)
			return true;
	return false;
}

int pgc_lazy_conn_new(int conn, const struct pgc_lazy_serve_opts *opts, pgc_lazy_conn **out)
{
	struct ucred cr = { .pid = 0, .uid = (uid_t)-1 };
	socklen_t len = sizeof(cr);
	pgc_lazy_conn *c;

	*out = NULL;
	if (conn < 0)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(conn);
		return -ENOMEM;
	}
	c->fd = conn;
	c->uffd = -1;
	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0) {
		c->pid = cr.pid;
		c->uid = (uint32_t)cr.uid;
	} else {
		c->uid = UINT32_MAX;
	}
	*out = c;
	return uid_allowed(c->uid, opts) ? 0 : -EACCES;
}

int pgc_lazy_conn_fd(const pgc_lazy_conn *c)
{
	return c->fd;
}

void pgc_lazy_conn_peer(const pgc_lazy_conn *c, long *pid, uint32_t *uid)
{
	if (pid)
		*pid = c->pid;
	if (uid)
		*uid = c->uid;
}

void pgc_lazy_conn_free(pgc_lazy_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->uffd >= 0)
		close(c->uffd);
	free(c->buf);
	free(c->maps);
	free(c);
}

/* Keep the one fd of the message's SCM_RIGHTS; -EPROTO for any other. */
static int take_fds(pgc_lazy_conn *c, struct msghdr *msg)
{
	struct cmsghdr *cm;
	bool bad = false;

	for (cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
		size_t k, cnt;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < cnt; k++) {
			int f;

			memcpy(&f, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
			if (c->uffd < 0 && !bad) {
				c->uffd = f;
			} else {
				close(f);
				bad = true;
			}
		}
	}
	return bad || (msg->msg_flags & MSG_CTRUNC) ? -EPROTO : 0;
}

/* Room for more bytes: grow the buffer up to LAZY_MAX_MSG. */
static int make_room(pgc_lazy_conn *c)
{
	size_t cap;
	char *b;

	if (c->len < c->cap)
		return 0;
	if (c->cap >= LAZY_MAX_MSG)
		return -EINVAL;   /* no complete message in LAZY_MAX_MSG bytes */
	cap = c->cap ? c->cap * 2 : 4096;
	if (cap > LAZY_MAX_MSG)
		cap = LAZY_MAX_MSG;
	b = realloc(c->buf, cap);
	if (!b)
		return -ENOMEM;
	c->buf = b;
	c->cap = cap;
	return 0;
}

/* Parse what has arrived: 1 complete, 0 incomplete, or -errno. */
static int try_parse(pgc_lazy_conn *c)
{
	int ret;

	if (!c->maps) {
		c->maps = calloc(LAZY_MAX_REGIONS, sizeof(*c->maps));
		if (!c->maps)
			return -ENOMEM;
	}
	ret = lazy_parse_regions(c->buf, c->len, c->maps, LAZY_MAX_REGIONS, &c->nmaps);
	if (ret == -ENODATA)
		return c->len < LAZY_MAX_MSG ? 0 : -EINVAL;
	if (ret)
		return ret == -E2BIG ? -EINVAL : ret;
	if (c->uffd < 0 || !is_userfaultfd(c->uffd))
		return -EPROTO;
	return 1;
}

int pgc_lazy_conn_recv(pgc_lazy_conn *c)
{
	int ret;

	if (c->done)
		return 1;
	for (;;) {
		union {
			char b[CMSG_SPACE(8 * sizeof(int))];
			struct cmsghdr align;
		} u;
		struct iovec iov;
		struct msghdr msg = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = u.b, .msg_controllen = sizeof(u.b),
		};
		ssize_t n;

		ret = make_room(c);
		if (ret)
			return ret;
		iov = (struct iovec){ c->buf + c->len, c->cap - c->len };
		n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		ret = take_fds(c, &msg);
		if (ret)
			return ret;
		if (n == 0)
			return -EPROTO;   /* peer closed before a complete message */
		c->len += (size_t)n;
		ret = try_parse(c);
		if (ret) {
			c->done = ret == 1;
			return ret;
		}
	}
}
