/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3src.h - the pages source of an s3:// image (s3src.c): pages.img read
 * by ranged GETs for pgc_load_opts.pages_source, one S3 client per
 * loader thread.
 */
#ifndef PGCKPT_S3SRC_H
#define PGCKPT_S3SRC_H

#include <stdint.h>

#include "pgckpt.h"
#include "s3/s3.h"

struct cli_s3src;

/* The most images of a chain (PGC_MAX_DEPTH ancestors and the image). */
#define CLI_S3SRC_LAYERS 17

/*
 * cli_s3src_new - a source of pages.img objects of @bucket, with no
 * layer yet. @cfg (copied) makes each thread's client. Returns 0 or
 * -ENOMEM.
 */
int cli_s3src_new(const struct s3_config *cfg, const char *bucket, struct cli_s3src **out);

/*
 * cli_s3src_add - the pages.img of the next image of the chain (the
 * image first, then its parent, ...): object @key, @size bytes, read only
 * while its ETag is @etag ("" for any). Returns 0 or -E2BIG.
 */
int cli_s3src_add(struct cli_s3src *src, const char *key, const char *etag, uint64_t size);

/* cli_s3src_free - free @src and its clients (the load must have ended); NULL is fine. */
void cli_s3src_free(struct cli_s3src *src);

/*
 * cli_s3src_cache - keep verified blocks of the layer added last in the
 * cache directory @dir under the image name @id, and serve reads it
 * holds (s3cache.h).
 * Returns 0 or -errno as cli_s3cache_open.
 */
int cli_s3src_cache(struct cli_s3src *src, const char *dir, const char *id);

/* cli_s3src_ops - the callbacks for pgc_load_opts.pages_source. */
const struct pgc_pages_source *cli_s3src_ops(const struct cli_s3src *src);

/* cli_s3src_error - the first failed request in words ("" for none); never a secret. */
const char *cli_s3src_error(struct cli_s3src *src);

/* cli_s3src_counts - bytes received and GET requests made so far. */
void cli_s3src_counts(const struct cli_s3src *src, uint64_t *bytes, uint64_t *requests);

#endif /* PGCKPT_S3SRC_H */
