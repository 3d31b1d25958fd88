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
#include "engine.h"
#include "loader.h"
#include "memfile.h"
#include "statefile/statefile.h"

/*
 * Loader defaults (SPEC §5; docs/perf.md and docs/aio.md have the
 * measurements). max_inflight is a ceiling: the reads in flight are
 * also bounded by LOADER_BUFFER_BYTES (8 MiB) of read buffers, so with
 * the default 1 MiB blocks 8 reads are in flight.
 */
#define LOAD_MAX_READ     (256u << 10)
#define LOAD_MAX_IOVECS   64u
#define LOAD_MAX_INFLIGHT 128u

/* Limits of the options (pgckpt.h). */
#define LOAD_LIMIT_READ     (64u << 20)
#define LOAD_LIMIT_IOVECS   1024u
#define LOAD_LIMIT_INFLIGHT 4096u

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
	if (o->max_read > LOAD_LIMIT_READ || o->max_iovecs > LOAD_LIMIT_IOVECS ||
	    o->max_inflight > LOAD_LIMIT_INFLIGHT || o->jobs < 0)
		return -EINVAL;
	return aio_parse_backend(o->aio, &backend);
}

/* Whether @mf has never held an allocation or a load. */
static bool memfile_pristine(struct pgc_memfile *mf)
{
	bool ok;

	pthread_mutex_lock(&mf->mu);
	ok = rs_empty(&mf->usage) && !atomic_load(&mf->loader) &&
	     !atomic_load_explicit(&mf->file_size, memory_order_relaxed);
	pthread_mutex_unlock(&mf->mu);
	return ok;
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

/* Once the load can no longer fail: hand every freed segment to the reclaimer. */
static void reclaim_freed(struct pgc_memfile *mf)
{
	rs_node *n;

	pthread_mutex_lock(&mf->mu);
	for (n = rs_first(&mf->usage); n; n = rs_next(n))
		if (!((const struct usage_info *)rs_value(n))->refs)
			memfile_reclaim_add_locked(mf, rs_range(n));
	pthread_mutex_unlock(&mf->mu);
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
	if (mf->readonly)
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
		ret = loader_await(atomic_load_explicit(&mf->loader, memory_order_acquire));
		if (ret) {
			struct pgc_loader *l = atomic_exchange_explicit(&mf->loader, NULL,
									memory_order_acq_rel);

			loader_retire(l);
			goto fail;
		}
	}
	/* Freed segments go to the reclaimer only once nothing can fail. */
	reclaim_freed(mf);
	return 0;
fail:
	/* A failed load leaves @mf as it found it: empty. */
	memfile_reset(mf);
	return ret;
}

int pgc_load_wait(pgc_memfile *mf, pgc_range r)
{
	struct pgc_loader *l;
	pgc_range pages;

	if (!mf || r.start >= r.end || r.end > pgc_total_size(mf))
		return -EINVAL;
	l = atomic_load_explicit(&mf->loader, memory_order_acquire);
	if (!l)
		return 0;
	/* r.end <= file size, so rounding up cannot overflow. */
	pages.start = r.start & ~MF_PAGE_MASK;
	pages.end = (r.end + MF_PAGE_MASK) & ~MF_PAGE_MASK;
	return loader_wait(l, pages);
}

int pgc_load_await(pgc_memfile *mf)
{
	struct pgc_loader *l;

	if (!mf)
		return -EINVAL;
	l = atomic_load_explicit(&mf->loader, memory_order_acquire);
	return l ? loader_await(l) : 0;
}

int pgc_load_stats(pgc_memfile *mf, struct pgc_load_stats *out)
{
	struct pgc_loader *l;

	if (!mf || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	l = atomic_load_explicit(&mf->loader, memory_order_acquire);
	if (l)
		loader_stats(l, out);
	return 0;
}
