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
	OPT_HANDSHAKE, OPT_FAULT_BYTES, OPT_NO_PUSH, OPT_ALLOW_UID, OPT_WORKING_SET, OPT_RECORD_WS,
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
	{ "working-set",       required_argument, NULL, OPT_WORKING_SET },
	{ "record-working-set", required_argument, NULL, OPT_RECORD_WS },
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
	char tot[32], cp[32], zr[32], pu[32], pf[32], why[96];

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
	cli_human_bytes(st->bytes_prefetched, pf, sizeof(pf));
	cli_error(CMD, NULL, "consumer %u: done: %s in %" PRIu64 " region(s), %s after %.1f ms; %"
		  PRIu64 " faults (mean %.1f us, max %.1f ms), %s copied, %s zero-filled, %s pushed"
		  " (%s from the working set), %" PRIu64 " push(es) cut short for a fault",
		  s->id, tot, st->regions,
		  st->ns_all_placed ? "all placed" : "consumer went away",
		  ms(st->ns_all_placed ? st->ns_all_placed : st->ns_session),
		  st->faults,
		  st->faults ? (double)st->fault_ns_total / (double)st->faults / 1e3 : 0.0,
		  ms(st->fault_ns_max), cp, zr, pu, pf, st->push_yields);
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

/* The command's state, from its options to its exit status. */
struct lazy_cmd {
	struct server *srv;
	struct pgc_load_opts lo;
	struct pgc_image_info info;
	const char *img, *sock;
	const char *record_ws;  /* --record-working-set: written when a session ends */
	bool background, once, stopping, load_ended, fatal, cancelled;
	unsigned next_id, served;
	uint64_t idle_since, t0;
	struct stat sst;        /* the socket file as created, for unlink_sock */
	int lfd, timeout_ms, status;
	int drain[2], drain_sig;
};

/* One option of @c's command line; returns 0, or 1 with c->status set (stop). */
static int parse_option(struct lazy_cmd *c, int opt, char **argv)
{
	struct server *srv = c->srv;

	switch (opt) {
	case OPT_BACKGROUND:
		c->background = true;
		return 0;
	case OPT_LISTEN:
		c->sock = optarg;
		return 0;
	case OPT_TIMEOUT:
		if (parse_seconds(optarg, &c->timeout_ms))
			c->status = cli_usage(CMD, "bad timeout '%s' (seconds, up to 86400)", optarg);
		break;
	case OPT_HANDSHAKE:
		if (parse_seconds(optarg, &srv->so.handshake_timeout_ms))
			c->status = cli_usage(CMD, "bad handshake timeout '%s' (seconds, up to 86400)",
					      optarg);
		break;
	case OPT_ONCE:
		c->once = true;
		return 0;
	case 'j':
		c->status = cli_opt_jobs(CMD, optarg, &c->lo.jobs);
		break;
	case OPT_AIO:
		c->status = cli_opt_aio(CMD, optarg, &c->lo.aio);
		break;
	case OPT_DIRECT:
		c->lo.direct = true;
		return 0;
	case OPT_FAULT_BYTES:
		if (cli_parse_size(optarg, &srv->so.fault_bytes) ||
		    srv->so.fault_bytes < PGC_PAGE_SIZE || srv->so.fault_bytes > (4u << 20) ||
		    (srv->so.fault_bytes & (srv->so.fault_bytes - 1)))
			c->status = cli_usage(CMD, "bad --fault-bytes '%s' (a power of two, 4K..4M)",
					      optarg);
		break;
	case OPT_NO_PUSH:
		srv->so.no_push = true;
		return 0;
	case OPT_WORKING_SET:
		c->lo.working_set = optarg;
		return 0;
	case OPT_RECORD_WS:
		c->record_ws = optarg;
		c->lo.record_working_set = true;
		return 0;
	case OPT_ALLOW_UID: {
		long uid;

		if (cli_parse_int(optarg, 0, UINT32_MAX - 1, &uid) ||
		    srv->so.nallow_uids == MAX_ALLOW) {
			c->status = cli_usage(CMD, "bad uid '%s' for --allow-uid (a number; at most %d)",
					      optarg, MAX_ALLOW);
			break;
		}
		srv->allow[srv->so.nallow_uids++] = (uint32_t)uid;
		srv->so.allow_uids = srv->allow;
		return 0;
	}
	case 'h':
		cli_help(CMD);
		return 1;
	default:
		c->status = cli_bad_option(CMD, opt, argv);
		return 1;
	}
	return c->status != EXIT_OK;
}

