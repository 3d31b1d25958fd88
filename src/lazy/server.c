/* SPDX-License-Identifier: Apache-2.0 */
/*
 * server.c - the userfaultfd page server: once a consumer's handoff
 * (regions as JSON, uffd as SCM_RIGHTS; handshake.c) is in, place every
 * page of its regions from a MemoryFile that may still be loading in the
 * background. Faults come first: the aligned span (fault_bytes) around a
 * faulting page is mapped with pgc_map_internal (which makes the loader
 * fetch it next) and placed with UFFDIO_COPY, holes and zero pages with
 * UFFDIO_ZEROPAGE, every run without a wake and then one wake for the span.
 * Between faults the push (push.c) places pages, but only those already
 * loaded (PGC_ACCESS_NOWAIT), so a fault never waits behind it. One
 * thread per session, no locks: a bitmap per region records placed pages.
 * The session and what the two files share are in server_int.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lazy/server_int.h"
#include "util/options.h"
#include "util/util.h"

#define UFFD_BATCH      64
#define PUSH_WAIT_NS    200000  /* poll period while the push waits for the loader */

enum { ACT_SKIP, ACT_COPY, ACT_ZERO };

static bool bit_test(const uint64_t *b, uint64_t i)
{
	return (b[i / 64] >> (i % 64)) & 1;
}

/* Set a bit; returns whether it was clear. */
static bool bit_set(uint64_t *b, uint64_t i)
{
	uint64_t m = 1ULL << (i % 64);
	bool was = b[i / 64] & m;

	b[i / 64] |= m;
	return !was;
}

static void mark_done(struct session *s, struct region *rg, uint64_t p0, uint64_t p1)
{
	for (; p0 < p1; p0++)
		if (bit_set(rg->done, p0))
			s->pages_done++;
}

void pgc_lazy_serve_opts_init(struct pgc_lazy_serve_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->fault_bytes = (uint64_t)opt_default(OPT_LAZY_FAULT_BYTES);
	o->push_bytes = (uint64_t)opt_default(OPT_LAZY_PUSH_BYTES);
	o->accept_timeout_ms = (int)opt_default(OPT_LAZY_ACCEPT_TIMEOUT_MS);
	o->handshake_timeout_ms = (int)opt_default(OPT_LAZY_HANDSHAKE_TIMEOUT_MS);
	o->cancel_fd = -1;
}

/* ---- handoff ------------------------------------------------------------ */

static int remaining_ms(uint64_t deadline)
{
	uint64_t t;

	if (!deadline)
		return -1;
	t = util_now_ns();
	if (t >= deadline)
		return 0;
	return (int)((deadline - t) / 1000000) + 1;
}

static int cmp_base(const void *a, const void *b)
{
	const struct region *x = a, *y = b;

	return x->base < y->base ? -1 : x->base > y->base;
}

/* Is region @a before region @b in push order (memory-file offset)? */
static bool before(const struct region *a, const struct region *b)
{
	return a->offset != b->offset ? a->offset < b->offset : a->base < b->base;
}

