/* SPDX-License-Identifier: Apache-2.0 */
/*
 * uring.c - the io_uring backend of the async I/O queue (liburing, 2.3
 * API only). The ring has capacity entries (rounded up to a power of two
 * by the kernel) and a completion ring twice that, so neither can
 * overflow: each slot has at most one SQE or CQE at a time.
 *
 * aio_submit() prepares one SQE per request and enters the kernel once
 * for the whole batch. Completions are handled in batches from the CQ
 * ring; a short transfer is resubmitted for its remainder, and -EAGAIN
 * is resubmitted a few times and then done synchronously. Resubmissions
 * are entered together with the next wait.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>

#include "aio_impl.h"

#define URING_BATCH 64

struct uring {
	struct io_uring ring;
	unsigned nkernel;		/* slots with an SQE or CQE outstanding */
	bool stopping;
};

/* Queue @s's next kernel call on the SQ ring (never full: see above). */
static void prep(struct uring *u, struct aio_slot *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	struct aio_call c;

	aio_slot_next_call(s, &c);
	if (c.vec) {
		if (c.write)
			io_uring_prep_writev(sqe, c.fd, c.iov, (unsigned)c.iovcnt, c.off);
		else
			io_uring_prep_readv(sqe, c.fd, c.iov, (unsigned)c.iovcnt, c.off);
	} else {
		if (c.write)
			io_uring_prep_write(sqe, c.fd, c.buf, (unsigned)c.len, c.off);
		else
			io_uring_prep_read(sqe, c.fd, c.buf, (unsigned)c.len, c.off);
	}
	io_uring_sqe_set_data(sqe, s);
	u->nkernel++;
}

static int ur_init(struct aio_queue *q)
{
	struct io_uring_params p = { 0 };
	struct uring *u;
	int ret;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	/*
	 * Completions are only ever consumed by the owner thread while it is
	 * in (or just back from) the kernel, so cooperative task running
	 * saves the interrupts. Older kernels reject the flags: retry plain.
	 */
	p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	ret = io_uring_queue_init_params(q->capacity, &u->ring, &p);
	if (ret == -EINVAL) {
		p = (struct io_uring_params){ 0 };
		ret = io_uring_queue_init_params(q->capacity, &u->ring, &p);
	}
	if (ret)
		goto exit;
	q->priv = u;
	u = NULL;
exit:
	free(u);
	return ret;
}

/* Enter the kernel: submit what is queued, and wait for @wait_nr CQEs. */
static int enter(struct uring *u, unsigned wait_nr)
{
	int ret;

	do {
		ret = wait_nr ? io_uring_submit_and_wait(&u->ring, wait_nr) :
				io_uring_submit(&u->ring);
	} while (ret == -EINTR);
	/* -EAGAIN / -EBUSY: the kernel is short of resources; SQEs stay queued. */
	if (ret == -EAGAIN || ret == -EBUSY)
		ret = 0;
	return ret < 0 ? ret : 0;
}

static int ur_submit(struct aio_queue *q, struct aio_slot **slots, unsigned n)
{
	struct uring *u = q->priv;
	unsigned i;

	for (i = 0; i < n; i++)
		prep(u, slots[i]);
	return enter(u, 0);
}

/* Handle one CQE. */
static void on_cqe(struct aio_queue *q, struct uring *u, struct io_uring_cqe *cqe)
{
	struct aio_slot *s = io_uring_cqe_get_data(cqe);
	int64_t res = cqe->res;

	if (!s)
		return;		/* the cancel request of ur_destroy */
	u->nkernel--;
	if (aio_slot_complete(s, res, u->stopping))
		aio_slot_finish(q, s);
	else
		prep(u, s);
}

/* Handle every CQE in the ring, without entering the kernel. */
static void drain(struct aio_queue *q, struct uring *u)
{
	struct io_uring_cqe *cqes[URING_BATCH];
	unsigned n, i;

	do {
		n = io_uring_peek_batch_cqe(&u->ring, cqes, URING_BATCH);
		for (i = 0; i < n; i++)
			on_cqe(q, u, cqes[i]);
		io_uring_cq_advance(&u->ring, n);
	} while (n == URING_BATCH);
}

static int ur_reap(struct aio_queue *q, unsigned min)
{
	struct uring *u = q->priv;
	unsigned start = q->nready, got;
	int ret = 0;

	drain(q, u);
	while ((got = q->nready - start) < min) {
		/* Every unfinished slot has an SQE or CQE: waiting cannot hang. */
		ret = enter(u, min - got);
		if (ret)
			goto exit;
		drain(q, u);
	}
	/* Resubmissions made while draining. */
	if (io_uring_sq_ready(&u->ring))
		ret = enter(u, 0);
exit:
	return ret;
}

static void ur_destroy(struct aio_queue *q)
{
	struct uring *u = q->priv;
	struct io_uring_sqe *sqe;
	int tries = 0;

	if (!u)
		return;
	u->stopping = true;
	/*
	 * Cancel what can be cancelled (requests not yet started), then wait
	 * for every CQE: the ring's own teardown runs in the background and
	 * must not be what stops the kernel writing into our buffers.
	 */
	if (u->nkernel) {
		sqe = io_uring_get_sqe(&u->ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
			io_uring_sqe_set_data(sqe, NULL);
		}
	}
	while (u->nkernel && tries < 1000) {
		if (enter(u, 1))
			tries++;
		drain(q, u);
	}
	io_uring_queue_exit(&u->ring);
	free(u);
	q->priv = NULL;
}

const struct aio_ops aio_uring_ops = {
	.backend = AIO_URING,
	.init = ur_init,
	.submit = ur_submit,
	.reap = ur_reap,
	.destroy = ur_destroy,
};
