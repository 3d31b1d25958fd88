/* SPDX-License-Identifier: Apache-2.0 */
/*
 * info.c - the read-only public image functions: pgc_image_info(), a
 * summary of an image's metadata for `pgckpt inspect`, and
 * pgc_image_verify(), which checks every checksum of an image by reading
 * and decoding each block, for `pgckpt verify`.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sf_internal.h"

int pgc_image_info(const char *path, struct pgc_image_info *out)
{
	struct sf_image *img;
	int ret;

	ret = sf_image_open(path, false, &img);
	if (ret)
		return ret;
	memset(out, 0, sizeof(*out));
	out->version = img->version;
	out->file_size = img->file_size;
	out->mem_bytes = img->mem_bytes;
	out->pages_bytes = img->pages_bytes;
	out->segments = img->nsegs;
	out->blocks = img->nblocks;
	out->block_size = img->block_size;
	out->compress = img->compress;
	out->level = img->level;
	sf_image_close(img);
	return 0;
}

int pgc_image_verify(const char *path, pgc_progress_fn progress, void *arg)
{
	struct sf_image *img;
	struct sf_codec *c = NULL;
	uint8_t *scratch = NULL, *mem = NULL;
	uint64_t done = 0;
	size_t i;
	int ret;

	/* Opening checks the metadata and index checksum and every bound. */
	ret = sf_image_open(path, false, &img);
	if (ret)
		return ret;
	ret = sf_codec_new(img->compress, img->level, &c);
	if (ret)
		goto exit;
	ret = -ENOMEM;
	scratch = malloc(sf_encode_bound(img->compress, img->block_size));
	mem = malloc(img->block_size);
	if (!scratch || !mem)
		goto exit;
	ret = 0;
	for (i = 0; i < img->nblocks && !ret; i++) {
		ret = sf_image_read_block(img, c, i, scratch, mem);
		done += img->blocks[i].mem_len;
		if (!ret && progress)
			progress(arg, done, img->mem_bytes);
	}
	if (!ret && progress && !img->nblocks)
		progress(arg, 0, 0);
exit:
	free(scratch);
	free(mem);
	sf_codec_free(c);
	sf_image_close(img);
	return ret;
}