/* The command line. Returns 0, or 1 with c->status set (stop). */
static int parse_args(struct lazy_cmd *c, int argc, char **argv)
{
	int opt;

	opterr = 0;
	optind = 0;
	while ((opt = getopt_long(argc, argv, "+:j:h", lazy_options, NULL)) != -1)
		if (parse_option(c, opt, argv))
			return 1;
	if (!c->sock)
		c->status = cli_usage(CMD, "--background needs --listen SOCKET");
	else if (!*c->sock)
		c->status = cli_usage(CMD, "empty socket path");
	else if (!c->background)
		c->status = cli_usage(CMD, "--listen needs --background");
	else if (argc - optind != 1)
		c->status = cli_usage(CMD, "expected IMAGE (and no TARGET) with --listen");
	else if (c->record_ws && !*c->record_ws)
		c->status = cli_usage(CMD, "empty path for --record-working-set");
	else
		c->img = argv[optind];
	return c->status != EXIT_OK;
}

/* Why a working set was ignored, in words. */
static const char *ws_why(int err)
{
	switch (err) {
	case -ESTALE:
		return "it belongs to another image";
	case -ENODATA:
		return "it is empty";
	case -PGC_ETRUNCATED:
		return "it is truncated";
	case -PGC_ECHECKSUM:
		return "it is damaged (checksum mismatch)";
	case -PGC_ECORRUPT:
		return "it is damaged";
	case -PGC_EFOREIGN:
		return "not a working-set file";
	default:
		return pgc_strerror(err);
	}
}

