/* SPDX-License-Identifier: Apache-2.0 */
/*
 * aio.c - the backend-independent half of the async I/O queue: backend
 * names and $PGCKPT_AIO, the choice (and probe, and fallback) behind
 * AIO_AUTO, request validation, the slot lists and the ring of ready
 * completions, dispatch to the backend's ops table, and the helpers that
 * split a request into kernel calls and complete short transfers.
 *
 * The backends are threads.c, libaio.c and uring.c; see docs/aio.md.
 *
 * Test hook: $PGCKPT_FAULT_AIO (see fault_parse) makes one completion fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio_impl.h"
#include "util/options.h"

/*
 * What AIO_AUTO picks (bench/aio_bench.c, docs/aio.md): for buffered
 * page-cache reads the thread pool is best when it can copy on two or
 * more CPUs at once; confined to one CPU, io_uring is best (it copies
 * inline at submission, without hand-offs), with the pool as fallback.
 */
#define AIO_AUTO_POOL_MIN_CPUS 2

static const char *const backend_names[] = {
	[AIO_AUTO] = "auto",
	[AIO_THREADS] = "threads",
	[AIO_LIBAIO] = "libaio",
	[AIO_URING] = "uring",
};

int aio_parse_backend(const char *name, enum aio_backend *out)
{
	unsigned i;

	if (!out)
		return -EINVAL;
	if (!name || !*name) {
		name = opt_env(OPT_AIO);
		if (!name || !*name) {
			*out = AIO_AUTO;
			return 0;
		}
	}
	for (i = 0; i < sizeof(backend_names) / sizeof(backend_names[0]); i++) {
		if (strcmp(name, backend_names[i]) == 0) {
			*out = (enum aio_backend)i;
			return 0;
		}
	}
	/* "io_uring" is what people type. */
	if (strcmp(name, "io_uring") == 0) {
		*out = AIO_URING;
		return 0;
	}
	return -EINVAL;
}

const char *aio_backend_name(enum aio_backend b)
{
	if ((unsigned)b >= sizeof(backend_names) / sizeof(backend_names[0]))
		return "unknown";
	return backend_names[b];
}

static const struct aio_ops *backend_ops(enum aio_backend b)
{
	switch (b) {
	case AIO_THREADS:
		return &aio_threads_ops;
	case AIO_LIBAIO:
		return &aio_libaio_ops;
	case AIO_URING:
		return &aio_uring_ops;
	default:
		return NULL;
	}
}

/*
 * kernel.io_uring_disabled: 0 enabled, 1 only for members of
 * kernel.io_uring_group (and CAP_SYS_ADMIN), 2 disabled. Returns the
 * value, or 0 when the sysctl does not exist (older kernels).
 */
static int uring_sysctl_disabled(void)
{
	char buf[16];
	ssize_t n;
	int fd;

	fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return atoi(buf);
}

/* CPUs this thread may run on (1 if it cannot tell). */
static int usable_cpus(void)
{
	cpu_set_t set;
	int n;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 1;
	n = CPU_COUNT(&set);
	return n > 0 ? n : 1;
}

/*
 * Fault injection, a test hook (tests/unit/faults.c, docs/failure.md):
 * PGCKPT_FAULT_AIO="read:N:ERRNO" (or "write:N:ERRNO") makes the Nth read
 * (READ / READV) or write completion, counted from 1 over the queues of
 * the process since the last aio_queue_new, report -ERRNO instead of its
 * result, as an I/O error from the kernel would. "wait:N:ERRNO" instead
 * makes the Nth aio_wait call fail with -ERRNO before it reaps anything,
 * as a broken queue would (its requests stay in flight). ERRNO is a
 * number (5 for EIO). Read at every aio_queue_new; when unset, the cost is
 * one relaxed atomic load per completion or wait. Not for production use.
 */
enum { FAULT_NONE, FAULT_READ, FAULT_WRITE, FAULT_WAIT };
static atomic_int fault_op;
static atomic_int fault_err;
static atomic_uint_fast64_t fault_nth;
static atomic_uint_fast64_t fault_count;

