/* SPDX-License-Identifier: Apache-2.0 */
/*
 * thread.c - how the library starts its threads (reclaimer, evictions,
 * PSI watcher, save and load workers, the aio thread pool): with every
 * signal blocked, so that a signal meant for the application is never
 * delivered to a library thread, except the ones a fault raises (SIGBUS,
 * SIGSEGV, SIGFPE, SIGILL). Those go to the faulting thread whatever its
 * mask, and a blocked one kills the process outright: left unblocked,
 * they reach the handler the application installed (pgckpt's save
 * handles SIGBUS from a source that shrinks). Background work may run
 * at a lower priority than the threads waiting for it (util_thread_nice).
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "util/util.h"

int util_thread_create(pthread_t *tid, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int ret;

	/* The new thread inherits the mask in force when it is created. */
	sigfillset(&all);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(tid, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

void util_thread_nice(int inc)
{
	int cur;

	if (inc <= 0)
		return;
	if (inc >= UTIL_NICE_IDLE) {
		struct sched_param sp = { 0 };

		(void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
		return;
	}
	errno = 0;
	cur = getpriority(PRIO_PROCESS, (id_t)gettid());
	if (cur == -1 && errno)
		return;
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), cur + inc > 19 ? 19 : cur + inc);
}