/* Validate the regions against @mf and build the session's tables. */
static int setup_regions(struct session *s, const struct lazy_map *m, size_t n)
{
	uint64_t fsize = pgc_total_size(s->mf);
	size_t i;

	s->r = calloc(n, sizeof(*s->r));
	s->order = calloc(n, sizeof(*s->order));
	if (!s->r || !s->order)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct region *rg = &s->r[i];
		size_t words;

		if (m[i].page_size != PAGE)
			return -EOPNOTSUPP;
		if (!m[i].size || m[i].base % PAGE || m[i].size % PAGE || m[i].offset % PAGE ||
		    m[i].base + m[i].size < m[i].base || m[i].offset + m[i].size < m[i].offset ||
		    m[i].offset + m[i].size > fsize)
			return -EINVAL;
		rg->base = m[i].base;
		rg->size = m[i].size;
		rg->offset = m[i].offset;
		rg->pages = m[i].size / PAGE;
		s->nr++;
		words = (size_t)((rg->pages + 63) / 64);
		rg->done = calloc(words, sizeof(uint64_t));
		rg->removed = calloc(words, sizeof(uint64_t));
		if (!rg->done || !rg->removed)
			return -ENOMEM;
		s->pages_total += rg->pages;
	}
	qsort(s->r, n, sizeof(*s->r), cmp_base);
	for (i = 0; i + 1 < n; i++)
		if (s->r[i].base + s->r[i].size > s->r[i + 1].base)
			return -EINVAL;
	/* Counted only once accepted: a refused handoff has no regions. */
	s->st->regions = n;
	for (i = 0; i < n; i++)
		s->st->bytes_total += s->r[i].size;
	/* Insertion sort (n <= LAZY_MAX_REGIONS): qsort has no context. */
	for (i = 0; i < n; i++) {
		size_t j = i, v = i;

		while (j > 0 && before(&s->r[v], &s->r[s->order[j - 1]])) {
			s->order[j] = s->order[j - 1];
			j--;
		}
		s->order[j] = v;
	}
	return 0;
}

static struct region *find_region(struct session *s, uint64_t addr)
{
	size_t lo = 0, hi = s->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct region *rg = &s->r[mid];

		if (addr < rg->base)
			hi = mid;
		else if (addr - rg->base >= rg->size)
			lo = mid + 1;
		else
			return rg;
	}
	return NULL;
}

/* ---- placing pages ------------------------------------------------------ */

/*
 * Place @len bytes at consumer page @p of @rg with one action, retrying
 * around pages that are already there. Returns 0, -EAGAIN (mappings are
 * changing: read the pending events first), -ESRCH (consumer gone), or
 * another -errno.
 */
static int place_run(struct session *s, struct region *rg, uint64_t p, uint64_t pages,
		     int action, const unsigned char *src, bool push)
{
	while (pages) {
		uint64_t addr = rg->base + p * PAGE, len = pages * PAGE, done_pages;
		int64_t got;
		int r, err = 0;

		if (action == ACT_COPY) {
			struct uffdio_copy c = { .dst = addr, .src = (uintptr_t)src, .len = len,
						 .mode = UFFDIO_COPY_MODE_DONTWAKE };

			r = ioctl(s->uffd, UFFDIO_COPY, &c);
			got = c.copy;
		} else {
			struct uffdio_zeropage z = { .range = { .start = addr, .len = len },
						     .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE };

			r = ioctl(s->uffd, UFFDIO_ZEROPAGE, &z);
			got = z.zeropage;
		}
		if (r < 0)
			err = errno;
		done_pages = got > 0 ? (uint64_t)got / PAGE : 0;
		if (!err)
			done_pages = pages;
		mark_done(s, rg, p, p + done_pages);
		if (action == ACT_COPY)
			s->st->bytes_copied += done_pages * PAGE;
		else
			s->st->bytes_zeroed += done_pages * PAGE;
		if (push)
			s->st->bytes_pushed += done_pages * PAGE;
		p += done_pages;
		pages -= done_pages;
		if (action == ACT_COPY)
			src += done_pages * PAGE;
		if (!err)
			break;
		switch (err) {
		case EEXIST: {
			/* Already there; wake a thread that may wait on it anyway. */
			struct uffdio_range w = { .start = rg->base + p * PAGE, .len = PAGE };

			(void)ioctl(s->uffd, UFFDIO_WAKE, &w);
			s->st->eexist++;
			mark_done(s, rg, p, p + 1);
			p++;
			pages--;
			if (action == ACT_COPY)
				src += PAGE;
			break;
		}
		case EINTR:
			break;
		case ENOENT:
			/* The consumer unmapped or unregistered it: nothing to place. */
			mark_done(s, rg, p, p + pages);
			return 0;
		case EAGAIN:
			return -EAGAIN;
		case ESRCH:
			return -ESRCH;
		default:
			return -err;
		}
	}
	return 0;
}

