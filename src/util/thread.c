/* SPDX-License-Identifier: Apache-2.0 */
/*
 * thread.c - how the library starts its threads (reclaimer, evictions,
 * PSI watcher, save and load workers, the aio thread pool): with every
 * signal blocked, so that a signal meant for the application is never
 * delivered to a library thread, except the ones a fault raises (SIGBUS,
 * SIGSEGV, SIGFPE, SIGILL). Those go to the faulting thread whatever its
 * mask, and a blocked one kills the process outright: left unblocked,
 * they reach the handler the application installed (pgckpt's save
 * handles SIGBUS from a source that shrinks).
 */
#include <signal.h>

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