static void fault_parse(void)
{
	const char *s = test_hook(HOOK_FAULT_AIO);
	unsigned long long nth;
	int op = FAULT_NONE, err, used = 0;

	if (s && *s) {
		if (strncmp(s, "read:", 5) == 0)
			op = FAULT_READ;
		else if (strncmp(s, "write:", 6) == 0)
			op = FAULT_WRITE;
		else if (strncmp(s, "wait:", 5) == 0)
			op = FAULT_WAIT;
		if (op != FAULT_NONE &&
		    (sscanf(strchr(s, ':') + 1, "%llu:%d%n", &nth, &err, &used) != 2 ||
		     strchr(s, ':')[1 + used] != '\0' || nth == 0 || err <= 0))
			op = FAULT_NONE;
	}
	if (op != FAULT_NONE) {
		atomic_store(&fault_nth, (uint_fast64_t)nth);
		atomic_store(&fault_err, err);
		atomic_store(&fault_count, 0);
	}
	atomic_store(&fault_op, op);
}

/* The injected result of a completion of @op (AIO_OP_*) with result @res. */
static int64_t fault_apply(enum aio_op op, int64_t res)
{
	int f = atomic_load_explicit(&fault_op, memory_order_relaxed);
	bool write = op == AIO_OP_WRITE || op == AIO_OP_WRITEV;

	if (f == FAULT_NONE || f == FAULT_WAIT || write != (f == FAULT_WRITE))
		return res;
	if (atomic_fetch_add(&fault_count, 1) + 1 != atomic_load(&fault_nth))
		return res;
	return -(int64_t)atomic_load(&fault_err);
}

/* The injected result of an aio_wait call: 0 or -errno. */
static int fault_wait(void)
{
	if (atomic_load_explicit(&fault_op, memory_order_relaxed) != FAULT_WAIT)
		return 0;
	if (atomic_fetch_add(&fault_count, 1) + 1 != atomic_load(&fault_nth))
		return 0;
	return -atomic_load(&fault_err);
}

static void queue_free(struct aio_queue *q)
{
	if (!q)
		return;
	free(q->slots);
	free(q->batch);
	free(q->ready);
	free(q);
}

static int queue_alloc(unsigned capacity, struct aio_queue **out)
{
	struct aio_queue *q;
	unsigned i;
	int ret = 0;

	q = calloc(1, sizeof(*q));
	if (!q) {
		ret = -ENOMEM;
		goto exit;
	}
	q->capacity = capacity;
	q->slots = calloc(capacity, sizeof(q->slots[0]));
	q->batch = calloc(capacity, sizeof(q->batch[0]));
	q->ready = calloc(capacity, sizeof(q->ready[0]));
	if (!q->slots || !q->batch || !q->ready) {
		ret = -ENOMEM;
		goto exit;
	}
	for (i = 0; i < capacity; i++) {
		q->slots[i].idx = i;
		q->slots[i].next = i + 1 < capacity ? &q->slots[i + 1] : NULL;
	}
	q->free = &q->slots[0];
	q->pending_tail = &q->pending;
	*out = q;
	q = NULL;
exit:
	queue_free(q);
	return ret;
}

/* Create a queue on backend @b (not AIO_AUTO). */
static int queue_new_on(enum aio_backend b, unsigned capacity,
			struct aio_queue **out)
{
	struct aio_queue *q = NULL;
	int ret;

	ret = queue_alloc(capacity, &q);
	if (ret)
		goto exit;
	q->ops = backend_ops(b);
	ret = q->ops->init(q);
	if (ret)
		goto exit;
	*out = q;
	q = NULL;
exit:
	queue_free(q);
	return ret;
}

