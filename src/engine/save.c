/* SPDX-License-Identifier: Apache-2.0 */
/*
 * save.c - SaveTo: write a MemoryFile into an image directory.
 *
 * 1. Snapshot the usage set under mf->mu (the caller keeps the file
 *    quiescent while it is saved, as gVisor's sentry does).
 * 2. Find the data of every allocated segment with SEEK_DATA/SEEK_HOLE:
 *    holes cost nothing. The data is cut into windows of 4 MiB of file
 *    offsets (aligned, so no window crosses a 1 GiB chunk mapping; a
 *    child's are larger, see window_size).
 * 3. Worker threads (one per core by default) take windows in turn: drop
 *    all-zero pages, group the rest into runs and blocks of up to
 *    block_size bytes, and compress each block (zstd) or only checksum it
 *    (raw: its bytes are written straight from the mapping, no copy).
 *    An adopted file (someone else's memfd or tmpfs file) is read with
 *    pread into a window buffer instead: its owner may shrink it at any
 *    time, and reading a mapping beyond the end of a file raises SIGBUS,
 *    which a library cannot catch without taking over the process's
 *    handler; pread just comes back short, and the save fails with
 *    -ENODATA. One pread per extent, no more syscalls than the
 *    SEEK_DATA / SEEK_HOLE scan makes already.
 * 4. The calling thread commits windows in offset order: appends their
 *    blocks to the index and writes them through the aio queue, several
 *    windows in flight, while the workers run ahead.
 * 5. As gVisor's SaveTo (updateUsageLocked, alsoScanCommitted), the
 *    usage set is brought in line with what was stored: stored pages are
 *    known committed, zero pages and holes are not; the segments are then
 *    snapshotted again for the metadata.
 * 6. sf_writer_commit writes the metadata, fsyncs and renames.
 * Any error (ENOSPC, EIO, a short write) abandons the temporary directory:
 * nothing appears under the image's name and an older image is untouched.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "aio/aio.h"
#include "engine.h"
#include "alloc/memfile_hooks.h"
#include "util/options.h"
#include "statefile/statefile.h"
#include "util/util.h"

#define WINDOW ((uint64_t)ENGINE_WINDOW_BYTES)
#define CHILD_WINDOW_MAX (8 * WINDOW)

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* A data extent inside one window. */
struct sv_extent {
	uint64_t off, len;
};

/* One encoded block of a window. */
struct sv_block {
	uint32_t first_run, nruns;
	uint32_t stored_off, stored_len;   /* in the window's output buffer (zstd) */
	uint64_t checksum;
};

struct sv_window {
	size_t first_ext, next_ext;        /* its extents */
	/* Results, written by a worker. */
	struct sf_run *runs;
	uint32_t nruns;
	struct sv_block *blocks;
	uint32_t nblocks;
	uint8_t *out;                      /* zstd: the stored blocks back to back */
	size_t out_len;
	struct iovec *iov;                 /* raw: the blocks' pages in the mapping (or src) */
	uint8_t *src;                      /* adopted file: the window's data, read with pread */
	uint64_t base;                     /* file offset of src[0] */
	int niov;
	struct sf_run *zeros;              /* zero pages found (for decommit_zero) */
	uint32_t nzeros;
	struct sf_ref *refs;               /* non-zero pages the parent's chain holds */
	uint32_t nrefs;
	uint64_t *hashes;                  /* of every non-zero page, in offset order */
	uint32_t nhashes;
	uint64_t data_bytes;
	int err;
	bool done;
	bool writing;
};

struct sv_ctx {
	struct pgc_memfile *mf;
	struct pgc_save_opts o;
	struct sv_extent *ext;
	size_t n_ext, ext_cap;             /* extents found, and room for them */
	struct sv_window *win;
	size_t nwin;
	size_t claimed;                    /* windows handed to workers */
	size_t committed;                  /* windows committed by the caller */
	size_t ahead;                      /* windows a worker may run ahead */
	uint64_t window;                   /* bytes of file per window (a power of two) */
	bool stop;
	struct sf_run *stored;             /* the pages written, in offset order */
	size_t nstored, stored_cap;
	bool copy;                         /* read with pread, not through the mapping */
	struct sf_image *parent;           /* the parent's chain, or NULL */
	void **out_pool;                   /* free output buffers of out_cap bytes */
	size_t nout_pool, out_cap;
	void **src_pool;                   /* free window buffers of window bytes */
	size_t nsrc_pool;
	pthread_mutex_t mu;
	pthread_cond_t worker_cv;          /* a window may be claimed */
	pthread_cond_t done_cv;            /* a window is done */
};

