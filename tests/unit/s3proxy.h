/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3proxy.h - tests/s3/slowproxy.py from the S3 tests (tests/unit/s3.c):
 * a TCP proxy in front of radosgw that delays each connection, limits
 * the rate, and counts the connections and the bytes the server sent.
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
 * by then.
 */
static inline int proxy_stop_down(pid_t pid, int fd, uint64_t *down)
{
	char buf[8192];
	ssize_t n, total = 0;
	int conns = 0;

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while ((n = read(fd, buf + total, sizeof(buf) - 1 - (size_t)total)) > 0)
		total += n;
	buf[total] = '\0';
	for (char *p = buf; (p = strstr(p, "conn ")); p++)
		conns++;
	if (down)
		*down = 0;
	for (char *p = buf; down && (p = strstr(p, "down ")); p++)
		*down += strtoull(p + 5, NULL, 10);
	close(fd);
	return conns;
}

static inline int proxy_stop(pid_t pid, int fd)
{
	return proxy_stop_down(pid, fd, NULL);
}

#endif /* PGC_S3PROXY_H */
