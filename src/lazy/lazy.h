/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lazy.h - lazy restore for other processes over userfaultfd: the page
 * server (server.c), the handoff message codec (handoff.c) and, declared
 * in pgckpt.h, the consumer helper pgc_lazy_attach (client.c).
 *
 * The wire protocol is Firecracker's snapshot UFFD handoff: the consumer
 * connects to a unix stream socket and sends one message, a JSON array of
 * {"base_host_virt_addr", "size", "offset", "page_size"} objects (the older
 * "page_size_kib", which carries bytes, is accepted too), with its
 * userfaultfd attached as SCM_RIGHTS. Nothing is sent back. docs/lazy.md
 * describes the protocol and the server's behaviour.
 *
 * These declarations are meant to move to include/pgckpt.h.
 */
#ifndef PGC_LAZY_H
#define PGC_LAZY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgckpt.h"

#define PGC_LAZY_MAX_REGIONS 1024
#define PGC_LAZY_MAX_MSG     (64 * 1024)   /* bytes of JSON in one handoff */

/* One region of the handoff, as it travels on the wire. */
struct pgc_lazy_map {
	uint64_t base;        /* base_host_virt_addr: consumer address */
	uint64_t size;        /* bytes */
	uint64_t offset;      /* memory-file offset of the region's first byte */
	uint64_t page_size;   /* bytes (only PGC_PAGE_SIZE is served) */
};

/*
 * pgc_lazy_parse_regions - parse the handoff JSON in @buf (@len bytes, no
 * terminator needed) into at most @max entries of @out; *@n gets the count.
 * Strict: one array of one or more objects whose values are unsigned
 * decimal integers; unknown keys (with integer values) are ignored,
 * duplicate or missing required keys are errors.
 * Returns 0; -ENODATA if @buf is a valid but incomplete prefix (more bytes
 * may complete it); -E2BIG for more than @max regions; -EINVAL otherwise.
 * Never reads outside @buf. Values are not range-checked here.
 */
int pgc_lazy_parse_regions(const char *buf, size_t len, struct pgc_lazy_map *out,
			   size_t max, size_t *n);

/*
 * pgc_lazy_format_regions - write @n regions as handoff JSON into @buf
 * (@size bytes, NUL-terminated). Returns the length without the NUL, or
 * -ENOBUFS if @buf is too small.
 */
int pgc_lazy_format_regions(const struct pgc_lazy_map *m, size_t n, char *buf,
			    size_t size);

struct pgc_lazy_serve_opts {
	uint64_t fault_chunk;      /* bytes served around a fault: power of two, >= 4 KiB (64 KiB) */
	uint64_t push_chunk;       /* bytes per background push step: power of two (1 MiB) */
	bool no_push;              /* serve faults only: no background push (a baseline) */
	int accept_timeout_ms;     /* pgc_lazy_serve: wait for a consumer (-1: forever) */
	int handshake_timeout_ms;  /* wait for the handoff message (5000; -1: forever) */
	int cancel_fd;             /* -1, or an fd whose readability stops serving (-ECANCELED) */
};

/* Fill @o with the defaults above (cancel_fd -1, accept timeout -1). */
void pgc_lazy_serve_opts_init(struct pgc_lazy_serve_opts *o);

struct pgc_lazy_stats {
	uint64_t regions;
	uint64_t bytes_total;      /* bytes of all regions */
	uint64_t faults;           /* UFFD_EVENT_PAGEFAULT messages */
	uint64_t removes;          /* UFFD_EVENT_REMOVE messages */
	uint64_t bytes_copied;     /* placed with UFFDIO_COPY (faults and push) */
	uint64_t bytes_zeroed;     /* placed with UFFDIO_ZEROPAGE */
	uint64_t bytes_pushed;     /* of those, by the background push */
	uint64_t eexist;           /* pages found already present */
	uint64_t fault_ns_total;   /* fault message read to its page in place */
	uint64_t fault_ns_max;
	uint64_t ns_all_placed;    /* handoff to every page placed (0: never) */
	uint64_t ns_session;       /* handoff to end of session */
	bool consumer_gone;        /* ended because the consumer went away */
};

/*
 * pgc_lazy_listen - create a unix stream socket bound to @path (a stale
 * socket file is replaced) and listening. Returns the fd (O_CLOEXEC) or
 * -errno (-ENAMETOOLONG for a path that does not fit sun_path).
 */
int pgc_lazy_listen(const char *path);

/*
 * pgc_lazy_serve - accept one consumer on @listen_fd (waiting at most
 * opts->accept_timeout_ms: -ETIMEDOUT) and serve it as pgc_lazy_serve_conn.
 */
int pgc_lazy_serve(pgc_memfile *mf, int listen_fd, const struct pgc_lazy_serve_opts *opts,
		   struct pgc_lazy_stats *stats);

/*
 * pgc_lazy_serve_conn - receive the handoff on the connected socket @conn
 * (closed before returning) and serve the consumer's page faults from @mf,
 * which may still be loading in the background: a fault maps the aligned
 * fault_chunk around it (so it jumps the loader's queue) and places it with
 * UFFDIO_COPY, or UFFDIO_ZEROPAGE for holes and zero pages; meanwhile every
 * other page is pushed in memory-file offset order. After UFFD_EVENT_REMOVE
 * the removed pages are served as zeros. When every page is placed, the
 * regions are unregistered from the uffd (later misses are ordinary zero
 * faults) and the session ends.
 * Several sessions may serve the same @mf concurrently from different
 * threads. @opts and @stats may be NULL.
 * Returns 0 when the session ended normally (all placed, or the consumer
 * went away: stats->consumer_gone); -EPROTO (no fd, several fds, not a
 * userfaultfd, peer closed early), -EINVAL (bad JSON or regions outside
 * the memory file), -EOPNOTSUPP (page_size other than 4 KiB), -ETIMEDOUT
 * (no handoff in time), -ECANCELED (cancel_fd), the load error if the
 * background load failed (the consumer's faulting threads then stay
 * blocked: never wrong memory; the caller should stop the consumer), or
 * another -errno.
 */
int pgc_lazy_serve_conn(pgc_memfile *mf, int conn, const struct pgc_lazy_serve_opts *opts,
			struct pgc_lazy_stats *stats);

#endif /* PGC_LAZY_H */