/* Mark pages [@p, @p1) of a mapped span (file offset @off) as copy or zero. */
static void classify(struct session *s, uint64_t off, const unsigned char *map,
		     uint64_t p0, uint64_t p1, unsigned char *act)
{
	uint64_t end = off + (p1 - p0) * PAGE, pos = off;
	/*
	 * SEEK_HOLE walks the file's pages up to the next hole, however far
	 * past @end (0.3 ms in a loaded 256 MiB memfd): a short span asks
	 * SEEK_DATA page by page instead, which answers at once on data.
	 */
	bool page_by_page = p1 - p0 <= PUSH_SLICE;

	while (pos < end) {
		off_t d = lseek(s->datafd, (off_t)pos, SEEK_DATA);
		off_t h;
		uint64_t ds, de, q;

		if (d < 0)
			ds = errno == ENXIO ? end : pos;   /* ENXIO: all hole; else assume data */
		else
			ds = (uint64_t)d < end ? (uint64_t)d : end;
		for (q = pos; q < ds; q += PAGE)
			if (act[(q - off) / PAGE] == ACT_COPY)
				act[(q - off) / PAGE] = ACT_ZERO;
		if (ds >= end)
			break;
		h = page_by_page ? (off_t)(ds + PAGE) : lseek(s->datafd, (off_t)ds, SEEK_HOLE);
		de = h < 0 || (uint64_t)h > end ? end : (uint64_t)h;
		if (de <= ds)
			de = ds + PAGE;
		for (q = ds; q < de; q += PAGE) {
			uint64_t i = (q - off) / PAGE;

			if (act[i] == ACT_COPY && util_page_is_zero(map + (q - off)))
				act[i] = ACT_ZERO;
		}
		pos = de;
	}
}

/*
 * Place the pages [@p0, @p1) of @rg that are not placed yet, and page
 * @force (or UINT64_MAX) even if it is marked placed. A fault (!@push)
 * waits for pages still loading; the push never does, and places the
 * span in slices of PUSH_SLICE pages, stopping when a fault waits.
 * Returns 0, PUSH_NOT_LOADED (push: some of them are still loading,
 * nothing placed), PUSH_YIELD (push: a fault waits; the pages placed so
 * far are marked), or as place_run.
 */
int lazy_place_span(struct session *s, struct region *rg, uint64_t p0, uint64_t p1,
		    uint64_t force, bool push)
{
	unsigned char *act = s->act;
	const unsigned char *map = NULL;
	bool need_map = false, placed = false;
	uint64_t p, off = rg->offset + p0 * PAGE;
	int ret = 0;

	for (p = p0; p < p1; p++) {
		unsigned char a;

		if (bit_test(rg->done, p) && p != force)
			a = ACT_SKIP;
		else if (bit_test(rg->removed, p))
			a = ACT_ZERO;
		else
			a = ACT_COPY;
		act[p - p0] = a;
		need_map |= a == ACT_COPY;
	}
	if (need_map) {
		pgc_range r = { off, off + (p1 - p0) * PAGE };
		struct iovec iov[2];
		int n;

		/*
		 * A fault waits for exactly these pages if they are still
		 * loading; the push takes them only once they are loaded.
		 */
		n = pgc_map_internal(s->mf, r, PGC_ACCESS_READ | (push ? PGC_ACCESS_NOWAIT : 0),
				     iov, 2);
		if (n == -EAGAIN && push)
			return PUSH_NOT_LOADED;
		if (n < 0)
			return n;
		if (n != 1 || iov[0].iov_len != r.end - r.start)
			return -EIO;   /* spans are aligned, at most 4 MiB: never split across mappings */
		map = iov[0].iov_base;
		classify(s, off, map, p0, p1, act);
	}
	p = p0;
	while (p < p1 && !ret) {
		uint64_t q = p;
		unsigned char a = act[p - p0];

		/* A push goes in slices: a fault waits for one slice at most, not the span. */
		while (q < p1 && act[q - p0] == a && (!push || q - p < PUSH_SLICE))
			q++;
		if (a != ACT_SKIP) {
			ret = place_run(s, rg, p, q - p, a, map ? map + (p - p0) * PAGE : NULL, push);
			placed = true;
			if (!ret && push && q < p1 && msg_waiting(s)) {
				s->st->push_yields++;
				ret = PUSH_YIELD;
			}
		}
		p = q;
	}
	/* The runs went in without waking anyone (DONTWAKE): one wake for the span. */
	if (placed && !s->ws_burst) {
		struct uffdio_range w = { .start = rg->base + p0 * PAGE, .len = (p1 - p0) * PAGE };

		(void)ioctl(s->uffd, UFFDIO_WAKE, &w);
	}
	return ret;
}

