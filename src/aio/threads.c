/* SPDX-License-Identifier: Apache-2.0 */
/*
 * threads.c - the thread-pool backend of the async I/O queue, like
 * gVisor's goroutine-pool pkg/aio: workers take requests off a FIFO, do
 * them with pread/pwrite/preadv2/pwritev2 (looping on short transfers),
 * and put the finished slots on a done list that the queue owner moves
 * into the ready ring in its reap hook.
 *
 * A waiting owner does queued requests itself instead of sleeping.
 * Writes to one file run one at a time, in order, as io_uring runs
 * buffered writes to a regular file (its hashed io-wq work): the kernel
 * serialises them on the inode lock anyway, and a second writer would
 * only spin on that lock with a core another request could use. Reads
 * and writes to other files run beside them.
 *
 * One mutex guards both lists. Workers block every signal, so a
 * program's signal handlers never run on them and their system calls
 * never see EINTR. The pool has min(capacity, $PGCKPT_AIO_THREADS or its
 * default) workers (src/util/options.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "aio_impl.h"
#include "util/options.h"
#include "util/util.h"

struct tpool {
	pthread_mutex_t mu;
	pthread_cond_t work_cv;		/* todo became non-empty, or stop */
	pthread_cond_t done_cv;		/* ndone reached want */
	struct aio_slot *todo, **todo_tail;
	struct aio_slot *done, **done_tail;
	unsigned ndone;
	unsigned want;			/* the owner sleeps until ndone >= want (0: not sleeping) */
	unsigned idle;			/* workers waiting on work_cv */
	int *wfds;			/* files with a write running (nwfds of them) */
	unsigned nwfds;
	bool stop;
	unsigned nthreads;
	pthread_t *tids;
};

static bool is_write(const struct aio_slot *s)
{
	return s->req.op == AIO_OP_WRITE || s->req.op == AIO_OP_WRITEV;
}

static bool writing_locked(const struct tpool *p, int fd)
{
	unsigned i;

	for (i = 0; i < p->nwfds; i++)
		if (p->wfds[i] == fd)
			return true;
	return false;
}

/*
 * Unlink and return the first queued request that may start now (not a
 * write to a file another write is running on), or NULL.
 */
static struct aio_slot *take_locked(struct tpool *p)
{
	struct aio_slot **link, *s;

	for (link = &p->todo; (s = *link); link = &s->next) {
		if (is_write(s) && writing_locked(p, s->req.fd))
			continue;
		*link = s->next;
		if (!*link)
			p->todo_tail = link;
		return s;
	}
	return NULL;
}

/*
 * Run @s (taken off the queue) without the lock and move it to the done
 * list, waking the owner once enough are done. Called and returns with
 * p->mu held.
 */
static void run_one_locked(struct tpool *p, struct aio_slot *s)
{
	bool w = is_write(s);
	unsigned i;

	if (w)
		p->wfds[p->nwfds++] = s->req.fd;
	pthread_mutex_unlock(&p->mu);

	aio_slot_run_sync(s);

	pthread_mutex_lock(&p->mu);
	if (w) {
		for (i = 0; p->wfds[i] != s->req.fd; i++)
			;
		p->wfds[i] = p->wfds[--p->nwfds];
		/* A write held back behind this one may start now. */
		if (p->todo && p->idle)
			pthread_cond_signal(&p->work_cv);
	}
	s->next = NULL;
	*p->done_tail = s;
	p->done_tail = &s->next;
	p->ndone++;
	if (p->want && p->ndone >= p->want)
		pthread_cond_signal(&p->done_cv);
}

static void *worker(void *arg)
{
	struct tpool *p = arg;
	struct aio_slot *s;

	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		s = take_locked(p);
		if (!s) {
			p->idle++;
			pthread_cond_wait(&p->work_cv, &p->mu);
			p->idle--;
			continue;
		}
		run_one_locked(p, s);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static unsigned pool_size(unsigned capacity)
{
	int64_t n = opt_env_int(OPT_AIO_THREADS);

	return (unsigned)n < capacity ? (unsigned)n : capacity;
}

/* Stop the workers (those in @p->tids[0..n)) and free @p. Drops work not started. */
static void pool_stop(struct tpool *p, unsigned n)
{
	unsigned i;

	pthread_mutex_lock(&p->mu);
	p->stop = true;
	p->todo = NULL;
	p->todo_tail = &p->todo;
	pthread_cond_broadcast(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
	/* A worker busy with a request finishes it first: join waits for that. */
	for (i = 0; i < n; i++)
		pthread_join(p->tids[i], NULL);
	pthread_cond_destroy(&p->done_cv);
	pthread_cond_destroy(&p->work_cv);
	pthread_mutex_destroy(&p->mu);
	free(p->tids);
	free(p->wfds);
	free(p);
}

static int tp_init(struct aio_queue *q)
{
	struct tpool *p;
	unsigned i = 0;
	int ret = 0;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->nthreads = pool_size(q->capacity);
	p->tids = calloc(p->nthreads, sizeof(p->tids[0]));
	/* Every worker and the owner may be writing, each to its own file. */
	p->wfds = calloc(p->nthreads + 1, sizeof(p->wfds[0]));
	if (!p->tids || !p->wfds) {
		free(p->tids);
		free(p->wfds);
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work_cv, NULL);
	pthread_cond_init(&p->done_cv, NULL);
	p->todo_tail = &p->todo;
	p->done_tail = &p->done;

	for (i = 0; i < p->nthreads; i++) {
		ret = util_thread_create(&p->tids[i], worker, p);
		if (ret)
			break;
	}
	if (ret)
		goto exit;
	q->priv = p;
	p = NULL;
exit:
	if (p)
		pool_stop(p, i);
	return ret;
}

static int tp_submit(struct aio_queue *q, struct aio_slot **slots, unsigned n)
{
	struct tpool *p = q->priv;
	unsigned i, wake;

	pthread_mutex_lock(&p->mu);
	for (i = 0; i < n; i++) {
		slots[i]->next = NULL;
		*p->todo_tail = slots[i];
		p->todo_tail = &slots[i]->next;
	}
	wake = n < p->idle ? n : p->idle;
	if (wake == p->nthreads)
		pthread_cond_broadcast(&p->work_cv);
	else
		for (i = 0; i < wake; i++)
			pthread_cond_signal(&p->work_cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static int tp_reap(struct aio_queue *q, unsigned min)
{
	struct tpool *p = q->priv;
	struct aio_slot *s, *next;

	pthread_mutex_lock(&p->mu);
	while (p->ndone < min) {
		/*
		 * Rather than sleep while requests wait for a worker, do one:
		 * at depth 1 that saves two wake-ups per request.
		 */
		if ((s = take_locked(p)) != NULL) {
			run_one_locked(p, s);
			continue;
		}
		p->want = min;
		pthread_cond_wait(&p->done_cv, &p->mu);
		p->want = 0;
	}
	s = p->done;
	p->done = NULL;
	p->done_tail = &p->done;
	p->ndone = 0;
	pthread_mutex_unlock(&p->mu);

	for (; s; s = next) {
		next = s->next;
		aio_slot_finish(q, s);
	}
	return 0;
}

static void tp_destroy(struct aio_queue *q)
{
	struct tpool *p = q->priv;

	if (p)
		pool_stop(p, p->nthreads);
	q->priv = NULL;
}

const struct aio_ops aio_threads_ops = {
	.backend = AIO_THREADS,
	.init = tp_init,
	.submit = tp_submit,
	.reap = tp_reap,
	.destroy = tp_destroy,
};
