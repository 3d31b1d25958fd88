/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lazy.h - lazy restore for other processes over userfaultfd: the page
 * server (server.c, its push in push.c, both sharing server_int.h), the
 * listening socket and the receipt of a handoff (handshake.c), the
 * handoff message codec (handoff.c) and, declared in pgckpt.h, the
 * consumer helper pgc_lazy_attach (client.c).
 *
 * The wire protocol is Firecracker's snapshot UFFD handoff: the consumer
 * connects to a unix stream socket and sends one message, a JSON array of
 * {"base_host_virt_addr", "size", "offset", "page_size"} objects (the older
 * "page_size_kib", which carries bytes, instead of or beside "page_size"),
 * with its userfaultfd attached as SCM_RIGHTS. Nothing is sent back. docs/lazy.md
 * describes the protocol and the server's behaviour.
 *
 * The server API (pgc_lazy_listen, pgc_lazy_serve, pgc_lazy_serve_conn,
 * their options and statistics) is public, in pgckpt.h.
 */
#ifndef PGC_LAZY_H
#define PGC_LAZY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgckpt.h"

#define LAZY_MAX_REGIONS 1024
#define LAZY_MAX_MSG     (256 * 1024)  /* bytes of JSON in one handoff */
/*
 * The longest region lazy_format_regions writes (the form with both
 * page_size and page_size_kib): five keys, five 20-digit values, braces
 * and a comma. LAZY_MAX_MSG holds LAZY_MAX_REGIONS of them
 * (checked in handshake.c).
 */
#define LAZY_REGION_JSON_MAX 173

/* One region of the handoff, as it travels on the wire. */
struct lazy_map {
	uint64_t base;        /* base_host_virt_addr: consumer address */
	uint64_t size;        /* bytes */
	uint64_t offset;      /* memory-file offset of the region's first byte */
	uint64_t page_size;   /* bytes (only PGC_PAGE_SIZE is served) */
};

/* A consumer's connection while its handoff arrives (handshake.c). */
struct pgc_lazy_conn {
	int fd;               /* the connected socket */
	long pid;             /* SO_PEERCRED */
	uint32_t uid;
	char *buf;            /* JSON so far, grown up to LAZY_MAX_MSG */
	size_t len, cap;
	int uffd;             /* the fd that came with the message, or -1 */
	struct lazy_map *maps; /* the regions, once complete */
	size_t nmaps;
	bool done;            /* a complete, well-formed handoff */
};

/*
 * lazy_parse_regions - parse the handoff JSON in @buf (@len bytes, no
 * terminator needed) into at most @max entries of @out; *@n gets the count.
 * Strict: one array of one or more objects. The known keys take unsigned
 * decimal integers and may not repeat; "base_host_virt_addr", "size" and
 * "offset" are required, and "page_size" or "page_size_kib" (bytes) or
 * both, which must then be equal. Keys are plain strings (no escapes).
 * Any other key is skipped with its value, whatever JSON value it is
 * (containers nested at most 32 deep); strings must be well-formed UTF-8.
 * Returns 0; -ENODATA if @buf is a valid but incomplete prefix (more bytes
 * may complete it); -E2BIG for more than @max regions; -EINVAL otherwise.
 * Never reads outside @buf. Values are not range-checked here.
 */
int lazy_parse_regions(const char *buf, size_t len, struct lazy_map *out,
		   size_t max, size_t *n);

/* Which page-size key(s) a handoff carries, as Firecracker versions write it. */
enum lazy_form {
	LAZY_FORM_PAGE_SIZE,   /* "page_size": what pgc_lazy_attach sends */
	LAZY_FORM_KIB,         /* "page_size_kib" only: Firecracker 1.0-1.6 */
	LAZY_FORM_BOTH,        /* both, equal: Firecracker 1.7 and later */
};

/*
 * lazy_format_regions - write @n regions as handoff JSON of form
 * @form into @buf (@size bytes, NUL-terminated). Returns the length
 * without the NUL, or -ENOBUFS if @buf is too small.
 */
int lazy_format_regions(const struct lazy_map *m, size_t n, enum lazy_form form,
		    char *buf, size_t size);

/*
 * lazy_uffd_open - a userfaultfd (O_CLOEXEC | O_NONBLOCK), user-mode-only
 * when the process lacks the privilege to handle kernel-mode faults (the
 * kind pgc_lazy_attach hands over). Returns the fd or -errno.
 */
int lazy_uffd_open(void);

#endif /* PGC_LAZY_H */