/* Serve a fault at @addr. Returns 0, -EAGAIN (retry later) or an error. */
static int serve_fault(struct session *s, uint64_t addr)
{
	struct region *rg = find_region(s, addr);
	uint64_t p, p0, p1;
	int ret;

	if (!rg)
		return 0;   /* not one of the handed-off regions: not ours to serve */
	p = (addr - rg->base) / PAGE;
	/* A recording load notes this page itself, not the range mapped around it. */
	(void)pgc_load_ws_demand(s->mf, rg->offset + p * PAGE);
	if (s->record_until && util_now_ns() < s->record_until) {
		/* Recording: each page the consumer touches faults, and is seen. */
		return lazy_place_span(s, rg, p, p + 1, p, false);
	}
	span_around(rg, p, s->o.fault_bytes, &p0, &p1);
	ret = lazy_place_span(s, rg, p0, p1, p, false);
	if (!ret)
		lazy_push_near(s, rg, p);
	return ret;
}

static void on_remove(struct session *s, uint64_t start, uint64_t end)
{
	size_t i;

	s->st->removes++;
	for (i = 0; i < s->nr; i++) {
		struct region *rg = &s->r[i];
		uint64_t a = start > rg->base ? start : rg->base;
		uint64_t b = end < rg->base + rg->size ? end : rg->base + rg->size;
		uint64_t p;

		if (a >= b)
			continue;
		/* Partial pages at the edges are not removed by the kernel. */
		for (p = (a - rg->base + PAGE - 1) / PAGE; p < (b - rg->base) / PAGE; p++) {
			bit_set(rg->removed, p);
			if (bit_set(rg->done, p))
				s->pages_done++;
		}
	}
}

/* Retry stalled faults; keep those that still get EAGAIN. */
static int retry_stalled(struct session *s)
{
	size_t i, k = 0, n = s->nstalled;
	int ret = 0;

	for (i = 0; i < n; i++) {
		int r = ret ? -EAGAIN : serve_fault(s, s->stalled[i]);

		if (r == -EAGAIN)
			s->stalled[k++] = s->stalled[i];
		else if (r && !ret)
			ret = r;
	}
	s->nstalled = k;
	return ret;
}

