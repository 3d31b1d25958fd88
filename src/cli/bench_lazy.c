/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_lazy.c - the lazy-restore figures of `pgckpt bench`: the image is
 * restored in the background and served over userfaultfd (the public
 * pgc_lazy_* API) to a consumer process forked for each session, which
 * maps the memory, attaches and touches it as bench/lazy.sh's
 * examples/lazy_consumer does. Per run, three sessions:
 *
 * - random: random pages anywhere, then every page compared with the
 *   source file: first access, p50 / p99 of the random touches, the
 *   server's time to every page placed, and the consumer's to every page
 *   verified;
 * - hot, twice: BENCH_HOT_PAGES random pages of the last BENCH_HOT_BYTES
 *   (a fixed seed: the same pages each time), the end the fill reaches
 *   last, without a working set and with the one a first hot session
 *   recorded (REAP's case; a fourth session, not timed).
 *
 * The consumer is forked before the load starts its threads and waits for
 * a byte on a pipe, so it attaches once the load runs, as a VMM would.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define PAGE            PGC_PAGE_SIZE
#define BENCH_HOT_PAGES 400
#define BENCH_HOT_BYTES (24ull << 20)
#define SESSION_MS      60000   /* a session that takes longer has failed */
#define SOCK_PATH_MAX   96      /* sun_path holds 108 bytes; pgc_lazy_listen binds beside it */

/* What a consumer does: @n random pages of the last @hot bytes, then maybe verify. */
struct touch_plan {
	uint64_t size;          /* bytes mapped: the memory file from offset 0 */
	uint64_t hot;           /* touch pages of the last @hot bytes */
	unsigned n;
	bool verify;            /* then compare every byte with the source */
	uint64_t seed;
};

/* The consumer's report, through a pipe. */
struct consumer_report {
	int err;
	uint64_t mismatches;
	double first_ms, p50_us, p99_us;
	double touch_ms;        /* attach until the random pages were touched */
	double all_ms;          /* attach until every page was verified */
};

struct lazy_ctx {
	const struct pgc_load_opts *lo;
	const char *img;
	char sock[4200];
	char ws[4200];
	int src_fd;
};

static double ms_since(uint64_t t0)
{
	return (double)(cli_now_ns() - t0) / 1e6;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Compare every byte of @mem (@size bytes) with @src_fd; returns the mismatching pages. */
static uint64_t verify(const uint8_t *mem, uint64_t size, int src_fd, int *err)
{
	static uint8_t buf[1 << 20];
	uint64_t off, bad = 0, i;

	for (off = 0; off < size && !*err; off += sizeof(buf)) {
		size_t len = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
		ssize_t n = pread(src_fd, buf, len, (off_t)off);

		if (n != (ssize_t)len) {
			*err = n < 0 ? -errno : -EIO;
			break;
		}
		for (i = 0; i < len; i += PAGE)
			bad += memcmp(mem + off + i, buf + i, len - i < PAGE ? len - i : PAGE) != 0;
	}
	return bad;
}

/* The consumer process: never returns. */
static void consumer(int go_fd, int out_fd, const char *sock, int src_fd,
		     const struct touch_plan *tp)
{
	struct consumer_report rep = { 0 };
	uint64_t pages = tp->size / PAGE, hot = tp->hot / PAGE, rng = tp->seed, t0, t, *lat;
	struct pgc_lazy_region r;
	uint8_t *mem;
	unsigned i;
	char go;
	int uffd = -1;

	lat = calloc(tp->n + 1, sizeof(*lat));
	mem = mmap(NULL, tp->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (!lat || mem == MAP_FAILED) {
		rep.err = -ENOMEM;
		goto out;
	}
	if (read(go_fd, &go, 1) != 1) {
		rep.err = -EPIPE;   /* the server gave up */
		goto out;
	}
	r = (struct pgc_lazy_region){ mem, tp->size, 0 };
	t0 = cli_now_ns();
	uffd = pgc_lazy_attach(sock, &r, 1);
	if (uffd < 0) {
		rep.err = uffd;
		goto out;
	}
	hot = hot && hot < pages ? hot : pages;
	for (i = 0; i < tp->n; i++) {
		uint64_t p;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		p = pages - hot + rng % hot;
		t = cli_now_ns();
		(void)*(volatile uint8_t *)(mem + p * PAGE);
		lat[i] = cli_now_ns() - t;
	}
	rep.touch_ms = ms_since(t0);
	rep.first_ms = tp->n ? (double)lat[0] / 1e6 : 0;
	qsort(lat, tp->n, sizeof(*lat), cmp_u64);
	rep.p50_us = tp->n ? (double)lat[(tp->n - 1) / 2] / 1e3 : 0;
	rep.p99_us = tp->n ? (double)lat[(size_t)((tp->n - 1) * 0.99)] / 1e3 : 0;
	if (tp->verify)
		rep.mismatches = verify(mem, tp->size, src_fd, &rep.err);
	rep.all_ms = ms_since(t0);
out:
	if (write(out_fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
		_exit(1);
	_exit(0);
}

/*
 * Accept the consumer on @lfd, unless @report_fd (the consumer's report)
 * turns readable first: it failed before connecting. Returns the
 * connection, -ECANCELED, or -errno.
 */
static int accept_consumer(int lfd, int report_fd)
{
	struct pollfd pfd[2] = { { .fd = lfd, .events = POLLIN },
				 { .fd = report_fd, .events = POLLIN } };
	int ret;

	do
		ret = poll(pfd, 2, SESSION_MS);
	while (ret < 0 && errno == EINTR);
	if (ret < 0)
		return -errno;
	if (ret == 0)
		return -ETIMEDOUT;
	if (!(pfd[0].revents & POLLIN))
		return -ECANCELED;
	ret = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	return ret < 0 ? -errno : ret;
}

/* The consumer's report (after a failed session, the consumer is killed first). */
static int collect(pid_t pid, int fd, bool kill_it, struct consumer_report *rep)
{
	ssize_t n;
	int status;

	if (kill_it)
		kill(pid, SIGKILL);
	do
		n = read(fd, rep, sizeof(*rep));
	while (n < 0 && errno == EINTR);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(*rep))
		return -EPIPE;
	if (rep->err)
		return rep->err;
	return rep->mismatches ? -EILSEQ : 0;
}

/*
 * One session: a background load of x->img (replaying @ws_in, recording
 * into x->ws if @record), served to a forked consumer doing @tp.
 * Returns 0 with *@rep and *@placed_ms, or -errno.
 */
static int session(const struct lazy_ctx *x, const struct touch_plan *tp, const char *ws_in,
		   bool record, struct consumer_report *rep, double *placed_ms)
{
	struct pgc_load_opts lo = *x->lo;
	struct pgc_lazy_serve_opts so;
	struct pgc_lazy_stats st = { 0 };
	int go[2] = { -1, -1 }, out[2] = { -1, -1 }, lfd, conn, ret, cret;
	pgc_memfile *mf = NULL;
	pid_t pid = -1;

	lfd = pgc_lazy_listen(x->sock);
	if (lfd < 0)
		return lfd;
	if (pipe2(go, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
		ret = -errno;
		goto exit;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		goto exit;
	}
	if (pid == 0)
		consumer(go[0], out[1], x->sock, x->src_fd, tp);
	close(out[1]);
	out[1] = -1;
	ret = pgc_memfile_new(NULL, &mf);
	lo.background = true;
	lo.working_set = ws_in;
	lo.record_working_set = record;
	if (!ret)
		ret = pgc_load(mf, x->img, &lo);
	if (!ret && write(go[1], "g", 1) != 1)
		ret = -EPIPE;
	conn = ret ? ret : accept_consumer(lfd, out[0]);
	if (conn >= 0) {
		pgc_lazy_serve_opts_init(&so);
		so.cancel_fd = out[0];   /* the consumer has ended: its report says how */
		ret = pgc_lazy_serve_conn(mf, conn, &so, &st);
		if (ret == -ECANCELED)
			ret = 0;
		if (!ret && record)
			ret = pgc_load_ws_write(mf, x->ws);
	} else if (conn != -ECANCELED) {
		ret = conn;
	}
	*placed_ms = (double)st.ns_all_placed / 1e6;
exit:
	if (pid > 0) {
		close(go[1]);   /* a consumer still waiting to start gives up */
		go[1] = -1;
		cret = collect(pid, out[0], ret != 0, rep);
		if (!ret)
			ret = cret;
	}
	pgc_memfile_destroy(mf);
	for (int i = 0; i < 2; i++) {
		if (go[i] >= 0)
			close(go[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	close(lfd);
	unlink(x->sock);
	return ret;
}

int bench_lazy_run(const struct pgc_load_opts *lo, const char *img, const char *dir, int src_fd,
		   uint64_t size, unsigned accesses, struct bench_lazy *out)
{
	struct lazy_ctx x = { .lo = lo, .img = img, .src_fd = src_fd };
	struct touch_plan rnd = { .size = size & ~(uint64_t)(PAGE - 1), .n = accesses,
				  .verify = true, .seed = 0x9e3779b97f4a7c15ULL };
	struct touch_plan hot = { .size = rnd.size, .hot = BENCH_HOT_BYTES, .n = BENCH_HOT_PAGES,
				  .seed = 7 };
	struct consumer_report rep;
	char sockdir[32] = "";
	double placed;
	int ret;

	if (!rnd.size)
		return -ENODATA;
	if (hot.hot > rnd.size / 4)
		hot.hot = rnd.size / 4 > PAGE ? rnd.size / 4 : PAGE;
	if ((size_t)snprintf(x.ws, sizeof(x.ws), "%s/ws", dir) >= sizeof(x.ws))
		return -ENAMETOOLONG;
	/* A --dir too deep for a socket's name: the socket goes to a directory of its own in /tmp. */
	if ((size_t)snprintf(x.sock, sizeof(x.sock), "%s/lazy.sock", dir) >= SOCK_PATH_MAX) {
		if (!mkdtemp(strcpy(sockdir, "/tmp/pgckpt-bench.XXXXXX")))
			return -errno;
		snprintf(x.sock, sizeof(x.sock), "%s/lazy.sock", sockdir);
	}
	ret = session(&x, &rnd, NULL, false, &rep, &out->placed_ms);
	if (ret)
		goto exit;
	out->first_ms = rep.first_ms;
	out->p50_us = rep.p50_us;
	out->p99_us = rep.p99_us;
	out->all_ms = rep.all_ms;
	/* The working set: recorded by one hot session, then without and with it. */
	ret = session(&x, &hot, NULL, true, &rep, &placed);
	if (!ret)
		ret = session(&x, &hot, NULL, false, &rep, &placed);
	out->ws_without_ms = rep.touch_ms;
	if (!ret)
		ret = session(&x, &hot, x.ws, false, &rep, &placed);
	out->ws_with_ms = rep.touch_ms;
exit:
	unlink(x.ws);
	if (sockdir[0])
		rmdir(sockdir);
	return ret;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median of field @off (a double) of @n results. */
static double median(const struct bench_lazy *r, size_t n, size_t off)
{
	double v[64];
	size_t i;

	if (n > 64)
		n = 64;
	for (i = 0; i < n; i++)
		memcpy(&v[i], (const char *)&r[i] + off, sizeof(double));
	qsort(v, n, sizeof(*v), cmp_double);
	return n ? (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : 0;
}

void bench_lazy_median(const struct bench_lazy *r, size_t n, struct bench_lazy *out)
{
#define MED(f) out->f = median(r, n, offsetof(struct bench_lazy, f))
	MED(first_ms);
	MED(p50_us);
	MED(p99_us);
	MED(placed_ms);
	MED(all_ms);
	MED(ws_without_ms);
	MED(ws_with_ms);
#undef MED
}
