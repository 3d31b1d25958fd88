/* SPDX-License-Identifier: Apache-2.0 */
/*
 * options.h - the one table of every tunable users can set: the defaults
 * and bounds behind the option structs of pgckpt.h, and the environment
 * variables the library reads. Code reads defaults, bounds and variables
 * through here, never with a constant or an environment look-up of its
 * own; docs/tunables.md is this table in prose (tests/unit/options.c
 * keeps the two in step).
 * Variables that exist only for tests are a separate table (test_hook).
 * Also the check of the reserved[] words that let public structs grow.
 */
#ifndef PGC_OPTIONS_H
#define PGC_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum opt_id {
	OPT_AIO,                      /* $PGCKPT_AIO: I/O backend name */
	OPT_AIO_THREADS,              /* $PGCKPT_AIO_THREADS: thread-pool workers */
	OPT_JOBS,                     /* save/load jobs: 0 means online CPUs */
	OPT_SAVE_LEVEL,
	OPT_SAVE_BLOCK_SIZE,
	OPT_LOAD_MAX_READ,
	OPT_LOAD_MAX_IOVECS,
	OPT_LOAD_MAX_INFLIGHT,
	OPT_LOAD_FILL_NICE,           /* $PGCKPT_FILL_NICE: background decode workers' nice */
	OPT_LAZY_FAULT_BYTES,
	OPT_LAZY_PUSH_BYTES,
	OPT_LAZY_ACCEPT_TIMEOUT_MS,
	OPT_LAZY_HANDSHAKE_TIMEOUT_MS,
	OPT_LAZY_RECORD_MS,           /* $PGCKPT_WS_RECORD_MS: page-exact recording window */
	OPT_LAZY_SPIN_US,             /* $PGCKPT_LAZY_SPIN_US: look for a fault before sleeping */
	OPT_COUNT
};

struct opt_desc {
	const char *name;     /* as in docs/tunables.md */
	const char *env;      /* environment variable, or NULL */
	const char *field;    /* the pgckpt.h field that sets it, or NULL */
	const char *flag;     /* the pgckpt command's option, or NULL */
	const char *def_str;  /* default of a string tunable, else NULL */
	int64_t def, min, max;
	bool bytes;           /* def, min and max are byte counts */
	const char *doc;      /* one line: what it is and what the bounds mean */
};

/* opt_desc - the table's entry for @id (never NULL for id < OPT_COUNT). */
const struct opt_desc *opt_desc(enum opt_id id);

/* opt_default, opt_min, opt_max - the default and bounds of @id. */
int64_t opt_default(enum opt_id id);
int64_t opt_min(enum opt_id id);
int64_t opt_max(enum opt_id id);

/*
 * opt_env - the value of @id's environment variable, or NULL when it has
 * none, or the variable is unset or empty.
 */
const char *opt_env(enum opt_id id);

/*
 * opt_env_int - @id's environment variable as a number: the default when
 * unset, not a decimal number or below the minimum; the maximum when
 * above it.
 */
int64_t opt_env_int(enum opt_id id);

/* Variables only tests set: each changes a code path or injects a fault. */
enum hook_id {
	HOOK_FAULT_AIO,         /* $PGCKPT_FAULT_AIO: fail the Nth aio completion */
	HOOK_LOADER_NO_PWRITE,  /* $PGCKPT_LOADER_NO_PWRITE: loader decodes into the mapping */
	HOOK_LOADER_SLOW_BLOCK0_MS, /* $PGCKPT_LOADER_SLOW_BLOCK0_MS: block 0 decodes late */
	HOOK_COUNT
};

struct hook_desc {
	const char *env;
	const char *doc;
};

/* hook_desc - the hook table's entry for @id (never NULL for id < HOOK_COUNT). */
const struct hook_desc *hook_desc(enum hook_id id);

/* test_hook - the value of @id's variable, or NULL when unset. */
const char *test_hook(enum hook_id id);

/*
 * opts_reserved_zero - whether the reserved[] words of the public struct
 * @o are all zero ("Structs that grow" in pgckpt.h): functions taking
 * options return -EINVAL when they are not.
 */
#define opts_reserved_zero(o) \
	words_zero((o)->reserved, sizeof((o)->reserved) / sizeof((o)->reserved[0]))

static inline bool words_zero(const uint64_t *w, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (w[i])
			return false;
	return true;
}

#endif /* PGC_OPTIONS_H */
