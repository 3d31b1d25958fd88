/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3img.h - what the two files behind s3:// images share: s3img.c (the
 * seam: which arguments are s3:// URLs, the staging tree, chains) and
 * s3xfer.c (moving one image directory between S3 and the stage).
 */
#ifndef PGCKPT_S3IMG_H
#define PGCKPT_S3IMG_H

#include <stdbool.h>

#include "s3/s3.h"
#include "s3src.h"

#define S3IMG_PART (16u << 20)        /* multipart part, whole-object GET size */

/* One run of cli_s3_run. */
struct s3img {
	const char *cmd, *url;            /* the IMAGE's URL, for messages */
	struct s3_client *s;
	struct s3_config cfg;             /* for the pages source's and abort's clients */
	unsigned char *buf;               /* S3IMG_PART bytes */
	struct s3_client *s2;             /* s3x_fetch's second one, with ... */
	unsigned char *buf2;              /* ... its S3IMG_PART bytes */
	struct cli_s3src *src;            /* restore: pages.img objects by range */
	const char *cache_dir;            /* restore --cache-dir, or NULL */
	char up_bucket[64], up_key[1100], up_id[512]; /* the multipart upload in progress */
	char stage[4096];                 /* the private temporary directory */
};

/* Where an image is: its bucket and prefix, and its directory in the stage. */
struct s3where {
	char url[1100];                   /* s3://BUCKET/PREFIX, for messages */
	char bucket[64], prefix[1024];
	char dir[5400];
};

/* What a fetched image's pages.img becomes in the stage. */
enum s3_pages {
	S3_PAGES_WHOLE,                   /* downloaded (verify, export) */
	S3_PAGES_PLACEHOLDER,             /* sparse, of its size (inspect, save's parent) */
	S3_PAGES_SOURCE,                  /* placeholder, read by range: a layer of m->src */
};

/* s3x_fail - report the S3 request that failed with @err; returns EXIT_IO. */
int s3x_fail(struct s3img *m, int err);

/*
 * s3x_fetch - fetch the image at @w into @w->dir (made here, not there
 * before): memfile.img and pagemap.img whole, pages.img as @pages says.
 * Returns an exit status (reported).
 */
int s3x_fetch(struct s3img *m, const struct s3where *w, enum s3_pages pages);

/*
 * s3x_upload - upload the image directory @w->dir to @w: memfile.img
 * deleted first, pages.img by multipart upload (aborted on failure or on
 * SIGINT/SIGTERM), pagemap.img, memfile.img last. Returns an exit status.
 */
int s3x_upload(struct s3img *m, const struct s3where *w);

#endif /* PGCKPT_S3IMG_H */