/* Start the background load of the image and the server's fds. Returns 0 or 1 (c->status). */
static int start_load(struct lazy_cmd *c)
{
	struct server *srv = c->srv;
	struct pgc_memfile_opts mo;
	struct pgc_load_stats ls;
	int ret;

	ret = pgc_image_info(c->img, &c->info);
	if (ret) {
		c->status = cli_fail_image(CMD, c->img, ret);
		return 1;
	}
	if (pipe2(srv->notify, O_CLOEXEC) < 0 || pipe2(c->drain, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    (srv->load_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    (srv->cancel_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		c->status = cli_fail(CMD, NULL, -errno);
		return 1;
	}
	srv->so.cancel_fd = srv->cancel_efd;
	pgc_memfile_opts_init(&mo);
	ret = pgc_memfile_new(&mo, &srv->mf);
	if (ret) {
		c->status = cli_fail(CMD, NULL, ret);
		return 1;
	}
	c->lo.background = true;
	c->lo.done = load_done;
	c->lo.done_arg = srv;
	c->t0 = cli_now_ns();
	cli_s3_load_opts(c->img, &c->lo);
	/* Returns after the metadata: sessions need the memory file's size. */
	ret = pgc_load(srv->mf, c->img, &c->lo);
	if (ret) {
		c->status = cli_fail(CMD, c->img, ret);
		return 1;
	}
	/* A working set is a hint: one that does not fit is ignored, in one line. */
	if (c->lo.working_set && !pgc_load_stats(srv->mf, &ls) && ls.working_set_error)
		cli_error(CMD, c->lo.working_set, "working set ignored: %s",
			  ws_why(ls.working_set_error));
	return 0;
}

/* Listen on the socket. Returns 0 or 1 (c->status). */
static int open_socket(struct lazy_cmd *c)
{
	char sz[32];

	cli_cleanup_lock();
	c->lfd = pgc_lazy_listen(c->sock);
	if (c->lfd >= 0)
		cli_cleanup_file(c->sock);
	cli_cleanup_unlock();
	if (c->lfd == -EADDRINUSE) {
		cli_error(CMD, c->sock, "a server is listening on this socket; refusing to replace it");
		c->status = EXIT_IO;
		return 1;
	}
	if (c->lfd < 0) {
		c->status = cli_fail(CMD, c->sock, c->lfd);
		return 1;
	}
	/* accept_all takes every waiting connection, then stops at EAGAIN. */
	if (fcntl(c->lfd, F_SETFL, O_NONBLOCK) < 0) {
		c->status = cli_fail(CMD, c->sock, -errno);
		return 1;
	}
	if (stat(c->sock, &c->sst) < 0)
		memset(&c->sst, 0, sizeof(c->sst));
	cli_signal_drain(c->drain[1]);
	cli_human_bytes(pgc_total_size(c->srv->mf), sz, sizeof(sz));
	cli_error(CMD, NULL, "listening on %s: %s, memory file %s (%" PRIu64 " bytes)",
		  c->sock, cli_image_name(c->img), sz, pgc_total_size(c->srv->mf));
	return 0;
}

/*
 * How long the next poll may sleep: until the idle timeout or the nearest
 * handshake deadline (-1: no limit). Returns 0 with *@wait_ms, or 1 once
 * the idle timeout has passed (c->status set).
 */
static int poll_timeout(struct lazy_cmd *c, int *wait_ms)
{
	struct server *srv = c->srv;
	unsigned k;

	*wait_ms = -1;
	if (c->timeout_ms >= 0 && !c->stopping && !srv->nactive && !srv->npending) {
		uint64_t end = c->idle_since + (uint64_t)c->timeout_ms * 1000000, t = cli_now_ns();

		if (t >= end) {
			if (!c->served) {
				cli_error(CMD, c->sock, "no consumer within %.3g s", c->timeout_ms / 1e3);
				c->status = EXIT_IO;
			} else {
				cli_error(CMD, c->sock, "no consumer for %.3g s: stopping",
					  c->timeout_ms / 1e3);
			}
			return 1;
		}
		*wait_ms = (int)((end - t) / 1000000) + 1;
	}
	for (k = 0; k < srv->npending; k++) {
		uint64_t t = cli_now_ns(), d = srv->p[k].deadline;
		int w = d <= t ? 0 : d - t > 86400000000000ULL ? -1 : (int)((d - t) / 1000000) + 1;

		if (w >= 0 && (*wait_ms < 0 || w < *wait_ms))
			*wait_ms = w;
	}
	return 0;
}

/* Save the working set recorded so far (--record-working-set). */
static void save_working_set(struct lazy_cmd *c)
{
	int ret;

	if (!c->record_ws)
		return;
	ret = pgc_load_ws_write(c->srv->mf, c->record_ws);
	if (ret && ret != -ENODATA)
		cli_error(CMD, c->record_ws, "cannot write the working set: %s", pgc_strerror(ret));
}

/* A session thread has finished: join it and account for it. */
static void on_session_end(struct lazy_cmd *c)
{
	struct server *srv = c->srv;
	bool was_served = false;
	int idx, st;

	if (read(srv->notify[0], &idx, sizeof(idx)) != (ssize_t)sizeof(idx))
		return;
	st = reap(srv, idx, &was_served);
	if (was_served) {
		c->served++;
		save_working_set(c);
	}
	if (c->once && was_served && !c->stopping) {
		c->stopping = true;
		c->status = st;
	}
	if (!srv->nactive && !srv->npending)
		c->idle_since = cli_now_ns();
}

/* The background load has ended. */
static void on_load_end(struct lazy_cmd *c)
{
	int err = atomic_load(&c->srv->load_err);
	char sz[32];

	c->load_ended = true;
	if (err) {
		cli_error(CMD, c->img, "background load failed: %s", pgc_strerror(err));
		c->status = pgc_is_image_error(err) ? EXIT_IMAGE : EXIT_IO;
		c->stopping = c->fatal = true;
		return;
	}
	cli_human_bytes(c->info.mem_bytes, sz, sizeof(sz));
	cli_error(CMD, NULL, "image loaded: %s in %.1f ms", sz, ms(cli_now_ns() - c->t0));
}

/* Stopping: no new consumers, and after a failure of the server itself no sessions either. */
static void stop_serving(struct lazy_cmd *c)
{
	struct server *srv = c->srv;

	if (c->stopping && c->lfd >= 0) {
		/* No new consumers; those being served finish first. */
		close(c->lfd);
		c->lfd = -1;
		unlink_sock(c->sock, &c->sst);
		while (srv->npending)
			refuse_pending(srv, 0, -ECANCELED);
	}
	if (c->fatal && srv->nactive && !c->cancelled) {
		uint64_t one = 1;

		if (write(srv->cancel_efd, &one, sizeof(one)) < 0)
			cli_error(CMD, NULL, "cannot cancel the sessions: %s", strerror(errno));
		c->cancelled = true;
	}
}

/* One round of the main loop: poll and handle what is ready. Returns 1 to end. */
static int serve_round(struct lazy_cmd *c)
{
	struct server *srv = c->srv;
	struct pollfd pfd[4 + MAX_PENDING];
	int np = 0, il = -1, ie = -1, id = -1, ip, wait_ms, ret;
	unsigned k;

	if (c->stopping && !srv->nactive)
		return 1;
	if (poll_timeout(c, &wait_ms))
		return 1;
	pfd[np++] = (struct pollfd){ .fd = srv->notify[0], .events = POLLIN };
	if (!c->stopping) {
		il = np;
		pfd[np++] = (struct pollfd){ .fd = c->lfd, .events = POLLIN };
	}
	if (!c->load_ended) {
		ie = np;
		pfd[np++] = (struct pollfd){ .fd = srv->load_efd, .events = POLLIN };
	}
	if (!c->drain_sig) {
		id = np;
		pfd[np++] = (struct pollfd){ .fd = c->drain[0], .events = POLLIN };
	}
	ip = np;
	for (k = 0; k < srv->npending; k++)
		pfd[np++] = (struct pollfd){ .fd = pgc_lazy_conn_fd(srv->p[k].c), .events = POLLIN };
	ret = poll(pfd, (nfds_t)np, wait_ms);
	if (ret < 0) {
		if (errno != EINTR) {
			c->status = cli_fail(CMD, NULL, -errno);
			c->stopping = c->fatal = true;
		}
		return 0;
	}
	if (pfd[0].revents & POLLIN)
		on_session_end(c);
	if (ie >= 0 && (pfd[ie].revents & POLLIN))
		on_load_end(c);
	if (id >= 0 && (pfd[id].revents & POLLIN) &&
	    read(c->drain[0], &c->drain_sig, sizeof(c->drain_sig)) == (ssize_t)sizeof(c->drain_sig)) {
		if (srv->nactive)
			cli_error(CMD, NULL, "%s: finishing %u session(s); again to stop at once",
				  strsignal(c->drain_sig), srv->nactive);
		c->stopping = true;
		il = -1;
	}
	if (!c->stopping && srv->npending) {
		poll_pending(srv, pfd, ip, np - ip);
		/* A refused handshake leaves the server idle again. */
		if (!srv->nactive && !srv->npending)
			c->idle_since = cli_now_ns();
	}
	if (il >= 0 && !c->stopping && (pfd[il].revents & POLLIN))
		accept_all(srv, c->lfd, &c->next_id);
	stop_serving(c);
	return 0;
}

/* Close and free what @c holds. */
static void lazy_cmd_free(struct lazy_cmd *c)
{
	struct server *srv = c->srv;
	int i;

	/* Sessions still running here only on the error paths: none. */
	cli_signal_drain(-1);
	if (c->lfd >= 0)
		close(c->lfd);
	unlink_sock(c->sock, &c->sst);
	for (i = 0; i < 2; i++)
		if (c->drain[i] >= 0)
			close(c->drain[i]);
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
}

int cmd_restore_lazy(int argc, char **argv)
{
	struct lazy_cmd c = {
		.lfd = -1, .timeout_ms = -1, .status = EXIT_OK, .drain = { -1, -1 },
	};

	c.srv = calloc(1, sizeof(*c.srv));
	if (!c.srv)
		return cli_fail(CMD, NULL, -ENOMEM);
	c.srv->notify[0] = c.srv->notify[1] = c.srv->load_efd = c.srv->cancel_efd = -1;
	pgc_lazy_serve_opts_init(&c.srv->so);
	pgc_load_opts_init(&c.lo);
	if (parse_args(&c, argc, argv) || start_load(&c) || open_socket(&c))
		goto exit;
	c.idle_since = cli_now_ns();
	while (!serve_round(&c))
		;
	if (c.drain_sig) {
		fprintf(stderr, "pgckpt: interrupted by %s\n", strsignal(c.drain_sig));
		if (c.status == EXIT_OK)
			c.status = 128 + c.drain_sig;
	}
exit:
	lazy_cmd_free(&c);
	return c.status;
}
