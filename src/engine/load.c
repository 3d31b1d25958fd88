/* SPDX-License-Identifier: Apache-2.0 */
/*
 * load.c - LoadFrom: restore an image into an empty MemoryFile.
 *
 * The options are checked first, before the MemoryFile is touched. Then
 * the metadata: the image is opened and validated (sf_image_open trusts
 * nothing), the file is sized and the usage set is rebuilt segment by
 * segment with the saved refs, kinds and memcg ids. Then the page loader
 * (loader.c) starts; an eager load waits for it, a background load
 * returns at once and pgc_map_internal / pgc_load_wait wait for the
 * pages needed. Freed segments reach the reclaimer only once the load
 * can no longer fail; any failure before that empties the MemoryFile
 * again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aio/aio.h"
#include "alloc/memfile_hooks.h"
#include "engine.h"
#include "loader.h"
#include "util/options.h"
#include "statefile/statefile.h"

/*
 * Loader defaults and bounds: src/util/options.c (docs/perf.md and
 * docs/aio.md have the measurements). max_inflight is a ceiling: the
 * reads in flight are also bounded by LOADER_BUFFER_BYTES (8 MiB) of read
 * buffers, so with the default 1 MiB blocks 8 reads are in flight.
 */
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

/*
 * Fill @o from @opts (NULL: the defaults; a zero field: its default) and
 * check every option, so that a bad one is refused before the
 * MemoryFile is touched. Returns 0 or -EINVAL.
 */
static int load_opts_get(const struct pgc_load_opts *opts, struct pgc_load_opts *o)
{
	enum aio_backend backend;

	if (opts)
		*o = *opts;
	else
		pgc_load_opts_init(o);
	if (!o->max_read)
		o->max_read = LOAD_MAX_READ;
	if (!o->max_iovecs)
		o->max_iovecs = LOAD_MAX_IOVECS;
	if (!o->max_inflight)
		o->max_inflight = LOAD_MAX_INFLIGHT;
	if (o->max_read > opt_max(OPT_LOAD_MAX_READ) ||
	    o->max_iovecs > opt_max(OPT_LOAD_MAX_IOVECS) ||
	    o->max_inflight > opt_max(OPT_LOAD_MAX_INFLIGHT) || o->jobs < 0 ||
	    !opts_reserved_zero(o))
		return -EINVAL;
	if (o->pages_source && (!o->pages_source->read || !opts_reserved_zero(o->pages_source)))
		return -EINVAL;
	return aio_parse_backend(o->aio, &backend);
}

/* Size @mf and rebuild its usage set from @img. Returns 0 or -errno. */
static int load_segments(struct pgc_memfile *mf, const struct sf_image *img)
{
	size_t i;
	int ret;

	ret = memfile_set_size(mf, img->file_size);
	for (i = 0; !ret && i < img->nsegs; i++)
		ret = memfile_insert_segment(mf, &img->segs[i]);
	return ret;
}

int pgc_load(pgc_memfile *mf, const char *path, const struct pgc_load_opts *opts)
{
	struct pgc_load_opts o;
	struct sf_image *img = NULL;
	int ret;

	if (!mf || !path)
		return -EINVAL;
	ret = load_opts_get(opts, &o);
	if (ret)
		return ret;
	if (memfile_readonly(mf))
		return -EBADF;
	if (!memfile_pristine(mf))
		return -EBUSY;

	ret = sf_image_open(path, o.direct, &img);
	if (ret)
		return ret;
	ret = load_segments(mf, img);
	if (ret) {
		sf_image_close(img);
		goto fail;
	}
	/* The loader owns the image from here on, also on failure. */
	ret = loader_start(mf, img, &o);
	if (ret)
		goto fail;
	if (!o.background) {
		struct loader *l = loader_of(mf);

		ret = loader_await(l);
		if (ret) {
			loader_retire(l);
			goto fail;
		}
	}
	/* Freed segments go to the reclaimer only once nothing can fail. */
	memfile_reclaim_freed(mf);
	return 0;
fail:
	/* A failed load leaves @mf as it found it: empty. */
	memfile_reset(mf);
	return ret;
}

int pgc_load_await(pgc_memfile *mf)
{
	struct loader *l;

	if (!mf)
		return -EINVAL;
	l = loader_of(mf);
	return l ? loader_await(l) : 0;
}

int pgc_load_stats(pgc_memfile *mf, struct pgc_load_stats *out)
{
	struct loader *l;

	if (!mf || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	l = loader_of(mf);
	if (l)
		loader_stats(l, out);
	return 0;
}
