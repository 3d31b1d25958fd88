/* SPDX-License-Identifier: Apache-2.0 */
/*
 * load.c - LoadFrom: restore an image into an empty MemoryFile.
 *
 * The metadata comes first: the image is opened and validated
 * (sf_image_open trusts nothing), the file is sized and the usage set is
 * rebuilt segment by segment with the saved refs, kinds and memcg ids.
 * Then the page loader (loader.c) starts; an eager load waits for it, a
 * background load returns at once and pgc_map_internal waits for the
 * pages it needs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/memfile_hooks.h"
#include "engine.h"
#include "loader.h"
#include "util/options.h"
#include "statefile/statefile.h"

/* Loader defaults and bounds: src/util/options.c (docs/perf.md has the measurements). */
#define LOAD_MAX_READ     ((uint32_t)opt_default(OPT_LOAD_MAX_READ))
#define LOAD_MAX_IOVECS   ((uint32_t)opt_default(OPT_LOAD_MAX_IOVECS))
#define LOAD_MAX_INFLIGHT ((uint32_t)opt_default(OPT_LOAD_MAX_INFLIGHT))

void pgc_load_opts_init(struct pgc_load_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->max_read = LOAD_MAX_READ;
	opts->max_iovecs = LOAD_MAX_IOVECS;
	opts->max_inflight = LOAD_MAX_INFLIGHT;
}

int pgc_load(pgc_memfile *mf, const char *path, const struct pgc_load_opts *opts)
{
	struct pgc_load_opts o;
	struct sf_image *img = NULL;
	struct pgc_loader *l;
	size_t i;
	int ret;

	if (!mf || !path)
		return -EINVAL;
	if (opts)
		o = *opts;
	else
		pgc_load_opts_init(&o);
	/* Zero means "the default", as after pgc_load_opts_init. */
	if (!o.max_read)
		o.max_read = LOAD_MAX_READ;
	if (!o.max_iovecs)
		o.max_iovecs = LOAD_MAX_IOVECS;
	if (!o.max_inflight)
		o.max_inflight = LOAD_MAX_INFLIGHT;
	if (o.max_iovecs > opt_max(OPT_LOAD_MAX_IOVECS) ||
	    o.max_inflight > opt_max(OPT_LOAD_MAX_INFLIGHT) || !opts_reserved_zero(&o))
		return -EINVAL;
	if (memfile_readonly(mf))
		return -EBADF;
	if (!memfile_pristine(mf))
		return -EBUSY;

	ret = sf_image_open(path, o.direct, &img);
	if (ret)
		return ret;
	ret = memfile_set_size(mf, img->file_size);
	if (ret)
		goto fail;
	for (i = 0; i < img->nsegs; i++) {
		ret = memfile_insert_segment(mf, &img->segs[i]);
		if (ret)
			goto fail;
	}
	/* The loader owns the image from here on, also on failure. */
	ret = loader_start(mf, img, &o);
	if (ret)
		return ret;
	if (o.background)
		return 0;
	l = loader_of(mf);
	return loader_await(l);
fail:
	sf_image_close(img);
	return ret;
}

int pgc_load_await(pgc_memfile *mf)
{
	struct pgc_loader *l;

	if (!mf)
		return -EINVAL;
	l = loader_of(mf);
	return l ? loader_await(l) : 0;
}

int pgc_load_stats(pgc_memfile *mf, struct pgc_load_stats *out)
{
	struct pgc_loader *l;

	if (!mf || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	l = loader_of(mf);
	if (l)
		loader_stats(l, out);
	return 0;
}
