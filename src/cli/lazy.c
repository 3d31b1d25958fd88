/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lazy.c - `pgckpt restore --background --listen SOCKET IMAGE`: a page
 * server for other processes. IMAGE is restored into a memfd MemoryFile
 * with background loading; consumers connect to SOCKET with Firecracker's
 * UFFD handoff and are served by pgc_lazy_serve_conn, one thread each, all
 * sharing the MemoryFile. The main thread accepts, starts and joins the
 * session threads and prints one line per event on stderr; the session
 * threads print nothing and report back through a pipe. A bad consumer
 * only ends its own session. The first SIGINT / SIGTERM / SIGHUP drains
 * the server: the socket goes away, no consumer is accepted, and those
 * being served finish (every page placed, or the consumer gone) before it
 * exits with 128 + N; a second signal is handled by main.c's signal
 * thread, which removes the socket file (the cleanup file) and exits at
 * once. Consumers cut off that way would wait for pages for ever.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define CMD "restore"
#define MAX_SESSIONS 64
#define MAX_PENDING  128    /* handshakes being received */
#define MAX_PER_PEER 8      /* handshakes and sessions of one peer process */
#define MAX_ALLOW    64     /* --allow-uid options */

enum {
	OPT_AIO = 256, OPT_BACKGROUND, OPT_LISTEN, OPT_TIMEOUT, OPT_ONCE, OPT_DIRECT,
	OPT_HANDSHAKE, OPT_FAULT_BYTES, OPT_NO_PUSH, OPT_ALLOW_UID,
};