/* Remember a fault to retry; at most one per blocked consumer thread. */
static int stall(struct session *s, uint64_t addr)
{
	if (s->nstalled == s->stall_cap) {
		size_t cap = s->stall_cap ? 2 * s->stall_cap : 64;
		uint64_t *n = realloc(s->stalled, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->stalled = n;
		s->stall_cap = cap;
	}
	s->stalled[s->nstalled++] = addr;
	return 0;
}

/* Read and handle the pending uffd messages. */
static int handle_msgs(struct session *s)
{
	struct uffd_msg msgs[UFFD_BATCH];
	uint64_t t = util_now_ns();
	ssize_t n;
	size_t i, cnt;
	int ret = 0;

	n = read(s->uffd, msgs, sizeof(msgs));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ESRCH;
	cnt = (size_t)n / sizeof(msgs[0]);
	/* Removals first: a fault that raced with one may as well see zeros. */
	for (i = 0; i < cnt; i++) {
		if (msgs[i].event == UFFD_EVENT_REMOVE)
			on_remove(s, msgs[i].arg.remove.start, msgs[i].arg.remove.end);
		/* A forked child's uffd, now ours: close it, the child is not served. */
		if (msgs[i].event == UFFD_EVENT_FORK) {
			close((int)msgs[i].arg.fork.ufd);
			s->st->forks++;
		}
	}
	for (i = 0; i < cnt && !ret; i++) {
		uint64_t addr = msgs[i].arg.pagefault.address & ~(PAGE - 1), dt;

		if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
			continue;
		s->st->faults++;
		ret = serve_fault(s, addr);
		if (ret == -EAGAIN) {
			ret = stall(s, addr);
			continue;
		}
		dt = util_now_ns() - t;
		s->st->fault_ns_total += dt;
		if (dt > s->st->fault_ns_max)
			s->st->fault_ns_max = dt;
	}
	return ret;
}

static void unregister_all(struct session *s)
{
	size_t i;

	for (i = 0; i < s->nr; i++) {
		struct uffdio_range r = { .start = s->r[i].base, .len = s->r[i].size };

		(void)ioctl(s->uffd, UFFDIO_UNREGISTER, &r);
	}
}

/*
 * Look for a uffd message for up to spin_ns before sleeping in ppoll. A
 * consumer's next fault often comes within microseconds of the last one
 * (a thread walking memory, a recording session serving page by page),
 * and a sleeping server woken from an idle CPU answers it tens of
 * microseconds later: on this machine a consumer faulting page by page
 * took 58 us per fault, 3.9 s for 256 MiB, against 11 us and 1.4 s
 * looking for 50 us first. Only once nothing is left to push (or the
 * push is off, or a recording serves page by page): spinning while the
 * push waits for the loader took a fifth of a core from the decode of
 * the working set (hot+ws, 400 pages: 10-13 ms instead of 5-6).
 */
static void spin_for_msg(const struct session *s)
{
	uint64_t until;

	if (!s->spin_ns)
		return;
	until = util_now_ns() + s->spin_ns;
	while (!msg_waiting(s) && util_now_ns() < until)
		util_cpu_relax();
}

static int serve_loop(struct session *s)
{
	for (;;) {
		struct pollfd pfd[3];
		struct timespec wait = { 0, 0 }, *tmo = NULL;
		int np = 0, icancel = 0, ipid = 0, timeout, ret;
		uint64_t now = s->record_until ? util_now_ns() : 0;
		bool push_left;

		if (now >= s->record_until)
			s->record_until = 0;   /* the recording window is over: push as usual */
		push_left = !s->o.no_push && !s->record_until && s->push_i < s->nr;

		if (s->nstalled) {
			ret = retry_stalled(s);
			if (ret)
				return ret;
		}
		if (s->pages_done >= s->pages_total && !s->nstalled) {
			if (!s->st->ns_all_placed)
				s->st->ns_all_placed = util_now_ns() - s->t0;
			/* Later misses (after removals) are ordinary zero faults. */
			unregister_all(s);
			return 0;
		}
		/* A push waiting for the loader looks again soon; faults wake us at once. */
		timeout = s->nstalled ? 1 : push_left ? 0 : -1;
		if (push_left && s->push_waiting && !s->nstalled) {
			wait.tv_nsec = PUSH_WAIT_NS;
			tmo = &wait;
		} else if (timeout >= 0) {
			wait.tv_nsec = (long)timeout * 1000000;
			tmo = &wait;
		} else if (s->record_until) {
			wait.tv_sec = (time_t)((s->record_until - now) / 1000000000);
			wait.tv_nsec = (long)((s->record_until - now) % 1000000000);
			tmo = &wait;
		}
		pfd[np++] = (struct pollfd){ .fd = s->uffd, .events = POLLIN };
		if (s->o.cancel_fd >= 0) {
			icancel = np;
			pfd[np++] = (struct pollfd){ .fd = s->o.cancel_fd, .events = POLLIN };
		}
		if (s->pidfd >= 0) {
			ipid = np;
			pfd[np++] = (struct pollfd){ .fd = s->pidfd, .events = POLLIN };
		}
		/* Not while the push waits for the loader: the CPU is the fill's. */
		if (!push_left)
			spin_for_msg(s);
		ret = ppoll(pfd, (nfds_t)np, tmo, NULL);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (icancel && pfd[icancel].revents)
			return -ECANCELED;
		if (ipid && pfd[ipid].revents)
			return -ESRCH;
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			return -ESRCH;
		if (pfd[0].revents & POLLIN) {
			ret = handle_msgs(s);
		} else if (push_left) {
			ret = lazy_push_step(s);
			if (ret == 1 || ret == -EAGAIN)
				ret = 0;
		}
		if (ret)
			return ret;
	}
}

/* A pidfd of the peer @pid, when it is another process; -1 otherwise. */
static int open_peer(long pid)
{
	int fd;

	if (pid <= 0 || pid == (long)getpid())
		return -1;
#ifdef SYS_pidfd_open
	fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	return fd < 0 ? -1 : fd;
#else
	(void)fd;
	return -1;
#endif
}

static int open_datafd(pgc_memfile *mf, bool *own)
{
	char p[64];
	int fd;

	/* An open file description of our own: lseek does not move the shared one. */
	snprintf(p, sizeof(p), "/proc/self/fd/%d", pgc_memfile_fd(mf));
	fd = open(p, O_RDONLY | O_CLOEXEC);
	*own = fd >= 0;
	return fd >= 0 ? fd : pgc_memfile_fd(mf);
}

/* Whether @c is a power of two within the bounds of tunable @id. */
static bool span_ok(uint64_t c, enum opt_id id)
{
	return c >= (uint64_t)opt_min(id) && c <= (uint64_t)opt_max(id) && !(c & (c - 1));
}

/* Whether the options a session is served with are all valid. */
static bool serve_opts_ok(const struct pgc_lazy_serve_opts *o)
{
	return span_ok(o->fault_bytes, OPT_LAZY_FAULT_BYTES) &&
	       span_ok(o->push_bytes, OPT_LAZY_PUSH_BYTES) && opts_reserved_zero(o);
}

int pgc_lazy_serve_ready(pgc_memfile *mf, pgc_lazy_conn *c,
			 const struct pgc_lazy_serve_opts *opts, struct pgc_lazy_stats *stats)
{
	struct pgc_lazy_stats local;
	struct session *s = NULL;
	size_t i;
	int ret;

	if (!stats)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	s = calloc(1, sizeof(*s));
	if (!s) {
		ret = -ENOMEM;
		goto exit;
	}
	s->uffd = -1;
	s->datafd = -1;
	s->pidfd = -1;
	s->mf = mf;
	s->st = stats;
	if (opts)
		s->o = *opts;
	else
		pgc_lazy_serve_opts_init(&s->o);
	if (!mf || !c || !c->done || !serve_opts_ok(&s->o)) {
		ret = -EINVAL;
		goto exit;
	}
	s->act = malloc((s->o.fault_bytes > s->o.push_bytes ? s->o.fault_bytes : s->o.push_bytes) /
			PAGE);
	if (!s->act) {
		ret = -ENOMEM;
		goto exit;
	}
	s->uffd = c->uffd;
	c->uffd = -1;
	s->pidfd = open_peer(c->pid);
	s->t0 = util_now_ns();
	ret = setup_regions(s, c->maps, c->nmaps);
	/* Like Firecracker's, the socket is done with once the handoff is in. */
	pgc_lazy_conn_free(c);
	c = NULL;
	if (ret)
		goto exit;
	s->datafd = open_datafd(mf, &s->own_datafd);
	if (!s->o.no_push)
		lazy_load_ws(s);
	s->spin_ns = (uint64_t)opt_env_int(OPT_LAZY_SPIN_US) * 1000;
	if (pgc_load_ws_demand(mf, UINT64_MAX) == 1 && opt_env_int(OPT_LAZY_RECORD_MS) > 0)
		s->record_until = s->t0 + (uint64_t)opt_env_int(OPT_LAZY_RECORD_MS) * 1000000;
	ret = serve_loop(s);
	if (ret == -ESRCH) {
		stats->consumer_gone = true;
		ret = 0;
	}
	stats->ns_session = util_now_ns() - s->t0;
exit:
	pgc_lazy_conn_free(c);
	if (s) {
		if (s->uffd >= 0)
			close(s->uffd);
		if (s->own_datafd)
			close(s->datafd);
		if (s->pidfd >= 0)
			close(s->pidfd);
		for (i = 0; s->r && i < s->nr; i++) {
			free(s->r[i].done);
			free(s->r[i].removed);
		}
		free(s->r);
		free(s->order);
		free(s->act);
		free(s->stalled);
		free(s->ws);
	}
	free(s);
	return ret;
}

/* Wait (at most the handshake timeout, or until cancel_fd) for @c's handoff. */
static int await_handoff(pgc_lazy_conn *c, const struct pgc_lazy_serve_opts *o)
{
	uint64_t deadline = o->handshake_timeout_ms < 0 ? 0 :
			    util_now_ns() + (uint64_t)o->handshake_timeout_ms * 1000000;
	int ret;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = pgc_lazy_conn_fd(c), .events = POLLIN },
			{ .fd = o->cancel_fd, .events = POLLIN },
		};

		ret = pgc_lazy_conn_recv(c);
		if (ret)
			return ret < 0 ? ret : 0;
		ret = poll(pfd, o->cancel_fd >= 0 ? 2 : 1, remaining_ms(deadline));
		if (ret < 0 && errno != EINTR)
			return -errno;
		if (ret == 0)
			return -ETIMEDOUT;
		if (ret > 0 && pfd[1].revents)
			return -ECANCELED;
	}
}

