/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.h - internals shared by the files of the pgckpt command: exit
 * statuses, error reporting, option helpers, the terminal progress bar and
 * the cleanup that runs when SIGINT or SIGTERM arrives. The command is a
 * thin layer over the public API of libpgckpt (include/pgckpt.h); it is the
 * only part of pgckpt that prints.
 */
#ifndef PGCKPT_CLI_H
#define PGCKPT_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "pgckpt.h"

/* Exit statuses (docs/cli.md). */
enum {
	EXIT_OK    = 0,
	EXIT_USAGE = 1,
	EXIT_IO    = 2,
	EXIT_IMAGE = 3,
};

/* The subcommands; each returns an exit status. */
int cmd_save(int argc, char **argv);
int cmd_restore(int argc, char **argv);
/* restore --background --listen: the lazy page server (lazy.c). */
int cmd_restore_lazy(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_flatten(int argc, char **argv);
int cmd_ws_merge(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/*
 * cli_s3_run - run the subcommand @fn; when one argument is an
 * s3://BUCKET/PREFIX IMAGE, through a local copy (s3img.c): fetched before
 * the run, or for save uploaded after it (memfile.img last). Returns the
 * exit status (2 for an S3 failure).
 */
int cli_s3_run(const char *cmd, int (*fn)(int, char **), int argc, char **argv);

/*
 * cli_s3_load_opts - for the local copy @img of an s3:// image being
 * restored: read its pages.img by range from S3 (lo->pages_source), with
 * the S3 defaults for jobs (GETs in flight) and max_read. Else nothing.
 */
void cli_s3_load_opts(const char *img, struct pgc_load_opts *lo);

/*
 * cli_image_name - how to name @path to the user: the s3:// URL for
 * cli_s3_run's local copy (and URL/NAME for a file in it), else @path.
 */
const char *cli_image_name(const char *path);

/*
 * cli_cleanup_stage - the directory (NULL: none) that a SIGINT or SIGTERM
 * removes with all it holds: s3img.c's local copy.
 */
void cli_cleanup_stage(const char *dir);

/*
 * cli_cleanup_call - a function (NULL: none) that a SIGINT or SIGTERM
 * calls, from the signal thread, before the exit: s3img.c's abort of the
 * multipart upload in progress. Register and unregister it between
 * cli_cleanup_lock and unlock together with what it undoes.
 */
void cli_cleanup_call(void (*fn)(void *), void *arg);

/* cli_remove_tree - remove @dir and everything under it (symlinks not followed). */
void cli_remove_tree(const char *dir);

/* "pgckpt: CMD: FILE: MESSAGE" on stderr (FILE may be NULL). */
void cli_error(const char *cmd, const char *file, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Report the library error @err for @file and return the exit status it
 * maps to: EXIT_IMAGE for a bad image, EXIT_IO otherwise.
 */
int cli_fail(const char *cmd, const char *file, int err);

/*
 * cli_fail for an error from opening the image @img: a path that exists
 * but is not a directory is reported as "Not a pgckpt image" (exit 3).
 */
int cli_fail_image(const char *cmd, const char *img, int err);

/* A usage error: the message, a hint to --help, EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Print the --help text of @cmd (NULL: the command as a whole) to stdout. */
void cli_help(const char *cmd);

/* getopt_long's message for the option at @optopt / argv[optind - 1]. */
int cli_bad_option(const char *cmd, int opt, char **argv);

/* Parse "123", "64K", "2M", "1G". Returns 0 or -EINVAL / -ERANGE. */
int cli_parse_size(const char *s, uint64_t *out);

/* Parse a decimal integer in [min, max]. Returns 0 or -EINVAL. */
int cli_parse_int(const char *s, long min, long max, long *out);

/*
 * Options every command that loads or saves takes: -j N (1..1024) into
 * *@jobs, --aio B (a backend the library knows) into *@aio. Return 0, or
 * report the usage error and return EXIT_USAGE.
 */
int cli_opt_jobs(const char *cmd, const char *arg, int *jobs);
int cli_opt_aio(const char *cmd, const char *arg, const char **aio);

/*
 * The save options save and bench share: -c zstd[:1..19]|none and
 * --block-size S (a multiple of 4K up to 4M) into @so. Return 0, or
 * report the usage error and return EXIT_USAGE.
 */
int cli_opt_compress(const char *cmd, const char *arg, struct pgc_save_opts *so);
int cli_opt_block_size(const char *cmd, const char *arg, struct pgc_save_opts *so);

/*
 * Print @s as a JSON string (quotes included) on @f: always valid UTF-8
 * JSON; bytes that are not well-formed UTF-8 become U+FFFD (json.c).
 */
void cli_json_string(FILE *f, const char *s);

/*
 * cli_pread_full / cli_pwrite_full - read or write all @n bytes at @off
 * of @fd, again after a short transfer or EINTR. Return 0, -EIO at an
 * end of file (the file shrank, or nothing was written), or -errno.
 */
int cli_pread_full(int fd, void *p, size_t n, off_t off);
int cli_pwrite_full(int fd, const void *p, size_t n, off_t off);

/*
 * cli_open_source - open the memory file @path read-only for save or
 * bench without blocking (a FIFO is refused, never waited on) and check
 * that it is a regular file no larger than PGC_MAX_FILE_SIZE. Returns
 * EXIT_OK with *@fd and *@st, or reports the problem and returns its exit
 * status (*@fd is then -1).
 */
struct stat;
int cli_open_source(const char *cmd, const char *path, int *fd, struct stat *st);

/* "12.3 MiB" into @buf. */
void cli_human_bytes(uint64_t n, char *buf, size_t len);

/* ---- progress bar (progress.c) ------------------------------------------- */

/* cli_now_ns - CLOCK_MONOTONIC in nanoseconds. */
uint64_t cli_now_ns(void);

struct cli_progress {
	bool enabled;            /* stderr is a terminal */
	bool drawn;              /* a bar is on the screen */
	const char *label;
	uint64_t start_ns;
	uint64_t last_ns;
};

/* Set up a bar labelled @label; enabled only when stderr is a terminal. */
void cli_progress_init(struct cli_progress *p, const char *label);
/* A pgc_progress_fn: @arg is a struct cli_progress. */
void cli_progress_cb(void *arg, uint64_t done, uint64_t total);
/* Erase the bar (call before printing anything else, and at the end). */
void cli_progress_end(struct cli_progress *p);

/* ---- interruption (main.c) ----------------------------------------------- */

/*
 * SIGINT, SIGTERM and SIGHUP are blocked in every thread and received by a
 * helper thread, which undoes what is registered here, erases the progress
 * bar and exits with 128 + the signal number.
 *
 * cli_cleanup_file: a temporary file to unlink (NULL: none).
 * cli_cleanup_image: an image path whose "PATH.tmp-*" siblings that did not
 *	exist at registration time are removed (NULL: none).
 * cli_cleanup_progress: the bar to erase (NULL: none).
 * cli_cleanup_lock / unlock: hold off the signal thread around a step that
 *	must not be cut in half (such as renaming a finished file into place).
 * cli_signal_drain: instead of exiting on the first signal, write its
 *	number (an int) to @fd once, so the command can wind down; a
 *	second signal exits as above. -1: exit on the first (the default).
 */
int cli_signals_start(void);
void cli_cleanup_file(const char *path);
void cli_cleanup_image(const char *path);
void cli_cleanup_progress(struct cli_progress *p);
void cli_cleanup_lock(void);
void cli_cleanup_unlock(void);
void cli_signal_drain(int fd);

/*
 * cli_catch_shrink - for save reading @src (open as @fd, @size bytes at the
 * start) through its mapping: a SIGBUS from reading past a new, smaller
 * end makes the signal thread undo what is registered above, say that the
 * file shrank and exit 2. Returns 0 or -errno (sigaction).
 */
int cli_catch_shrink(const char *cmd, const char *src, int fd, uint64_t size);

#endif /* PGCKPT_CLI_H */