int aio_queue_new(enum aio_backend b, unsigned capacity, struct aio_queue **out,
		  const char **notice)
{
	int ret, disabled;

	if (notice)
		*notice = NULL;
	if (!out || capacity < 1 || capacity > 4096)
		return -EINVAL;
	fault_parse();
	if (b != AIO_AUTO)
		return backend_ops(b) ? queue_new_on(b, capacity, out) : -EINVAL;

	if (usable_cpus() >= AIO_AUTO_POOL_MIN_CPUS)
		return queue_new_on(AIO_THREADS, capacity, out);
	disabled = uring_sysctl_disabled();
	if (disabled == 2) {
		if (notice)
			*notice = "io_uring is disabled (kernel.io_uring_disabled=2); using the thread pool";
		return queue_new_on(AIO_THREADS, capacity, out);
	}
	ret = queue_new_on(AIO_URING, capacity, out);
	switch (ret) {
	case 0:
		return 0;
	case -ENOSYS:
		if (notice)
			*notice = "io_uring is not supported by this kernel (ENOSYS); using the thread pool";
		break;
	case -EPERM:
	case -EACCES:
		if (notice)
			*notice = disabled ?
				"io_uring is restricted (kernel.io_uring_disabled=1, not in io_uring_group); using the thread pool" :
				"io_uring is not permitted here (EPERM: seccomp or policy); using the thread pool";
		break;
	default:
		/* -ENOMEM (memlock on older kernels) and the like. */
		if (notice)
			*notice = "io_uring could not be set up; using the thread pool";
		break;
	}
	return queue_new_on(AIO_THREADS, capacity, out);
}

enum aio_backend aio_queue_backend(const struct aio_queue *q)
{
	return q->ops->backend;
}

unsigned aio_capacity(const struct aio_queue *q)
{
	return q->capacity;
}

unsigned aio_inflight(const struct aio_queue *q)
{
	return q->inflight;
}

/* Returns the bytes @req asks for, or -EINVAL. */
static int64_t req_total(const struct aio_req *req)
{
	uint64_t total = 0;
	size_t i;

	switch (req->op) {
	case AIO_OP_READ:
	case AIO_OP_WRITE:
		if (req->len > (size_t)SSIZE_MAX || (req->len && !req->buf))
			return -EINVAL;
		total = req->len;
		break;
	case AIO_OP_READV:
	case AIO_OP_WRITEV:
		if (req->len > IOV_MAX || (req->len && !req->iov))
			return -EINVAL;
		for (i = 0; i < req->len; i++) {
			if (req->iov[i].iov_len > (size_t)SSIZE_MAX - total)
				return -EINVAL;
			if (req->iov[i].iov_len && !req->iov[i].iov_base)
				return -EINVAL;
			total += req->iov[i].iov_len;
		}
		break;
	default:
		return -EINVAL;
	}
	if (req->off > (uint64_t)INT64_MAX - total)
		return -EINVAL;
	return (int64_t)total;
}

int aio_add(struct aio_queue *q, const struct aio_req *req)
{
	struct aio_slot *s;
	int64_t total;

	if (!q || !req)
		return -EINVAL;
	total = req_total(req);
	if (total < 0)
		return (int)total;
	/* Slots are recycled at finish, but completions wait in the ring. */
	if (q->inflight >= q->capacity || !q->free)
		return -EAGAIN;
	s = q->free;
	q->free = s->next;
	s->req = *req;
	s->total = (uint64_t)total;
	s->done = 0;
	s->res = 0;
	s->retries = 0;
	s->next = NULL;
	*q->pending_tail = s;
	q->pending_tail = &s->next;
	q->npending++;
	q->inflight++;
	return 0;
}

int aio_submit(struct aio_queue *q)
{
	struct aio_slot *s;
	unsigned n = 0;
	int ret;

	if (!q)
		return -EINVAL;
	if (!q->npending)
		return 0;
	for (s = q->pending; s; s = s->next)
		q->batch[n++] = s;
	q->pending = NULL;
	q->pending_tail = &q->pending;
	q->npending = 0;
	q->held += n;
	ret = q->ops->submit(q, q->batch, n);
	return ret;
}

void aio_slot_finish(struct aio_queue *q, struct aio_slot *s)
{
	unsigned tail = (q->ready_head + q->nready) % q->capacity;

	q->ready[tail].id = s->req.id;
	q->ready[tail].res = fault_apply(s->req.op, s->res);
	q->nready++;
	q->held--;
	s->next = q->free;
	q->free = s;
}