void pgc_save_opts_init(struct pgc_save_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->compress = PGC_COMPRESS_ZSTD;
	opts->level = (int)opt_default(OPT_SAVE_LEVEL);
	opts->block_size = (uint32_t)opt_default(OPT_SAVE_BLOCK_SIZE);
}

/* ---- finding the data ------------------------------------------------------ */

static int ext_push(struct sv_ctx *c, uint64_t off, uint64_t len)
{
	if (c->n_ext == c->ext_cap) {
		size_t n = c->ext_cap ? c->ext_cap * 2 : 256;
		struct sv_extent *e = realloc(c->ext, n * sizeof(*e));

		if (!e)
			return -ENOMEM;
		c->ext = e;
		c->ext_cap = n;
	}
	c->ext[c->n_ext++] = (struct sv_extent){ off, len };
	return 0;
}

/* Append the data extents of [start, end), cut at window boundaries. */
static int find_data(struct sv_ctx *c, uint64_t start, uint64_t end)
{
	int fd = pgc_memfile_fd(c->mf);
	uint64_t at = start;
	int ret;

	while (at < end) {
		off_t d = lseek(fd, (off_t)at, SEEK_DATA), h;

		if (d < 0) {
			if (errno == ENXIO)
				return 0;       /* no data up to the end of the file */
			if (errno != EINVAL)
				return -errno;
			d = (off_t)at;          /* no SEEK_DATA here: scan everything */
			h = (off_t)end;
		} else {
			h = lseek(fd, d, SEEK_HOLE);
			if (h < 0)
				return -errno;
		}
		if ((uint64_t)d >= end)
			return 0;
		/* Page-align outwards: a partial page is a page. */
		uint64_t ds = (uint64_t)d & ~MF_PAGE_MASK;
		uint64_t de = ((uint64_t)h + MF_PAGE_MASK) & ~MF_PAGE_MASK;

		if (ds < at)
			ds = at;
		if (de > end)
			de = end;
		while (ds < de) {
			uint64_t wend = (ds & ~(c->window - 1)) + c->window;
			uint64_t e = de < wend ? de : wend;

			ret = ext_push(c, ds, e - ds);
			if (ret)
				return ret;
			ds = e;
		}
		at = de;
	}
	return 0;
}

/* Group the extents into windows. */
static int make_windows(struct sv_ctx *c)
{
	size_t i, n = 0;

	c->win = calloc(c->n_ext ? c->n_ext : 1, sizeof(*c->win));
	if (!c->win)
		return -ENOMEM;
	for (i = 0; i < c->n_ext; i++) {
		if (n && c->ext[i].off / c->window == c->ext[c->win[n - 1].first_ext].off / c->window) {
			c->win[n - 1].next_ext = i + 1;
			continue;
		}
		c->win[n].first_ext = i;
		c->win[n].next_ext = i + 1;
		n++;
	}
	c->nwin = n;
	return 0;
}

/* ---- encoding a window (workers) ------------------------------------------- */

/*
 * Output buffers are recycled: a fresh malloc of a few MiB is a fresh mmap
 * whose pages fault in one by one, which costs more than compressing.
 */
static void *pool_get(struct sv_ctx *c, void **pool, size_t *n, size_t size)
{
	void *p = NULL;

	pthread_mutex_lock(&c->mu);
	if (*n)
		p = pool[--*n];
	pthread_mutex_unlock(&c->mu);
	return p ? p : malloc(size);
}

static void pool_put(struct sv_ctx *c, void **pool, size_t *n, void *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&c->mu);
	if (*n < c->ahead) {
		pool[(*n)++] = p;
		p = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	free(p);
}

static void *out_get(struct sv_ctx *c)
{
	return pool_get(c, c->out_pool, &c->nout_pool, c->out_cap);
}

static void out_put(struct sv_ctx *c, void *p)
{
	pool_put(c, c->out_pool, &c->nout_pool, p);
}

