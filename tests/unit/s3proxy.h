/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3proxy.h - tests/s3/slowproxy.py from the S3 tests (tests/unit/s3.c):
 * a TCP proxy in front of radosgw that delays each connection, limits
 * the rate, and counts the connections, the bytes the server sent and
 * the requests by method and path.
 */
#ifndef PGC_S3PROXY_H
#define PGC_S3PROXY_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Start @src_dir/tests/s3/slowproxy.py DELAY RATE (bytes/s, 0: any) in
 * front of radosgw ($AWS_ENDPOINT_URL); its port, or -1.
 */
static inline int proxy_start_in(const char *src_dir, double delay, long rate, pid_t *pid,
				 int *out_fd)
{
	const char *ep = getenv("AWS_ENDPOINT_URL");
	const char *colon = ep ? strrchr(ep, ':') : NULL;
	char script[1200], d[32], port[16], buf[32], r[32];
	int pfd[2];
	ssize_t n;

	if (!colon || pipe(pfd))
		return -1;
	snprintf(script, sizeof(script), "%s/tests/s3/slowproxy.py", src_dir);
	snprintf(d, sizeof(d), "%.3f", delay);
	snprintf(port, sizeof(port), "%s", colon + 1);
	snprintf(r, sizeof(r), "%ld", rate);
	*pid = fork();
	if (*pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execlp("python3", "python3", script, d, port, r, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	*out_fd = pfd[0];
	n = read(pfd[0], buf, sizeof(buf) - 1);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return atoi(buf);
}

/*
 * Stop the proxy; the number of connections it accepted. @down (may be
 * NULL) gets the bytes it carried from the server on connections closed
 * by then; @nreq (may be NULL) the requests whose line starts with @req
 * ("HEAD ", "GET /bucket/key", ...).
 */
static inline int proxy_stop_reqs(pid_t pid, int fd, uint64_t *down, const char *req, int *nreq)
{
	size_t total = 0, cap = 1 << 16;
	char *buf = malloc(cap), *p, *nb;
	int conns = 0;
	ssize_t n;

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while (buf && (n = read(fd, buf + total, cap - 1 - total)) > 0) {
		total += (size_t)n;
		if (cap - 1 - total < 4096 && (nb = realloc(buf, cap * 2)) != NULL) {
			buf = nb;
			cap *= 2;
		}
	}
	close(fd);
	if (down)
		*down = 0;
	if (nreq)
		*nreq = 0;
	if (!buf)
		return -1;
	buf[total] = '\0';
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, "conn ", 5) == 0)
			conns++;
		else if (down && strncmp(p, "down ", 5) == 0)
			*down += strtoull(p + 5, NULL, 10);
		else if (nreq && strncmp(p, "req ", 4) == 0 && strncmp(p + 4, req, strlen(req)) == 0)
			(*nreq)++;
	}
	free(buf);
	return conns;
}

static inline int proxy_stop_down(pid_t pid, int fd, uint64_t *down)
{
	return proxy_stop_reqs(pid, fd, down, NULL, NULL);
}

static inline int proxy_stop(pid_t pid, int fd)
{
	return proxy_stop_down(pid, fd, NULL);
}

#endif /* PGC_S3PROXY_H */
