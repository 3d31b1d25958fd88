/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3cache.h - the local cache of verified pages.img blocks of s3://
 * images (s3cache.c; restore --cache-dir DIR).
 */
#ifndef PGCKPT_S3CACHE_H
#define PGCKPT_S3CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cli_s3cache;

/*
 * cli_s3cache_open - the cache in @dir (made 0700 when missing) of the
 * image named @id (a file-name-safe string) whose pages.img has @size
 * bytes. Returns 0, -EPERM (@dir or a cache file is not this user's
 * alone: another owner, writable by others, not regular, linked
 * elsewhere), -ELOOP (@dir is a symlink), or -errno.
 */
int cli_s3cache_open(const char *dir, const char *id, uint64_t size, struct cli_s3cache **out);

/*
 * cli_s3cache_read - @len bytes at @off into @buf when the cache holds
 * them all: returns @len, or 0 for a miss (any error is a miss). Thread-safe.
 */
ssize_t cli_s3cache_read(struct cli_s3cache *c, void *buf, size_t len, uint64_t off);

/* cli_s3cache_put - keep @len verified bytes at @off (best effort). Thread-safe. */
void cli_s3cache_put(struct cli_s3cache *c, const void *buf, size_t len, uint64_t off);

/*
 * cli_s3cache_close - make what was kept durable (data, then the index,
 * atomically) and free @c (NULL is fine). Returns 0 or -errno (the
 * cache then lists less; nothing read from it is wrong).
 */
int cli_s3cache_close(struct cli_s3cache *c);

#endif /* PGCKPT_S3CACHE_H */
