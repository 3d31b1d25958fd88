/* SPDX-License-Identifier: Apache-2.0 */
/*
 * aio_impl.h - what the common queue code (aio.c) and the backends
 * (threads.c, libaio.c, uring.c) share: the queue and slot layout, the
 * backend ops table, and the helpers that split a request into kernel
 * calls and finish short transfers.
 *
 * Every request lives in a slot from add to the aio_wait() that returns
 * it. The common code owns the slot lists and the ready ring; a backend
 * owns a slot from its submit hook until it hands the slot back with
 * aio_slot_finish(), which it must do from the queue owner's thread (the
 * thread pool collects completions in its workers and hands them back in
 * its reap hook). Not part of the public interface.
 *
 * Words: a "call" is one kernel read or write of a request (one pread,
 * one iocb, one SQE), at most AIO_CALL_MAX bytes; a request takes
 * several calls when it is large or transfers short. A "batch" is the
 * slots one aio_submit() hands the backend together.
 */
#ifndef PGC_AIO_IMPL_H
#define PGC_AIO_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "aio.h"

/* The most bytes one kernel call is asked to move (MAX_RW_COUNT is ~2 GiB). */
#define AIO_CALL_MAX (1UL << 30)

/* How often a backend resubmits a request that got -EAGAIN before it does it synchronously. */
#define AIO_EAGAIN_RETRIES 8

struct aio_slot {
	struct aio_req req;		/* the caller's request, copied */
	uint64_t total;			/* bytes requested */
	uint64_t done;			/* bytes transferred so far */
	int64_t res;			/* final result, set when finished */
	unsigned retries;		/* -EAGAIN resubmissions so far */
	unsigned idx;			/* index in q->slots (backends key arrays by it) */
	struct aio_slot *next;		/* free / pending / backend lists */
};

/* The next kernel call a slot needs: one buffer or a run of iovecs. */
struct aio_call {
	bool write;
	bool vec;
	int fd;
	uint64_t off;
	void *buf;			/* !vec */
	size_t len;			/* !vec: bytes */
	const struct iovec *iov;	/* vec */
	int iovcnt;			/* vec */
};

struct aio_queue;

struct aio_ops {
	enum aio_backend backend;
	/* Set up q->priv. Returns 0 or -errno (-ENOSYS, -EPERM: unavailable). */
	int (*init)(struct aio_queue *q);
	/*
	 * Take ownership of @n slots and start them. Every slot taken is
	 * eventually handed back with aio_slot_finish(), possibly at once
	 * (a request the kernel refuses finishes with its -errno).
	 * Returns 0, or -errno for a failure of the whole backend.
	 */
	int (*submit)(struct aio_queue *q, struct aio_slot **slots, unsigned n);
	/*
	 * Hand back at least @min finished slots (0: only those ready
	 * without blocking), plus any others ready without blocking.
	 * @min never exceeds the number of slots the backend holds.
	 * Returns 0 or -errno.
	 */
	int (*reap)(struct aio_queue *q, unsigned min);
	/* Cancel or finish everything held so no buffer is touched again; free q->priv. */
	void (*destroy)(struct aio_queue *q);
};

struct aio_queue {
	const struct aio_ops *ops;
	unsigned capacity;
	unsigned inflight;		/* added, not yet returned by aio_wait() */
	unsigned held;			/* owned by the backend */
	struct aio_slot *slots;		/* capacity of them */
	struct aio_slot *free;
	struct aio_slot *pending;	/* added, not submitted, in order */
	struct aio_slot **pending_tail;
	unsigned npending;
	struct aio_slot **batch;	/* capacity: scratch for aio_submit */
	struct aio_completion *ready;	/* ring of capacity */
	unsigned ready_head, nready;
	void *priv;			/* backend state */
};

extern const struct aio_ops aio_threads_ops;
extern const struct aio_ops aio_libaio_ops;
extern const struct aio_ops aio_uring_ops;

/*
 * aio_slot_finish - a backend hands @s back with its final result in
 * s->res. Call only from the queue owner's thread.
 */
void aio_slot_finish(struct aio_queue *q, struct aio_slot *s);

/*
 * aio_slot_next_call - the next kernel call @s needs (from s->done on).
 * Only valid while s->done < s->total, or for the first call.
 */
void aio_slot_next_call(const struct aio_slot *s, struct aio_call *c);

/*
 * aio_slot_advance - account a kernel call's result @res (bytes or
 * -errno) to @s. Returns true when @s is finished (s->res set: bytes,
 * the short count at end of file, or -errno; a write that moved nothing
 * gives -EIO; a read that fails after moving data reports the bytes
 * moved, as read(2) does), false when it needs another call.
 */
bool aio_slot_advance(struct aio_slot *s, int64_t res);

/*
 * aio_slot_complete - what a backend does with a kernel call's result
 * @res for @s: account it (aio_slot_advance); -EAGAIN is tried again
 * AIO_EAGAIN_RETRIES times, then the rest is done synchronously; while
 * @stopping nothing is tried again (nobody will see the result).
 * Returns true when @s is finished (hand it back with aio_slot_finish),
 * false when the backend must submit its next call.
 */
bool aio_slot_complete(struct aio_slot *s, int64_t res, bool stopping);

/*
 * aio_call_sync - do @c with pread/pwrite/preadv2/pwritev2.
 * Returns bytes moved or -errno.
 */
int64_t aio_call_sync(const struct aio_call *c);

/*
 * aio_slot_run_sync - do the rest of @s synchronously, retrying -EINTR
 * and short transfers. Returns the final result (also in s->res).
 */
int64_t aio_slot_run_sync(struct aio_slot *s);

#endif /* PGC_AIO_IMPL_H */