static void src_put(struct sv_ctx *c, struct sv_window *w)
{
	pool_put(c, c->src_pool, &c->nsrc_pool, w->src);
	w->src = NULL;
}

/*
 * The bytes [off, off + len) of the file, inside one window: in the
 * window's buffer (adopted file) or in the mapping. Returns 0 or -errno.
 */
static int window_bytes_at(struct sv_ctx *c, struct sv_window *w, uint64_t off, uint64_t len,
			   struct iovec *v)
{
	int ret;

	if (w->src) {
		*v = (struct iovec){ w->src + (off - w->base), (size_t)len };
		return 0;
	}
	ret = memfile_map(c->mf, (pgc_range){ off, off + len }, PGC_ACCESS_READ, v, 1);
	return ret < 0 ? ret : 0;
}

/* Adopted file: read the window's extents into its buffer. -ENODATA if the file shrank. */
static int window_read(struct sv_ctx *c, struct sv_window *w)
{
	size_t i;
	ssize_t got;

	w->base = c->ext[w->first_ext].off & ~(c->window - 1);
	w->src = pool_get(c, c->src_pool, &c->nsrc_pool, c->window);
	if (!w->src)
		return -ENOMEM;
	for (i = w->first_ext; i < w->next_ext; i++) {
		struct sv_extent *x = &c->ext[i];

		got = sf_pread_all(pgc_memfile_fd(c->mf), w->src + (x->off - w->base), x->len, x->off);
		if (got < 0)
			return (int)got;
		/* A partial last page of the file reads short: the rest is zeros. */
		if ((uint64_t)got + MF_PAGE_MASK < x->len)
			return -ENODATA;
		memset(w->src + (x->off - w->base) + got, 0, x->len - (uint64_t)got);
	}
	return 0;
}

struct sv_enc {
	struct sv_ctx *c;
	struct sv_window *w;
	struct sf_codec *codec;
	uint32_t block_runs;       /* first run of the open block */
	uint64_t block_len;
	size_t out_cap;
	struct iovec *tmp;         /* iovecs of the open block (zstd) */
	int ntmp;
	bool new_extent;           /* runs never span extents (nor segments) */
};

static int close_block(struct sv_enc *e)
{
	struct sv_window *w = e->w;
	struct sv_block *b;
	uint32_t i;
	int ret;

	if (!e->block_len)
		return 0;
	b = &w->blocks[w->nblocks];
	b->first_run = e->block_runs;
	b->nruns = w->nruns - e->block_runs;
	e->ntmp = 0;
	for (i = b->first_run; i < w->nruns; i++) {
		struct iovec v;

		ret = window_bytes_at(e->c, w, w->runs[i].off, w->runs[i].len, &v);
		if (ret)
			return ret;
		e->tmp[e->ntmp++] = v;
	}
	if (e->c->o.compress == PGC_COMPRESS_NONE) {
		b->stored_off = 0;
		b->stored_len = (uint32_t)e->block_len;
		b->checksum = sf_checksum_iov(e->tmp, e->ntmp);
		memcpy(w->iov + w->niov, e->tmp, (size_t)e->ntmp * sizeof(*e->tmp));
		w->niov += e->ntmp;
	} else {
		size_t len;

		ret = sf_block_encode(e->codec, e->tmp, e->ntmp, w->out + w->out_len,
				      e->out_cap - w->out_len, &len, &b->checksum);
		if (ret)
			return ret;
		b->stored_off = (uint32_t)w->out_len;
		b->stored_len = (uint32_t)len;
		w->out_len += len;
	}
	w->nblocks++;
	e->block_runs = w->nruns;
	e->block_len = 0;
	return 0;
}

/* Add the non-zero page at @off to the open block. */
static int add_page(struct sv_enc *e, uint64_t off)
{
	struct sv_window *w = e->w;
	int ret;

	if (e->block_len + PGC_PAGE_SIZE > e->c->o.block_size) {
		ret = close_block(e);
		if (ret)
			return ret;
	}
	if (!e->new_extent && w->nruns > e->block_runs &&
	    w->runs[w->nruns - 1].off + w->runs[w->nruns - 1].len == off)
		w->runs[w->nruns - 1].len += PGC_PAGE_SIZE;
	else
		w->runs[w->nruns++] = (struct sf_run){ off, PGC_PAGE_SIZE };
	e->new_extent = false;
	e->block_len += PGC_PAGE_SIZE;
	w->data_bytes += PGC_PAGE_SIZE;
	return 0;
}

