/* SPDX-License-Identifier: Apache-2.0 */
/*
 * aio.h - the async I/O queue that save and the background loader
 * share, modelled on gVisor's pkg/aio. (An eager restore uses no queue:
 * its decode workers read synchronously.)
 *
 * A queue holds at most aio_capacity() requests in flight. Callers add
 * requests, submit them, and wait for completions; each completion carries
 * the caller's id and a result (bytes transferred, or -errno). Short
 * transfers are completed by the layer, so a result shorter than the
 * request means end of file (reads) and never a partial write: a write
 * that cannot complete reports -EIO (or the errno the kernel gave).
 *
 * Backends (one file each, behind struct aio_ops): a pthread pool
 * (threads.c), libaio (libaio.c) and io_uring (uring.c, liburing 2.3 API).
 * A queue is not thread-safe: one thread adds, submits and waits.
 */
#ifndef PGC_AIO_H
#define PGC_AIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum aio_backend {
	AIO_AUTO = 0,
	AIO_THREADS,
	AIO_LIBAIO,
	AIO_URING,
};

enum aio_op {
	AIO_OP_READ = 0,
	AIO_OP_WRITE,
	AIO_OP_READV,
	AIO_OP_WRITEV,
};

struct aio_req {
	uint64_t id;               /* returned in the completion */
	enum aio_op op;
	int fd;
	uint64_t off;
	union {
		void *buf;                 /* READ, WRITE */
		const struct iovec *iov;   /* READV, WRITEV: must stay valid until completion */
	};
	size_t len;                /* READ, WRITE: bytes; READV, WRITEV: iovec count (<= IOV_MAX) */
};

struct aio_completion {
	uint64_t id;
	int64_t res;               /* bytes transferred, or -errno */
};

struct aio_queue;

/*
 * aio_parse_backend - "auto", "threads", "libaio" or "uring" (NULL or "":
 * $PGCKPT_AIO, else auto). Returns 0 and *@out, or -EINVAL.
 */
int aio_parse_backend(const char *name, enum aio_backend *out);

/* aio_backend_name - "threads", "libaio", "uring" ("auto" for AIO_AUTO). */
const char *aio_backend_name(enum aio_backend b);

/*
 * aio_queue_new - create a queue of @capacity (1..4096) requests with
 * backend @b. AIO_AUTO picks the best backend available and falls back
 * (io_uring disabled by sysctl, seccomp, ENOSYS, EPERM); @notice (if
 * non-NULL) then receives a static one-line explanation of the fallback,
 * or NULL when there was none. An explicit backend that is unavailable
 * fails with its -errno (-ENOSYS, -EPERM, ...).
 * Returns 0 or -errno.
 */
int aio_queue_new(enum aio_backend b, unsigned capacity, struct aio_queue **out,
		  const char **notice);

/* The backend a queue actually uses (never AIO_AUTO). */
enum aio_backend aio_queue_backend(const struct aio_queue *q);

/* aio_capacity - the most requests that may be in flight (added, not yet reaped). */
unsigned aio_capacity(const struct aio_queue *q);

/* aio_inflight - requests added and not yet returned by aio_wait(). */
unsigned aio_inflight(const struct aio_queue *q);

/*
 * aio_add - queue @req (not started until aio_submit()). Returns 0,
 * -EAGAIN if the queue is at capacity, -EINVAL for a bad request.
 */
int aio_add(struct aio_queue *q, const struct aio_req *req);

/* aio_submit - start every added request. Returns 0 or -errno. */
int aio_submit(struct aio_queue *q);

/*
 * aio_wait - wait until at least @min completions are available (min is
 * clamped to aio_inflight()), then store up to @max of them in @out,
 * including any others that are ready without blocking.
 * Returns the number stored (>= 0) or -errno.
 */
int aio_wait(struct aio_queue *q, unsigned min, struct aio_completion *out,
	     unsigned max);

/*
 * aio_queue_destroy - cancel or finish every request in flight and free
 * the queue; no buffer is touched after it returns. @q may be NULL.
 */
void aio_queue_destroy(struct aio_queue *q);

#endif /* PGC_AIO_H */
