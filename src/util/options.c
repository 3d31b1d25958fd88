/* SPDX-License-Identifier: Apache-2.0 */
/*
 * options.c - the table of every tunable and environment variable of the
 * library, with its default and bounds (options.h), and the separate
 * table of the variables only tests set. Adding a tunable is one entry
 * here, one line in docs/tunables.md (tests/unit/options.c checks that
 * the two agree), and reading it with opt_default() / opt_env().
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "util/options.h"

#define KiB (1LL << 10)
#define MiB (1LL << 20)

static const struct opt_desc opts[OPT_COUNT] = {
	[OPT_AIO] = {
		.name = "aio", .env = "PGCKPT_AIO",
		.field = "pgc_save_opts.aio, pgc_load_opts.aio", .flag = "--aio",
		.def_str = "auto",
		.doc = "I/O backend: auto, threads, libaio, uring (or io_uring); "
		       "a non-empty field wins over the variable",
	},
	[OPT_AIO_THREADS] = {
		.name = "aio_threads", .env = "PGCKPT_AIO_THREADS",
		.def = 8, .min = 1, .max = 256,
		.doc = "workers of a threads-backend queue, at most its capacity",
	},
	[OPT_JOBS] = {
		.name = "jobs",
		.field = "pgc_save_opts.jobs, pgc_load_opts.jobs", .flag = "-j",
		.def = 0, .min = 0, .max = 64,
		.doc = "compression / decompression threads; 0: online CPUs",
	},
	[OPT_SAVE_LEVEL] = {
		.name = "save.level", .field = "pgc_save_opts.level", .flag = "-c zstd:N",
		.def = 1, .min = 1, .max = 19,
		.doc = "zstd level; 0: the default",
	},
	[OPT_SAVE_BLOCK_SIZE] = {
		.name = "save.block_size", .field = "pgc_save_opts.block_size",
		.flag = "--block-size",
		.def = 1 * MiB, .min = 4 * KiB, .max = 4 * MiB, .bytes = true,
		.doc = "bytes of memory per block, a page multiple; 0: the default",
	},
	[OPT_LOAD_MAX_READ] = {
		.name = "load.max_read", .field = "pgc_load_opts.max_read",
		.def = 256 * KiB, .min = 1, .max = 64 * MiB, .bytes = true,
		.doc = "bytes per merged read (a read holds at least one block); 0: the default",
	},
	[OPT_LOAD_MAX_IOVECS] = {
		.name = "load.max_iovecs", .field = "pgc_load_opts.max_iovecs",
		.def = 64, .min = 1, .max = 1024,
		.doc = "iovecs per merged read; 0: the default",
	},
	[OPT_LOAD_MAX_INFLIGHT] = {
		.name = "load.max_inflight", .field = "pgc_load_opts.max_inflight",
		.def = 128, .min = 1, .max = 4096,
		.doc = "reads in flight; 0: the default",
	},
	[OPT_LOAD_FILL_NICE] = {
		.name = "load.fill_nice", .env = "PGCKPT_FILL_NICE",
		.def = 20, .min = 0, .max = 20,
		.doc = "nice value of a background load's decode workers, so that the "
		       "threads that wait for pages get the CPU first; 0: the caller's; "
		       "20: the idle class (SCHED_IDLE)",
	},
	[OPT_LAZY_FAULT_BYTES] = {
		.name = "lazy.fault_bytes", .field = "pgc_lazy_serve_opts.fault_bytes",
		.flag = "--fault-bytes",
		.def = 64 * KiB, .min = 4 * KiB, .max = 4 * MiB, .bytes = true,
		.doc = "bytes served around a fault, a power of two",
	},
	[OPT_LAZY_PUSH_BYTES] = {
		.name = "lazy.push_bytes", .field = "pgc_lazy_serve_opts.push_bytes",
		.def = 1 * MiB, .min = 4 * KiB, .max = 4 * MiB, .bytes = true,
		.doc = "bytes per background push step, a power of two",
	},
	[OPT_LAZY_ACCEPT_TIMEOUT_MS] = {
		.name = "lazy.accept_timeout_ms", .field = "pgc_lazy_serve_opts.accept_timeout_ms",
		.def = -1, .min = -1, .max = INT_MAX,
		.doc = "pgc_lazy_serve's wait for a consumer; -1: forever",
	},
	[OPT_LAZY_HANDSHAKE_TIMEOUT_MS] = {
		.name = "lazy.handshake_timeout_ms",
		.field = "pgc_lazy_serve_opts.handshake_timeout_ms",
		.flag = "--handshake-timeout SEC",
		.def = 1000, .min = -1, .max = INT_MAX,
		.doc = "wait for a consumer's handoff message; -1: forever",
	},
	[OPT_LAZY_RECORD_MS] = {
		.name = "lazy.record_ms", .env = "PGCKPT_WS_RECORD_MS",
		.def = 250, .min = 0, .max = 60000,
		.doc = "a recording session serves faults page by page without a push for "
		       "this long after the handoff, so that every page the consumer touches "
		       "is seen; 0: no such window",
	},
	[OPT_LAZY_SPIN_US] = {
		.name = "lazy.spin_us", .env = "PGCKPT_LAZY_SPIN_US",
		.def = 50, .min = 0, .max = 1000,
		.doc = "the page server looks for the next fault this long before it sleeps: "
		       "a fault that comes meanwhile costs no wakeup from idle (measured here: "
		       "~45 us each); 0: sleep at once",
	},
};

static const struct hook_desc hooks[HOOK_COUNT] = {
	[HOOK_FAULT_AIO] = {
		.env = "PGCKPT_FAULT_AIO",
		.doc = "read:N:ERRNO or write:N:ERRNO: the Nth read (or write) completion "
		       "since the last queue was made reports -ERRNO",
	},
	[HOOK_LOADER_NO_PWRITE] = {
		.env = "PGCKPT_LOADER_NO_PWRITE",
		.doc = "set (any value): the loader decodes into the mapping, as for hugetlbfs, "
		       "instead of pwrite",
	},
	[HOOK_LOADER_SLOW_BLOCK0_MS] = {
		.env = "PGCKPT_LOADER_SLOW_BLOCK0_MS",
		.doc = "N (1..60000): a decode worker sleeps N ms before decoding a read "
		       "that starts at block 0 (tests of the fault path)",
	},
};

const struct opt_desc *opt_desc(enum opt_id id)
{
	return &opts[id];
}

int64_t opt_default(enum opt_id id)
{
	return opts[id].def;
}

int64_t opt_min(enum opt_id id)
{
	return opts[id].min;
}

int64_t opt_max(enum opt_id id)
{
	return opts[id].max;
}

const char *opt_env(enum opt_id id)
{
	const char *v = opts[id].env ? getenv(opts[id].env) : NULL;

	return v && *v ? v : NULL;
}

int64_t opt_env_int(enum opt_id id)
{
	const char *v = opt_env(id);
	char *end;
	long long n;

	if (!v)
		return opts[id].def;
	n = strtoll(v, &end, 10);
	if (*end || n < opts[id].min)
		return opts[id].def;
	return n > opts[id].max ? opts[id].max : n;
}

const struct hook_desc *hook_desc(enum hook_id id)
{
	return &hooks[id];
}

const char *test_hook(enum hook_id id)
{
	return getenv(hooks[id].env);
}