/* Record the non-zero page at @off as held by the ancestor @depth links up. */
static void add_ref(struct sv_window *w, uint64_t off, uint32_t depth)
{
	struct sf_ref *last = w->nrefs ? &w->refs[w->nrefs - 1] : NULL;

	if (last && last->off + last->len == off && last->depth == depth)
		last->len += PGC_PAGE_SIZE;
	else
		w->refs[w->nrefs++] = (struct sf_ref){ off, PGC_PAGE_SIZE, depth };
}

/*
 * A non-zero page at @off: hash it (every image records the hashes, so
 * any image can be a parent); with a parent whose chain holds the same
 * content at @off, reference it, else store it.
 */
static int add_nonzero(struct sv_enc *e, const uint8_t *page, uint64_t off, size_t *cursor)
{
	struct sv_window *w = e->w;
	uint64_t h = sf_page_hash(page), ph;
	uint32_t depth;

	w->hashes[w->nhashes++] = h;
	if (e->c->parent && sf_image_page(e->c->parent, off, cursor, &ph, &depth) && ph == h) {
		add_ref(w, off, depth + 1);
		return 0;
	}
	return add_page(e, off);
}

static void add_zero(struct sv_window *w, uint64_t off)
{
	if (w->nzeros && w->zeros[w->nzeros - 1].off + w->zeros[w->nzeros - 1].len == off)
		w->zeros[w->nzeros - 1].len += PGC_PAGE_SIZE;
	else
		w->zeros[w->nzeros++] = (struct sf_run){ off, PGC_PAGE_SIZE };
}

static int encode_window(struct sv_ctx *c, struct sv_window *w, struct sf_codec *codec,
			 struct iovec *tmp)
{
	struct sv_enc e = { .c = c, .w = w, .codec = codec, .tmp = tmp };
	size_t pages = c->window / PGC_PAGE_SIZE, maxblocks = c->window / c->o.block_size + 1, i;
	int ret = -ENOMEM;

	/* Worst case: every other page non-zero, one run each. */
	w->runs = malloc(pages * sizeof(*w->runs));
	w->blocks = malloc(maxblocks * sizeof(*w->blocks));
	w->hashes = malloc(pages * sizeof(*w->hashes));
	if (c->parent)
		w->refs = malloc(pages * sizeof(*w->refs));
	if (c->o.decommit_zero)
		w->zeros = malloc(pages * sizeof(*w->zeros));
	if (!w->runs || !w->blocks || !w->hashes || (c->parent && !w->refs) ||
	    (c->o.decommit_zero && !w->zeros))
		return -ENOMEM;
	if (c->o.compress == PGC_COMPRESS_NONE) {
		w->iov = malloc(pages * sizeof(*w->iov));
		if (!w->iov)
			return -ENOMEM;
	} else {
		e.out_cap = c->out_cap;
		w->out = out_get(c);
		if (!w->out)
			return -ENOMEM;
	}
	if (c->copy) {
		ret = window_read(c, w);
		if (ret)
			return ret;
	}
	for (i = w->first_ext; i < w->next_ext; i++) {
		struct sv_extent *x = &c->ext[i];
		size_t cursor = 0;
		struct iovec v;
		uint64_t p;

		ret = window_bytes_at(c, w, x->off, x->len, &v);
		if (ret)
			return ret;
		/* Map the extent's pages in one call rather than fault by fault. */
		if (!w->src)
			(void)madvise(v.iov_base, v.iov_len, MADV_POPULATE_READ);
		e.new_extent = true;
		for (p = 0; p < x->len; p += PGC_PAGE_SIZE) {
			if (util_page_is_zero((uint8_t *)v.iov_base + p)) {
				if (w->zeros)
					add_zero(w, x->off + p);
				continue;
			}
			ret = add_nonzero(&e, (uint8_t *)v.iov_base + p, x->off + p, &cursor);
			if (ret)
				return ret;
		}
	}
	ret = close_block(&e);
	/* zstd: the blocks are encoded, the data is done with; raw writes it. */
	if (c->o.compress != PGC_COMPRESS_NONE)
		src_put(c, w);
	return ret;
}