int pgc_lazy_serve_conn(pgc_memfile *mf, int conn, const struct pgc_lazy_serve_opts *opts,
			struct pgc_lazy_stats *stats)
{
	struct pgc_lazy_serve_opts def;
	pgc_lazy_conn *c = NULL;
	int ret;

	if (stats)
		memset(stats, 0, sizeof(*stats));
	if (!opts) {
		pgc_lazy_serve_opts_init(&def);
		opts = &def;
	}
	/* Every option is checked before the handoff is waited for. */
	if (!mf || !serve_opts_ok(opts)) {
		if (conn >= 0)
			close(conn);
		return -EINVAL;
	}
	ret = pgc_lazy_conn_new(conn, opts, &c);
	if (!ret)
		ret = await_handoff(c, opts);
	if (ret) {
		pgc_lazy_conn_free(c);
		return ret;
	}
	return pgc_lazy_serve_ready(mf, c, opts, stats);
}

int pgc_lazy_serve(pgc_memfile *mf, int listen_fd, const struct pgc_lazy_serve_opts *opts,
		   struct pgc_lazy_stats *stats)
{
	struct pgc_lazy_serve_opts def;
	struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };
	int conn, ret;

	if (!opts) {
		pgc_lazy_serve_opts_init(&def);
		opts = &def;
	}
	if (!mf || !serve_opts_ok(opts))
		return -EINVAL;
	for (;;) {
		ret = poll(&pfd, 1, opts->accept_timeout_ms);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0)
			return -errno;
		if (ret == 0)
			return -ETIMEDOUT;
		conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (conn >= 0)
			break;
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			return -errno;
	}
	return pgc_lazy_serve_conn(mf, conn, opts, stats);
}
