/* SPDX-License-Identifier: Apache-2.0 */
/*
 * util.h - the few helpers every module of the library shares: starting a
 * library thread (thread.c), the monotonic clock (clock.c), and the page
 * helpers (page.c): the all-zero page test and the one bulk-populate path
 * with its one process-wide off switch. Error strings live in errors.c.
 *
 * src/util depends on nothing else of the library (tests/static/layering.sh
 * checks it): src/alloc, src/aio, src/statefile and src/engine build on
 * it. The lazy-restore helper and the command use only pgckpt.h.
 */
#ifndef PGC_UTIL_H
#define PGC_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * util_thread_create - start a library thread with every signal blocked
 * (signals belong to the application's threads) but those a fault raises
 * (SIGBUS, SIGSEGV, SIGFPE, SIGILL: blocked, they would kill the process
 * instead of reaching the application's handler). The caller's signal
 * mask is unchanged on return.
 * Returns 0 or -errno from pthread_create.
 */
int util_thread_create(pthread_t *tid, void *(*fn)(void *), void *arg);

/*
 * util_thread_nice - lower the calling thread's priority by @inc nice
 * steps (Linux: nice is per thread); 0 leaves it, and UTIL_NICE_IDLE or
 * more puts it in the idle class (SCHED_IDLE: it runs on CPU time no
 * other thread wants, and any other thread's wakeup preempts it). Best
 * effort: neither needs privilege, and failing only costs latency.
 */
#define UTIL_NICE_IDLE 20
void util_thread_nice(int inc);

/* util_now_ns - CLOCK_MONOTONIC in nanoseconds. */
uint64_t util_now_ns(void);

/* util_cpu_relax - a hint inside a spin loop (x86: PAUSE). */
static inline void util_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* util_page_is_zero - whether the PGC_PAGE_SIZE bytes at @p are all zero. */
bool util_page_is_zero(const void *p);

/*
 * util_populate_write - populate the whole pages inside [addr, addr+len)
 * writable in bulk, with one MADV_POPULATE_WRITE, so that writing them
 * takes no page faults. This is the library's only populate path, and it
 * has one process-wide off switch: once the kernel or a mapping does not
 * support it (EINVAL), no later call tries again.
 * Returns 0 (populated, or no whole page inside the range), -EOPNOTSUPP
 * (not done: the switch is off), -EAGAIN (not done this time: interrupted
 * or busy), or -ENOSPC / -ENOMEM when the host cannot back the pages (a
 * full tmpfs, no free huge pages): writing them would raise SIGBUS.
 */
int util_populate_write(void *addr, size_t len);

#endif /* PGC_UTIL_H */