static void *worker_main(void *arg)
{
	struct sv_ctx *c = arg;
	struct sf_codec *codec = NULL;
	struct iovec *tmp;
	int ret;

	tmp = malloc(c->o.block_size / PGC_PAGE_SIZE * sizeof(*tmp));
	ret = tmp ? sf_codec_new(c->o.compress, c->o.level, &codec) : -ENOMEM;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		struct sv_window *w;

		while (!c->stop && c->claimed < c->nwin && c->claimed >= c->committed + c->ahead)
			pthread_cond_wait(&c->worker_cv, &c->mu);
		if (c->stop || c->claimed >= c->nwin)
			break;
		w = &c->win[c->claimed++];
		pthread_mutex_unlock(&c->mu);
		w->err = ret ? ret : encode_window(c, w, codec, tmp);
		pthread_mutex_lock(&c->mu);
		w->done = true;
		pthread_cond_broadcast(&c->done_cv);
	}
	pthread_mutex_unlock(&c->mu);
	sf_codec_free(codec);
	free(tmp);
	return NULL;
}

/* ---- committing windows in order (the calling thread) ---------------------- */

static void window_release(struct sv_ctx *c, struct sv_window *w)
{
	free(w->runs);
	free(w->blocks);
	free(w->refs);
	free(w->hashes);
	out_put(c, w->out);
	src_put(c, w);
	free(w->iov);
	w->runs = NULL;
	w->blocks = NULL;
	w->refs = NULL;
	w->hashes = NULL;
	w->out = NULL;
	w->iov = NULL;
}

/* Index @w's blocks and queue its write. Returns 0 or -errno. */
static int window_commit(struct sv_ctx *c, struct sf_writer *wr, struct aio_queue *q,
			 size_t idx)
{
	struct sv_window *w = &c->win[idx];
	struct aio_req req = { .id = idx, .fd = sf_writer_pages_fd(wr) };
	uint64_t off, first = 0;
	uint32_t i;
	int ret;

	for (i = 0; i < w->nblocks; i++) {
		struct sv_block *b = &w->blocks[i];

		ret = sf_writer_add_block(wr, w->runs + b->first_run, b->nruns, b->stored_len,
					  b->checksum, &off);
		if (ret)
			return ret;
		if (i == 0)
			first = off;
	}
	ret = sf_writer_add_refs(wr, w->refs, w->nrefs);
	if (!ret)
		ret = sf_writer_add_hashes(wr, w->hashes, w->nhashes);
	if (ret || !w->nblocks)
		return ret;
	req.off = first;
	if (c->o.compress == PGC_COMPRESS_NONE) {
		req.op = AIO_OP_WRITEV;
		req.iov = w->iov;
		req.len = (size_t)w->niov;
	} else {
		req.op = AIO_OP_WRITE;
		req.buf = w->out;
		req.len = w->out_len;
	}
	ret = aio_add(q, &req);
	if (!ret)
		w->writing = true;
	return ret;
}

static uint64_t window_bytes(const struct sv_window *w)
{
	return w->out ? w->out_len : w->data_bytes;
}

/* Reap at least @min write completions. Returns 0 or the first error. */
static int reap(struct sv_ctx *c, struct aio_queue *q, unsigned min)
{
	struct aio_completion comp[32];
	int n, i, ret = 0;

	n = aio_wait(q, min, comp, 32);
	if (n < 0)
		return n;
	for (i = 0; i < n; i++) {
		struct sv_window *w = &c->win[comp[i].id];

		if (comp[i].res < 0 && !ret)
			ret = (int)comp[i].res;
		else if ((uint64_t)comp[i].res != window_bytes(w) && !ret)
			ret = -EIO;   /* the layer completes short writes: this is final */
		w->writing = false;
		window_release(c, w);
	}
	return ret;
}

static int decommit_zeros(struct sv_ctx *c)
{
	size_t i;
	uint32_t k;
	int ret;

	if (memfile_readonly(c->mf))
		return 0;
	for (i = 0; i < c->nwin; i++) {
		for (k = 0; k < c->win[i].nzeros; k++) {
			struct sf_run *z = &c->win[i].zeros[k];

			ret = pgc_decommit(c->mf, (pgc_range){ z->off, z->off + z->len });
			if (ret)
				return ret;
		}
	}
	return 0;
}