static const struct option lazy_options[] = {
	{ "background",        no_argument,       NULL, OPT_BACKGROUND },
	{ "listen",            required_argument, NULL, OPT_LISTEN },
	{ "timeout",           required_argument, NULL, OPT_TIMEOUT },
	{ "once",              no_argument,       NULL, OPT_ONCE },
	{ "jobs",              required_argument, NULL, 'j' },
	{ "aio",               required_argument, NULL, OPT_AIO },
	{ "direct",            no_argument,       NULL, OPT_DIRECT },
	{ "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE },
	{ "fault-bytes",       required_argument, NULL, OPT_FAULT_BYTES },
	{ "fault-chunk",       required_argument, NULL, OPT_FAULT_BYTES },   /* its old name */
	{ "no-push",           no_argument,       NULL, OPT_NO_PUSH },
	{ "allow-uid",         required_argument, NULL, OPT_ALLOW_UID },
	{ "help",              no_argument,       NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct server;

/* A consumer whose handoff is being received (by the main thread). */
struct pending {
	pgc_lazy_conn *c;
	unsigned id;           /* 1, 2, ... in order of connection */
	long pid;              /* peer process (SO_PEERCRED), 0 if unknown */
	uint64_t deadline;     /* cli_now_ns() by which the handoff must be in */
};

/* One consumer being served by its session thread. */
struct session {
	struct server *srv;
	bool used;
	unsigned id;
	long pid;
	pgc_lazy_conn *c;      /* its complete handoff, handed to pgc_lazy_serve_ready */
	pthread_t tid;
	int ret;
	struct pgc_lazy_stats st;
};

struct server {
	pgc_memfile *mf;
	struct pgc_lazy_serve_opts so;
	int notify[2];         /* session threads write their index when done */
	int cancel_efd;        /* readable: every session stops (-ECANCELED) */
	int load_efd;          /* the background load has ended */
	atomic_int load_err;
	struct session s[MAX_SESSIONS];
	unsigned nactive;
	struct pending p[MAX_PENDING];
	unsigned npending;
	uint32_t allow[MAX_ALLOW];
};

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* pgc_load_opts.done: called once from the loader thread. */
static void load_done(void *arg, int err)
{
	struct server *srv = arg;
	uint64_t one = 1;

	atomic_store(&srv->load_err, err);
	if (write(srv->load_efd, &one, sizeof(one)) < 0) {
		/* An eventfd write of 1 cannot fail short of a bug; the poll below times out anyway. */
	}
}

static void *session_main(void *arg)
{
	struct session *s = arg;
	int idx = (int)(s - s->srv->s);

	s->ret = pgc_lazy_serve_ready(s->srv->mf, s->c, &s->srv->so, &s->st);
	s->c = NULL;
	/* At most MAX_SESSIONS ints are ever queued: the pipe never fills. */
	while (write(s->srv->notify[1], &idx, sizeof(idx)) < 0 && errno == EINTR)
		;
	return NULL;
}

/* Why a handoff was refused, in words. */
static const char *refusal(int err, const struct pgc_lazy_serve_opts *so, char *buf,
			   size_t len)
{
	switch (err) {
	case -EACCES:
		return "its uid may not connect (only the server's own uid and root may; others with --allow-uid)";
	case -EINVAL:
		return "bad handoff: invalid JSON, or regions misaligned, overlapping or outside the memory file";
	case -EOPNOTSUPP:
		return "bad handoff: page size other than 4096";
	case -EPROTO:
		return "bad handoff: no userfaultfd attached (or several fds, or the peer closed before a complete message)";
	case -ETIMEDOUT:
		snprintf(buf, len, "no complete handoff within %d ms", so->handshake_timeout_ms);
		return buf;
	case -ECANCELED:
		return "server stopping";
	default:
		return pgc_strerror(err);
	}
}

/* Log the end of session @s; returns the exit status it stands for. */
static int report(struct server *srv, struct session *s)
{
	const struct pgc_lazy_stats *st = &s->st;
	char tot[32], cp[32], zr[32], pu[32], why[96];

	if (s->ret && !st->regions) {
		cli_error(CMD, NULL, "consumer %u: refused: %s", s->id,
			  refusal(s->ret, &srv->so, why, sizeof(why)));
		return EXIT_IO;
	}
	cli_human_bytes(st->bytes_total, tot, sizeof(tot));
	cli_human_bytes(st->bytes_copied, cp, sizeof(cp));
	cli_human_bytes(st->bytes_zeroed, zr, sizeof(zr));
	cli_human_bytes(st->bytes_pushed, pu, sizeof(pu));
	if (s->ret) {
		cli_error(CMD, NULL, "consumer %u: failed after %.1f ms: %s (%s in %" PRIu64
			  " region(s), %s copied, %s zero-filled)", s->id, ms(st->ns_session),
			  pgc_strerror(s->ret), tot, st->regions, cp, zr);
		return pgc_is_image_error(s->ret) ? EXIT_IMAGE : EXIT_IO;
	}
	cli_error(CMD, NULL, "consumer %u: done: %s in %" PRIu64 " region(s), %s after %.1f ms; %"
		  PRIu64 " faults (mean %.1f us, max %.1f ms), %s copied, %s zero-filled, %s pushed",
		  s->id, tot, st->regions,
		  st->ns_all_placed ? "all placed" : "consumer went away",
		  ms(st->ns_all_placed ? st->ns_all_placed : st->ns_session),
		  st->faults,
		  st->faults ? (double)st->fault_ns_total / (double)st->faults / 1e3 : 0.0,
		  ms(st->fault_ns_max), cp, zr, pu);
	return EXIT_OK;
}

/* Join the session at index @idx and free its slot. */
static int reap(struct server *srv, int idx, bool *served)
{
	struct session *s;
	int status;

	if (idx < 0 || idx >= MAX_SESSIONS || !srv->s[idx].used)
		return EXIT_OK;
	s = &srv->s[idx];
	pthread_join(s->tid, NULL);
	status = report(srv, s);
	*served = s->st.regions > 0;
	s->used = false;
	srv->nactive--;
	return status;
}

/* Connections (handshakes and sessions) of the peer process @pid. */
static unsigned peer_conns(const struct server *srv, long pid)
{
	unsigned n = 0, i;

	if (pid <= 0)
		return 0;
	for (i = 0; i < srv->npending; i++)
		n += srv->p[i].pid == pid;
	for (i = 0; i < MAX_SESSIONS; i++)
		n += srv->s[i].used && srv->s[i].pid == pid;
	return n;
}

/* Drop the handshake at index @i (its line, if any, already printed). */
static void drop_pending(struct server *srv, unsigned i)
{
	pgc_lazy_conn_free(srv->p[i].c);
	srv->p[i] = srv->p[--srv->npending];
}

/* Refuse the handshake at index @i with @err and drop it. */
static void refuse_pending(struct server *srv, unsigned i, int err)
{
	char why[96];

	cli_error(CMD, NULL, "consumer %u: refused: %s", srv->p[i].id,
		  refusal(err, &srv->so, why, sizeof(why)));
	drop_pending(srv, i);
}

/* Start a session for the complete handoff at index @i. Never fails the server. */
static void start_session(struct server *srv, unsigned i)
{
	struct pending *p = &srv->p[i];
	struct session *s = NULL;
	int k, err;

	for (k = 0; k < MAX_SESSIONS && !s; k++)
		if (!srv->s[k].used)
			s = &srv->s[k];
	if (!s) {
		cli_error(CMD, NULL, "consumer %u: refused: too many consumers (%d)", p->id,
			  MAX_SESSIONS);
		drop_pending(srv, i);
		return;
	}
	memset(s, 0, sizeof(*s));
	s->srv = srv;
	s->id = p->id;
	s->pid = p->pid;
	s->c = p->c;
	err = pthread_create(&s->tid, NULL, session_main, s);
	if (err) {
		cli_error(CMD, NULL, "consumer %u: refused: cannot start a thread: %s", p->id,
			  strerror(err));
		drop_pending(srv, i);
		return;
	}
	s->used = true;
	srv->nactive++;
	srv->p[i] = srv->p[--srv->npending];
}

/* Take one accepted connection @conn as a pending handshake. */
static void add_pending(struct server *srv, int conn, unsigned id)
{
	pgc_lazy_conn *c;
	uint32_t uid;
	unsigned i, oldest = 0;
	long pid;
	int err;

	err = pgc_lazy_conn_new(conn, &srv->so, &c);
	if (!c) {
		cli_error(CMD, NULL, "consumer %u: refused: %s", id, pgc_strerror(err));
		return;
	}
	pgc_lazy_conn_peer(c, &pid, &uid);
	if (err) {
		cli_error(CMD, NULL, "consumer %u (pid %ld, uid %u): refused: %s", id, pid, uid,
			  refusal(err, &srv->so, NULL, 0));
		pgc_lazy_conn_free(c);
		return;
	}
	if (peer_conns(srv, pid) >= MAX_PER_PEER) {
		cli_error(CMD, NULL, "consumer %u (pid %ld): refused: too many connections from "
			  "one process (%d)", id, pid, MAX_PER_PEER);
		pgc_lazy_conn_free(c);
		return;
	}
	if (srv->npending == MAX_PENDING) {
		/* The oldest is the likeliest to be silent: a consumer sends at once. */
		for (i = 1; i < srv->npending; i++)
			if (srv->p[i].deadline < srv->p[oldest].deadline)
				oldest = i;
		cli_error(CMD, NULL, "consumer %u: refused: no handoff yet, dropped for a newer "
			  "connection (%d waiting)", srv->p[oldest].id, MAX_PENDING);
		drop_pending(srv, oldest);
	}
	srv->p[srv->npending++] = (struct pending){
		.c = c, .id = id, .pid = pid,
		.deadline = srv->so.handshake_timeout_ms < 0 ? UINT64_MAX :
			    cli_now_ns() + (uint64_t)srv->so.handshake_timeout_ms * 1000000,
	};
	cli_error(CMD, NULL, "consumer %u (pid %ld): connected", id, pid);
}

/* Accept the connections waiting on @lfd (non-blocking). Never fails the server. */
static void accept_all(struct server *srv, int lfd, unsigned *next_id)
{
	int conn, n;

	for (n = 0; n < 2 * MAX_PENDING; n++) {
		conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
				cli_error(CMD, NULL, "accept: %s", strerror(errno));
			if (errno != EINTR && errno != ECONNABORTED)
				return;
			continue;
		}
		add_pending(srv, conn, ++*next_id);
	}
}

/* Read what the pending handshakes in @pfd (from index @first) have sent. */
static void poll_pending(struct server *srv, const struct pollfd *pfd, int first, int n)
{
	uint64_t now = cli_now_ns();
	unsigned i = 0;
	int k, ret;

	/* @pfd lists the handshakes in their order before this call. */
	pgc_lazy_conn *seen[MAX_PENDING];

	for (k = 0; k < n; k++)
		seen[k] = srv->p[k].c;
	for (k = 0; k < n; k++) {
		if (!pfd[first + k].revents)
			continue;
		for (i = 0; i < srv->npending && srv->p[i].c != seen[k]; i++)
			;
		if (i == srv->npending)
			continue;
		ret = pgc_lazy_conn_recv(srv->p[i].c);
		if (ret == 1)
			start_session(srv, i);
		else if (ret < 0)
			refuse_pending(srv, i, ret);
	}
	for (i = 0; i < srv->npending;) {
		if (now >= srv->p[i].deadline)
			refuse_pending(srv, i, -ETIMEDOUT);
		else
			i++;
	}
}

/* Parse a number of seconds, 1..86400, into milliseconds. */
static int parse_seconds(const char *s, int *out_ms)
{
	char *end;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !(v >= 0.001 && v <= 86400))
		return -EINVAL;
	*out_ms = (int)(v * 1000 + 0.5);
	return 0;
}

/*
 * Remove the socket file if it is still the one this server bound (@st:
 * what stat said then; zeroed once removed) and stop the signal thread
 * from removing it later.
 */
static void unlink_sock(const char *sock, struct stat *st)
{
	struct stat now;

	if (!sock || !st->st_ino)
		return;
	cli_cleanup_lock();
	if (lstat(sock, &now) == 0 && now.st_ino == st->st_ino && now.st_dev == st->st_dev)
		unlink(sock);
	cli_cleanup_file(NULL);
	cli_cleanup_unlock();
	st->st_ino = 0;
}

int cmd_restore_lazy(int argc, char **argv)
{
	struct server *srv = NULL;
	struct pgc_memfile_opts mo;
	struct pgc_load_opts lo;
	struct pgc_image_info info;
	const char *img, *sock = NULL;
	char sz[32];
	bool background = false, once = false, stopping = false, load_ended = false;
	bool fatal = false, cancelled = false;
	unsigned next_id = 0, served = 0;
	uint64_t idle_since, t0;
	struct stat sst = { 0 };
	int opt, lfd = -1, timeout_ms = -1, ret, status = EXIT_OK, i;
	int drain[2] = { -1, -1 }, drain_sig = 0;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return cli_fail(CMD, NULL, -ENOMEM);
	srv->notify[0] = srv->notify[1] = srv->load_efd = srv->cancel_efd = -1;
	pgc_lazy_serve_opts_init(&srv->so);
	pgc_load_opts_init(&lo);
	opterr = 0;
	optind = 0;
	while ((opt = getopt_long(argc, argv, "+:j:h", lazy_options, NULL)) != -1) {
		switch (opt) {
		case OPT_BACKGROUND:
			background = true;
			break;
		case OPT_LISTEN:
			sock = optarg;
			break;
		case OPT_TIMEOUT:
			if (parse_seconds(optarg, &timeout_ms)) {
				status = cli_usage(CMD, "bad timeout '%s' (seconds, up to 86400)", optarg);
				goto exit;
			}
			break;
		case OPT_HANDSHAKE:
			if (parse_seconds(optarg, &srv->so.handshake_timeout_ms)) {
				status = cli_usage(CMD, "bad handshake timeout '%s' (seconds, up to 86400)",
						   optarg);
				goto exit;
			}
			break;
		case OPT_ONCE:
			once = true;
			break;
		case 'j':
			status = cli_opt_jobs(CMD, optarg, &lo.jobs);
			if (status)
				goto exit;
			break;
		case OPT_AIO:
			status = cli_opt_aio(CMD, optarg, &lo.aio);
			if (status)
				goto exit;
			break;
		case OPT_DIRECT:
			lo.direct = true;
			break;
		case OPT_FAULT_BYTES:
			if (cli_parse_size(optarg, &srv->so.fault_bytes) ||
			    srv->so.fault_bytes < PGC_PAGE_SIZE || srv->so.fault_bytes > (4u << 20) ||
			    (srv->so.fault_bytes & (srv->so.fault_bytes - 1))) {
				status = cli_usage(CMD, "bad --fault-bytes '%s' (a power of two, 4K..4M)",
						   optarg);
				goto exit;
			}
			break;
		case OPT_NO_PUSH:
			srv->so.no_push = true;
			break;
		case OPT_ALLOW_UID: {
			long uid;

			if (cli_parse_int(optarg, 0, UINT32_MAX - 1, &uid) ||
			    srv->so.nallow_uids == MAX_ALLOW) {
				status = cli_usage(CMD, "bad uid '%s' for --allow-uid (a number; at most %d)",
						   optarg, MAX_ALLOW);
				goto exit;
			}
			srv->allow[srv->so.nallow_uids++] = (uint32_t)uid;
			srv->so.allow_uids = srv->allow;
			break;
		}
		case 'h':
			cli_help(CMD);
			goto exit;
		default:
			status = cli_bad_option(CMD, opt, argv);
			goto exit;
		}
	}
	if (!sock) {
		status = cli_usage(CMD, "--background needs --listen SOCKET");
		goto exit;
	}
	if (!*sock) {
		status = cli_usage(CMD, "empty socket path");
		goto exit;
	}
	if (!background) {
		status = cli_usage(CMD, "--listen needs --background");
		goto exit;
	}
	if (argc - optind != 1) {
		status = cli_usage(CMD, "expected IMAGE (and no TARGET) with --listen");
		goto exit;
	}
	img = argv[optind];

	ret = pgc_image_info(img, &info);
	if (ret) {
		status = cli_fail_image(CMD, img, ret);
		goto exit;
	}
	if (pipe2(srv->notify, O_CLOEXEC) < 0 || pipe2(drain, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    (srv->load_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    (srv->cancel_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		status = cli_fail(CMD, NULL, -errno);
		goto exit;
	}
	srv->so.cancel_fd = srv->cancel_efd;
	pgc_memfile_opts_init(&mo);
	ret = pgc_memfile_new(&mo, &srv->mf);
	if (ret) {
		status = cli_fail(CMD, NULL, ret);
		goto exit;
	}
	lo.background = true;
	lo.done = load_done;
	lo.done_arg = srv;
	t0 = cli_now_ns();
	/* Returns after the metadata: sessions need the memory file's size. */
	ret = pgc_load(srv->mf, img, &lo);
	if (ret) {
		status = cli_fail(CMD, img, ret);
		goto exit;
	}
	cli_cleanup_lock();
	lfd = pgc_lazy_listen(sock);
	if (lfd >= 0)
		cli_cleanup_file(sock);
	cli_cleanup_unlock();
	if (lfd == -EADDRINUSE) {
		cli_error(CMD, sock, "a server is listening on this socket; refusing to replace it");
		status = EXIT_IO;
		goto exit;
	}
	if (lfd < 0) {
		status = cli_fail(CMD, sock, lfd);
		goto exit;
	}
	/* accept_all takes every waiting connection, then stops at EAGAIN. */
	if (fcntl(lfd, F_SETFL, O_NONBLOCK) < 0) {
		status = cli_fail(CMD, sock, -errno);
		goto exit;
	}
	if (stat(sock, &sst) < 0)
		memset(&sst, 0, sizeof(sst));
	cli_signal_drain(drain[1]);
	cli_human_bytes(pgc_total_size(srv->mf), sz, sizeof(sz));
	cli_error(CMD, NULL, "listening on %s: %s, memory file %s (%" PRIu64 " bytes)",
		  sock, img, sz, pgc_total_size(srv->mf));

	idle_since = cli_now_ns();
	for (;;) {
		struct pollfd pfd[4 + MAX_PENDING];
		int np = 0, il = -1, ie = -1, id = -1, ip, wait_ms = -1;
		unsigned k;

		if (stopping && !srv->nactive)
			break;
		if (timeout_ms >= 0 && !stopping && !srv->nactive && !srv->npending) {
			uint64_t end = idle_since + (uint64_t)timeout_ms * 1000000, t = cli_now_ns();

			if (t >= end) {
				if (!served) {
					cli_error(CMD, sock, "no consumer within %.3g s", timeout_ms / 1e3);
					status = EXIT_IO;
				} else {
					cli_error(CMD, sock, "no consumer for %.3g s: stopping",
						  timeout_ms / 1e3);
				}
				break;
			}
			wait_ms = (int)((end - t) / 1000000) + 1;
		}
		for (k = 0; k < srv->npending; k++) {
			uint64_t t = cli_now_ns(), d = srv->p[k].deadline;
			int w = d <= t ? 0 : d - t > 86400000000000ULL ? -1 :
				(int)((d - t) / 1000000) + 1;

			if (w >= 0 && (wait_ms < 0 || w < wait_ms))
				wait_ms = w;
		}
		pfd[np++] = (struct pollfd){ .fd = srv->notify[0], .events = POLLIN };
		if (!stopping) {
			il = np;
			pfd[np++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		}
		if (!load_ended) {
			ie = np;
			pfd[np++] = (struct pollfd){ .fd = srv->load_efd, .events = POLLIN };
		}
		if (!drain_sig) {
			id = np;
			pfd[np++] = (struct pollfd){ .fd = drain[0], .events = POLLIN };
		}
		ip = np;
		for (k = 0; k < srv->npending; k++)
			pfd[np++] = (struct pollfd){ .fd = pgc_lazy_conn_fd(srv->p[k].c),
						     .events = POLLIN };
		ret = poll(pfd, (nfds_t)np, wait_ms);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			status = cli_fail(CMD, NULL, -errno);
			stopping = fatal = true;
			continue;
		}
		if (pfd[0].revents & POLLIN) {
			int idx;
			bool was_served = false;

			if (read(srv->notify[0], &idx, sizeof(idx)) == (ssize_t)sizeof(idx)) {
				int st = reap(srv, idx, &was_served);

				if (was_served)
					served++;
				if (once && was_served && !stopping) {
					stopping = true;
					status = st;
				}
				if (!srv->nactive && !srv->npending)
					idle_since = cli_now_ns();
			}
		}
		if (ie >= 0 && (pfd[ie].revents & POLLIN)) {
			int err = atomic_load(&srv->load_err);

			load_ended = true;
			if (err) {
				cli_error(CMD, img, "background load failed: %s", pgc_strerror(err));
				status = pgc_is_image_error(err) ? EXIT_IMAGE : EXIT_IO;
				stopping = fatal = true;
			} else {
				cli_human_bytes(info.mem_bytes, sz, sizeof(sz));
				cli_error(CMD, NULL, "image loaded: %s in %.1f ms", sz,
					  ms(cli_now_ns() - t0));
			}
		}
		if (id >= 0 && (pfd[id].revents & POLLIN) &&
		    read(drain[0], &drain_sig, sizeof(drain_sig)) == (ssize_t)sizeof(drain_sig)) {
			if (srv->nactive)
				cli_error(CMD, NULL, "%s: finishing %u session(s); again to stop at once",
					  strsignal(drain_sig), srv->nactive);
			stopping = true;
			il = -1;
		}
		if (!stopping && srv->npending) {
			poll_pending(srv, pfd, ip, np - ip);
			/* A refused handshake leaves the server idle again. */
			if (!srv->nactive && !srv->npending)
				idle_since = cli_now_ns();
		}
		if (il >= 0 && !stopping && (pfd[il].revents & POLLIN))
			accept_all(srv, lfd, &next_id);
		if (stopping && lfd >= 0) {
			/* No new consumers; those being served finish first. */
			close(lfd);
			lfd = -1;
			unlink_sock(sock, &sst);
			while (srv->npending)
				refuse_pending(srv, 0, -ECANCELED);
		}
		if (fatal && srv->nactive && !cancelled) {
			/* A failure of the server itself: stop every session. */
			uint64_t one = 1;

			if (write(srv->cancel_efd, &one, sizeof(one)) < 0)
				cli_error(CMD, NULL, "cannot cancel the sessions: %s", strerror(errno));
			cancelled = true;
		}
	}
	if (drain_sig) {
		fprintf(stderr, "pgckpt: interrupted by %s\n", strsignal(drain_sig));
		if (status == EXIT_OK)
			status = 128 + drain_sig;
	}
exit:
	/* Sessions still running here only on the error paths above: none. */
	cli_signal_drain(-1);
	if (lfd >= 0)
		close(lfd);
	unlink_sock(sock, &sst);
	for (i = 0; i < 2; i++)
		if (drain[i] >= 0)
			close(drain[i]);
	if (srv) {
		while (srv->npending)
			drop_pending(srv, 0);
		pgc_memfile_destroy(srv->mf);
		if (srv->notify[0] >= 0)
			close(srv->notify[0]);
		if (srv->notify[1] >= 0)
			close(srv->notify[1]);
		if (srv->load_efd >= 0)
			close(srv->load_efd);
		if (srv->cancel_efd >= 0)
			close(srv->cancel_efd);
	}
	free(srv);
	return status;
}
