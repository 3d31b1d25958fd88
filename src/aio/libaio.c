/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libaio.c - the Linux native AIO backend of the async I/O queue
 * (io_setup / io_submit / io_getevents through libaio). One iocb per
 * slot; short transfers are resubmitted for the remainder.
 *
 * Native AIO is only asynchronous for O_DIRECT: on buffered files
 * io_submit() does the copy (and any disk read) before it returns, so
 * this backend then behaves like synchronous I/O done in batches; see
 * docs/aio.md for the numbers. A request the kernel refuses at
 * io_submit() (bad fd, ...) completes with that -errno, except -EINVAL
 * (the file cannot do native AIO), which is done synchronously; -EAGAIN (no kernel resources) keeps the rest on a backlog that
 * is retried once completions have been reaped.
 */
#include <errno.h>
#include <libaio.h>
#include <stdlib.h>
#include <time.h>

#include "aio_impl.h"

struct laio {
	io_context_t ctx;
	struct iocb *iocbs;		/* one per slot, by slot index */
	struct iocb **ptrs;		/* capacity: io_submit argument */
	struct io_event *events;	/* capacity */
	struct aio_slot **backlog;	/* capacity: prepared, not accepted yet */
	unsigned char *inkernel;	/* by slot index: the kernel holds its iocb */
	unsigned nbacklog;
	unsigned nkernel;		/* iocbs the kernel holds */
	bool stopping;
};

static void prep(struct laio *a, struct aio_slot *s)
{
	struct iocb *cb = &a->iocbs[s->idx];
	struct aio_call c;

	aio_slot_next_call(s, &c);
	if (c.vec) {
		if (c.write)
			io_prep_pwritev(cb, c.fd, c.iov, c.iovcnt, (long long)c.off);
		else
			io_prep_preadv(cb, c.fd, c.iov, c.iovcnt, (long long)c.off);
	} else {
		if (c.write)
			io_prep_pwrite(cb, c.fd, c.buf, c.len, (long long)c.off);
		else
			io_prep_pread(cb, c.fd, c.buf, c.len, (long long)c.off);
	}
	cb->data = s;
}

/*
 * Submit the backlog. A refused iocb finishes with its error; -EAGAIN
 * leaves the rest queued (done synchronously when nothing is in flight
 * to free resources).
 */
static void flush(struct aio_queue *q, struct laio *a)
{
	unsigned i, done = 0;
	struct aio_slot *s;
	int ret;

	while (done < a->nbacklog) {
		for (i = done; i < a->nbacklog; i++)
			a->ptrs[i - done] = &a->iocbs[a->backlog[i]->idx];
		ret = io_submit(a->ctx, (long)(a->nbacklog - done), a->ptrs);
		if (ret > 0) {
			for (i = 0; i < (unsigned)ret; i++)
				a->inkernel[a->backlog[done + i]->idx] = 1;
			done += (unsigned)ret;
			a->nkernel += (unsigned)ret;
			continue;
		}
		if (ret == -EINTR)
			continue;
		s = a->backlog[done];
		if (ret == -EAGAIN || ret == 0) {
			if (a->nkernel)
				break;
			/* Nothing to wait for: do this one ourselves. */
			aio_slot_run_sync(s);
		} else if (ret == -EINVAL) {
			/*
			 * The iocb is valid, so the file cannot do native AIO
			 * (no read_iter/write_iter, e.g. /dev/full): do it
			 * synchronously for the errno a plain call gives.
			 */
			aio_slot_run_sync(s);
		} else {
			/* Refused (-EBADF, -EINVAL, ...): that is its result. */
			aio_slot_advance(s, ret);
		}
		aio_slot_finish(q, s);
		done++;
	}
	for (i = done; i < a->nbacklog; i++)
		a->backlog[i - done] = a->backlog[i];
	a->nbacklog -= done;
}

static void la_free(struct laio *a)
{
	free(a->iocbs);
	free(a->ptrs);
	free(a->events);
	free(a->backlog);
	free(a->inkernel);
	free(a);
}