struct seg_snap {
	struct pgc_segment *segs;
	size_t n, cap;
};

static int snap_fn(void *arg, const struct pgc_segment *seg)
{
	struct seg_snap *s = arg;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct pgc_segment *n = realloc(s->segs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->segs = n;
		s->cap = cap;
	}
	s->segs[s->n++] = *seg;
	return 0;
}

/* ---- what the image stores (gVisor's SaveTo: alsoScanCommitted) ----------- */

/* Append [off, off + len) to c->stored (in offset order). Returns 0 or -ENOMEM. */
static int stored_push(struct sv_ctx *c, uint64_t off, uint64_t len)
{
	struct sf_run *last = c->nstored ? &c->stored[c->nstored - 1] : NULL;

	if (last && last->off + last->len == off) {
		last->len += len;
		return 0;
	}
	if (c->nstored == c->stored_cap) {
		size_t cap = c->stored_cap ? c->stored_cap * 2 : 64;
		struct sf_run *n = realloc(c->stored, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		c->stored = n;
		c->stored_cap = cap;
	}
	c->stored[c->nstored++] = (struct sf_run){ off, len };
	return 0;
}

/*
 * Append the pages @w's image holds, its runs and its refs merged in
 * offset order, to c->stored. Returns 0 or -ENOMEM.
 */
static int stored_add(struct sv_ctx *c, const struct sv_window *w)
{
	uint32_t r = 0, f = 0;
	int ret = 0;

	while (!ret && (r < w->nruns || f < w->nrefs)) {
		if (f == w->nrefs || (r < w->nruns && w->runs[r].off < w->refs[f].off)) {
			ret = stored_push(c, w->runs[r].off, w->runs[r].len);
			r++;
		} else {
			ret = stored_push(c, w->refs[f].off, w->refs[f].len);
			f++;
		}
	}
	return ret;
}

/* memfile_check_fn: a page is committed if the image stores it. */
static int stored_check(void *arg, const void *addr, size_t len, unsigned char *committed,
			uint64_t off, bool was_committed)
{
	const struct sv_ctx *c = arg;
	size_t lo = 0, hi = c->nstored, i, p, pages = len / PGC_PAGE_SIZE;

	(void)addr;
	(void)was_committed;
	/* The first run ending after @off. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (c->stored[mid].off + c->stored[mid].len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (p = 0, i = lo; p < pages; p++) {
		uint64_t at = off + p * PGC_PAGE_SIZE;

		while (i < c->nstored && c->stored[i].off + c->stored[i].len <= at)
			i++;
		committed[p] = i < c->nstored && c->stored[i].off <= at;
	}
	return 0;
}

/*
 * Make known_committed of every allocated segment say whether the image
 * holds its pages, as gVisor's SaveTo does before recording the usage
 * set: zero pages and holes are not stored, so they are not committed
 * once restored (and are no longer counted as committed here either,
 * until a later pgc_update_usage finds them). Returns 0 or -errno.
 */
static int stored_mark(struct sv_ctx *c)
{
	return memfile_rescan_usage(c->mf, stored_check, c);
}

static int save_windows(struct sv_ctx *c, struct sf_writer *wr, struct aio_queue *q)
{
	size_t idx;
	uint64_t done = 0, total = 0;
	int ret = 0, ret2;

	for (idx = 0; idx < c->n_ext; idx++)
		total += c->ext[idx].len;
	for (idx = 0; idx < c->nwin; idx++) {
		struct sv_window *w = &c->win[idx];

		pthread_mutex_lock(&c->mu);
		while (!w->done)
			pthread_cond_wait(&c->done_cv, &c->mu);
		pthread_mutex_unlock(&c->mu);
		ret = w->err;
		while (!ret && aio_inflight(q) >= aio_capacity(q))
			ret = reap(c, q, 1);
		if (!ret)
			ret = window_commit(c, wr, q, idx);
		if (!ret)
			ret = stored_add(c, w);
		if (!ret)
			ret = aio_submit(q);
		if (ret)
			break;
		if (!w->writing)
			window_release(c, w);
		pthread_mutex_lock(&c->mu);
		c->committed = idx + 1;
		pthread_cond_broadcast(&c->worker_cv);
		pthread_mutex_unlock(&c->mu);
		for (size_t i = w->first_ext; i < w->next_ext; i++)
			done += c->ext[i].len;
		if (c->o.progress)
			c->o.progress(c->o.progress_arg, done, total);
	}
	/* Wait for every write, also after an error (buffers are in flight). */
	while (aio_inflight(q)) {
		ret2 = reap(c, q, aio_inflight(q));
		if (!ret)
			ret = ret2;
	}
	return ret;
}

/* Fill @o from @opts (NULL: defaults) and check it. Returns 0 or -EINVAL. */
static int save_options(const struct pgc_save_opts *opts, struct pgc_save_opts *o)
{
	if (opts)
		*o = *opts;
	else
		pgc_save_opts_init(o);
	if (!o->block_size)
		o->block_size = (uint32_t)opt_default(OPT_SAVE_BLOCK_SIZE);
	if (o->compress == PGC_COMPRESS_ZSTD && !o->level)
		o->level = (int)opt_default(OPT_SAVE_LEVEL);
	if ((o->block_size & MF_PAGE_MASK) || o->block_size > SF_MAX_BLOCK ||
	    (o->compress != PGC_COMPRESS_ZSTD && o->compress != PGC_COMPRESS_NONE) ||
	    !opts_reserved_zero(o))
		return -EINVAL;
	return 0;
}

/*
 * The window size: 4 MiB, but a child read through the mapping may take
 * larger ones. A child stores what changed, and its blocks are cut per
 * window: at 5% changed, 4 MiB of file make a 200 KiB block, and zstd
 * packs such small blocks half as well and decodes them at half the
 * speed of 1 MiB ones (measured on bench/mkmem heaps). So windows grow,
 * up to 32 MiB, until one is expected to store a block (the share that
 * changed is sampled first: save_parent_changed), while each worker
 * still gets four or more; a child that changed much keeps small
 * windows, which share the work between the workers more evenly. An
 * adopted file is copied into window buffers: those stay 4 MiB, as do
 * windows where the sample cannot be read (the save finds out why).
 */
static uint64_t window_size(const struct sv_ctx *c, const struct seg_snap *snap)
{
	uint64_t data = 0, w = WINDOW;
	size_t k;
	int share;

	if (!c->parent || c->copy)
		return WINDOW;
	share = save_parent_changed(c->parent, pgc_memfile_fd(c->mf), snap->segs, snap->n);
	if (share < 0)
		return WINDOW;
	for (k = 0; k < snap->n; k++)
		if (snap->segs[k].refs)
			data += snap->segs[k].range.end - snap->segs[k].range.start;
	while (w < CHILD_WINDOW_MAX && w * (uint64_t)share < (uint64_t)c->o.block_size * 1024 &&
	       data / (w * 2) >= 4 * (uint64_t)engine_jobs(c->o.jobs))
		w *= 2;
	return w;
}

/*
 * Steps 1-2: wait for a background load, snapshot the usage set, find
 * the data of every allocated segment and cut it into windows.
 */
static int save_scan(struct sv_ctx *c, struct seg_snap *snap)
{
	size_t k;
	int ret;

	/* A background load must finish first: its pages are part of the file. */
	ret = pgc_load_await(c->mf);
	if (!ret)
		ret = pgc_for_each_segment(c->mf, snap_fn, snap);
	if (ret)
		return ret;
	if (snap->n > PGC_MAX_SEGMENTS)
		return -E2BIG;   /* no reader would accept the image */
	c->copy = memfile_may_shrink(c->mf);
	c->window = window_size(c, snap);
	for (k = 0; k < snap->n; k++) {
		if (!snap->segs[k].refs)
			continue;
		ret = find_data(c, snap->segs[k].range.start, snap->segs[k].range.end);
		if (ret)
			return ret;
	}
	return make_windows(c);
}

/* Steps 3-4: encode the windows on worker threads, commit them in order. */
static int save_run(struct sv_ctx *c, struct sf_writer *wr, struct aio_queue *q)
{
	pthread_t *thr;
	int jobs = engine_jobs(c->o.jobs), started = 0, i, ret = 0;

	/* Windows encoded ahead of the writes: bounds memory (larger windows, fewer). */
	c->ahead = ((size_t)jobs * 2 + 4) * WINDOW / c->window;
	if (c->ahead < (size_t)jobs + 1)
		c->ahead = (size_t)jobs + 1;
	c->out_cap = (c->window / c->o.block_size + 1) * sf_encode_bound(c->o.compress, c->o.block_size);
	c->out_pool = calloc(c->ahead, sizeof(*c->out_pool));
	c->src_pool = calloc(c->ahead, sizeof(*c->src_pool));
	thr = calloc((size_t)jobs, sizeof(*thr));
	if (!thr || !c->out_pool || !c->src_pool) {
		free(thr);
		return -ENOMEM;
	}
	for (i = 0; i < jobs; i++) {
		ret = util_thread_create(&thr[i], worker_main, c);
		if (ret)
			break;
		started++;
	}
	if (started)
		ret = save_windows(c, wr, q);
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_broadcast(&c->worker_cv);
	pthread_mutex_unlock(&c->mu);
	for (i = 0; i < started; i++)
		pthread_join(thr[i], NULL);
	free(thr);
	return ret;
}

/*
 * Steps 5-6: bring the usage set in line with what the image holds,
 * snapshot it for the metadata and commit the image (@wr is freed).
 */
static int save_commit(struct sv_ctx *c, struct sf_writer *wr, struct seg_snap *snap,
		       const char *parent_rel)
{
	struct sf_meta meta;
	int ret;

	ret = stored_mark(c);
	snap->n = 0;
	if (!ret)
		ret = pgc_for_each_segment(c->mf, snap_fn, snap);
	meta = (struct sf_meta){
		.file_size = pgc_total_size(c->mf),
		.logical_size = c->o.logical_size ? c->o.logical_size : pgc_total_size(c->mf),
		.segs = snap->segs,
		.nsegs = snap->n,
		.parent_path = parent_rel,
		.parent_id = c->parent ? c->parent->identity : 0,
		.depth = c->parent ? c->parent->depth + 1 : 0,
	};
	if (!ret && meta.logical_size > meta.file_size)
		ret = -EINVAL;
	if (ret) {
		sf_writer_abort(wr);
		return ret;
	}
	ret = sf_writer_commit(wr, &meta);
	if (!ret && c->o.decommit_zero)
		ret = decommit_zeros(c);
	return ret;
}

static void save_free(struct sv_ctx *c)
{
	size_t k;

	for (k = 0; k < c->nwin; k++) {
		window_release(c, &c->win[k]);
		free(c->win[k].zeros);
	}
	while (c->nout_pool)
		free(c->out_pool[--c->nout_pool]);
	free(c->out_pool);
	while (c->nsrc_pool)
		free(c->src_pool[--c->nsrc_pool]);
	free(c->src_pool);
	free(c->win);
	free(c->ext);
	free(c->stored);
	sf_image_close(c->parent);
	pthread_cond_destroy(&c->worker_cv);
	pthread_cond_destroy(&c->done_cv);
	pthread_mutex_destroy(&c->mu);
}

int pgc_save(pgc_memfile *mf, const char *path, const struct pgc_save_opts *opts)
{
	struct sv_ctx c = { .mf = mf };
	struct seg_snap snap = { 0 };
	struct sf_writer *wr = NULL;
	struct aio_queue *q = NULL;
	enum aio_backend backend;
	char *parent_rel = NULL;
	int ret;

	if (!mf || !path)
		return -EINVAL;
	if (!pgc_is_savable(mf))
		return -EPERM;
	ret = save_options(opts, &c.o);
	if (ret)
		return ret;
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.worker_cv, NULL);
	pthread_cond_init(&c.done_cv, NULL);

	if (c.o.parent)
		ret = save_parent_open(c.o.parent, path, c.o.compress, &c.parent, &parent_rel);
	if (!ret)
		ret = save_scan(&c, &snap);
	if (!ret)
		ret = aio_parse_backend(c.o.aio, &backend);
	if (!ret)
		ret = aio_queue_new(backend, 8, &q, NULL);
	if (!ret)
		ret = sf_writer_open(path, c.o.compress, c.o.level, c.o.block_size, &wr);
	if (!ret)
		ret = save_run(&c, wr, q);
	if (!ret) {
		ret = save_commit(&c, wr, &snap, parent_rel);
		wr = NULL;
	}
	sf_writer_abort(wr);
	aio_queue_destroy(q);
	save_free(&c);
	free(snap.segs);
	free(parent_rel);
	return ret;
}