int aio_wait(struct aio_queue *q, unsigned min, struct aio_completion *out,
	     unsigned max)
{
	unsigned n = 0;
	int ret = 0;

	if (!q || (max && !out))
		return -EINVAL;
	ret = fault_wait();
	if (ret)
		return ret;
	/* Requests still pending can only complete once started. */
	if (q->npending) {
		ret = aio_submit(q);
		if (ret)
			goto exit;
	}
	if (min > q->inflight)
		min = q->inflight;
	if (q->held) {
		ret = q->ops->reap(q, min > q->nready ? min - q->nready : 0);
		if (ret)
			goto exit;
	}
	while (n < max && q->nready) {
		out[n++] = q->ready[q->ready_head];
		q->ready_head = (q->ready_head + 1) % q->capacity;
		q->nready--;
		q->inflight--;
	}
exit:
	return n ? (int)n : ret;
}

void aio_queue_destroy(struct aio_queue *q)
{
	if (!q)
		return;
	/* Added but never submitted: no backend has seen them. */
	q->ops->destroy(q);
	queue_free(q);
}

/* ---- helpers for the backends ------------------------------------------ */

void aio_slot_next_call(const struct aio_slot *s, struct aio_call *c)
{
	const struct aio_req *r = &s->req;
	uint64_t skip = s->done;
	size_t i;

	c->write = r->op == AIO_OP_WRITE || r->op == AIO_OP_WRITEV;
	c->fd = r->fd;
	c->off = r->off + s->done;
	if (r->op == AIO_OP_READ || r->op == AIO_OP_WRITE) {
		c->vec = false;
		c->buf = (char *)r->buf + s->done;
		c->len = r->len - s->done;
		if (c->len > AIO_CALL_MAX)
			c->len = AIO_CALL_MAX;
		return;
	}
	/* Skip the iovecs already done; a partly done one goes alone. */
	for (i = 0; i < r->len && skip >= r->iov[i].iov_len; i++)
		skip -= r->iov[i].iov_len;
	if (skip && i < r->len) {
		c->vec = false;
		c->buf = (char *)r->iov[i].iov_base + skip;
		c->len = r->iov[i].iov_len - skip;
		return;
	}
	c->vec = true;
	c->iov = r->iov + i;
	c->iovcnt = (int)(r->len - i);
}

bool aio_slot_advance(struct aio_slot *s, int64_t res)
{
	bool write = s->req.op == AIO_OP_WRITE || s->req.op == AIO_OP_WRITEV;

	if (res < 0) {
		/* Like read(2): a read that moved data reports it. */
		s->res = !write && s->done ? (int64_t)s->done : res;
		return true;
	}
	if (res == 0 && s->done < s->total) {
		s->res = write ? -EIO : (int64_t)s->done;
		return true;
	}
	s->done += (uint64_t)res;
	if (s->done >= s->total) {
		s->done = s->total;
		s->res = (int64_t)s->total;
		return true;
	}
	return false;
}

bool aio_slot_complete(struct aio_slot *s, int64_t res, bool stopping)
{
	if (stopping) {
		/* Nobody will see the result: no resubmission. */
		if (!aio_slot_advance(s, res))
			s->res = (int64_t)s->done;
		return true;
	}
	if (res == -EAGAIN) {
		if (s->retries++ < AIO_EAGAIN_RETRIES)
			return false;
		aio_slot_run_sync(s);
		return true;
	}
	return aio_slot_advance(s, res);
}

int64_t aio_call_sync(const struct aio_call *c)
{
	ssize_t n;

	if (c->vec)
		n = c->write ? pwritev2(c->fd, c->iov, c->iovcnt, (off_t)c->off, 0) :
			       preadv2(c->fd, c->iov, c->iovcnt, (off_t)c->off, 0);
	else
		n = c->write ? pwrite(c->fd, c->buf, c->len, (off_t)c->off) :
			       pread(c->fd, c->buf, c->len, (off_t)c->off);
	return n < 0 ? -errno : (int64_t)n;
}

int64_t aio_slot_run_sync(struct aio_slot *s)
{
	struct aio_call c;
	int64_t n;

	do {
		do {
			aio_slot_next_call(s, &c);
			n = aio_call_sync(&c);
		} while (n == -EINTR);
	} while (!aio_slot_advance(s, n));
	return s->res;
}