static int la_init(struct aio_queue *q)
{
	struct laio *a;
	int ret;

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->iocbs = calloc(q->capacity, sizeof(a->iocbs[0]));
	a->ptrs = calloc(q->capacity, sizeof(a->ptrs[0]));
	a->events = calloc(q->capacity, sizeof(a->events[0]));
	a->backlog = calloc(q->capacity, sizeof(a->backlog[0]));
	a->inkernel = calloc(q->capacity, 1);
	if (!a->iocbs || !a->ptrs || !a->events || !a->backlog || !a->inkernel) {
		ret = -ENOMEM;
		goto exit;
	}
	ret = io_setup((int)q->capacity, &a->ctx);
	if (ret)
		goto exit;
	q->priv = a;
	a = NULL;
exit:
	if (a)
		la_free(a);
	return ret;
}

static int la_submit(struct aio_queue *q, struct aio_slot **slots, unsigned n)
{
	struct laio *a = q->priv;
	unsigned i;

	for (i = 0; i < n; i++) {
		prep(a, slots[i]);
		a->backlog[a->nbacklog++] = slots[i];
	}
	flush(q, a);
	return 0;
}

/* Requeue @s for the rest of its transfer. */
static void requeue(struct laio *a, struct aio_slot *s)
{
	prep(a, s);
	a->backlog[a->nbacklog++] = s;
}

/* Handle one event; remainders of short transfers go on the backlog. */
static void on_event(struct aio_queue *q, struct laio *a, struct io_event *ev)
{
	struct aio_slot *s = ev->data;
	int64_t res = (int64_t)(long)ev->res;

	a->nkernel--;
	a->inkernel[s->idx] = 0;
	if (aio_slot_complete(s, res, a->stopping))
		aio_slot_finish(q, s);
	else
		requeue(a, s);
}

/*
 * Reap events until @want more slots have finished (0: only what is
 * ready without blocking) or, with @all, until the kernel holds nothing.
 * Returns 0 or -errno.
 */
static int reap_events(struct aio_queue *q, struct laio *a, unsigned want, bool all)
{
	struct timespec zero = { 0, 0 };
	unsigned start = q->nready;
	bool block;
	int n, i;

	for (;;) {
		if (a->nbacklog && !a->stopping)
			flush(q, a);
		/* flush() leaves a backlog only while the kernel holds iocbs. */
		if (!a->nkernel)
			break;
		block = all || q->nready - start < want;
		n = io_getevents(a->ctx, block ? 1 : 0, (long)q->capacity,
				 a->events, block ? NULL : &zero);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return n;
		for (i = 0; i < n; i++)
			on_event(q, a, &a->events[i]);
		if (n == 0 && !block)
			break;
	}
	return 0;
}

static int la_reap(struct aio_queue *q, unsigned min)
{
	return reap_events(q, q->priv, min, false);
}

static void la_destroy(struct aio_queue *q)
{
	struct laio *a = q->priv;
	struct io_event ev;
	unsigned i;

	if (!a)
		return;
	a->stopping = true;
	/* The backlog never reached the kernel. */
	a->nbacklog = 0;
	/*
	 * Try to cancel what the kernel holds (file I/O rarely can be);
	 * a cancelled iocb still posts its event, so reap them all.
	 */
	for (i = 0; i < q->capacity; i++) {
		/* 0: cancelled and the event is in @ev (older kernels). */
		if (a->inkernel[i] && io_cancel(a->ctx, &a->iocbs[i], &ev) == 0)
			on_event(q, a, &ev);
	}
	reap_events(q, a, 0, true);
	io_destroy(a->ctx);	/* also waits for anything still running */
	la_free(a);
	q->priv = NULL;
}

const struct aio_ops aio_libaio_ops = {
	.backend = AIO_LIBAIO,
	.init = la_init,
	.submit = la_submit,
	.reap = la_reap,
	.destroy = la_destroy,
};
