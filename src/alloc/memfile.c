/* SPDX-License-Identifier: Apache-2.0 */
/*
 * memfile.c - the MemoryFile core: creation and destruction, Allocate
 * (placement, file growth, commit / write-populate, reader fill),
 * Decommit, and the 1 GiB chunk mappings behind pgc_map_internal, read
 * lock-free on the fast path. Reference counting is refs.c.
 *
 * A port of gVisor's pkg/sentry/pgalloc/pgalloc.go (MemoryFile).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "findrange.h"
#include "memfile.h"
#include "util/options.h"
#include "util/util.h"

/* ---- range-set value types -------------------------------------------- */

static bool usage_merge(const pgc_range *r1, void *v1, const pgc_range *r2,
			const void *v2)
{
	const struct usage_info *a = v1, *b = v2;

	(void)r1;
	(void)r2;
	return a->refs == b->refs && a->memcg_id == b->memcg_id &&
	       a->kind == b->kind && a->known_committed == b->known_committed;
}

const struct rs_ops usage_ops = {
	.value_size = sizeof(struct usage_info),
	.merge = usage_merge,
};

/* One always-zero byte: adjacent ranges always merge. */
const struct rs_ops flag_ops = {
	.value_size = 1,
};

/* ---- small helpers ----------------------------------------------------- */

static uint64_t chunks_for(uint64_t size)
{
	return (size >> MF_CHUNK_SHIFT) + ((size & MF_CHUNK_MASK) != 0);
}

/* ---- chunk mappings ---------------------------------------------------- */

static struct memfile_mappings *mappings_alloc(uint64_t nchunks)
{
	struct memfile_mappings *m;
	uint64_t i;

	if (nchunks > (SIZE_MAX - sizeof(*m)) / sizeof(m->chunk[0]))
		return NULL;
	m = malloc(sizeof(*m) + nchunks * sizeof(m->chunk[0]));
	if (!m)
		return NULL;
	m->retired_next = NULL;
	m->nchunks = nchunks;
	for (i = 0; i < nchunks; i++)
		atomic_init(&m->chunk[i], 0);
	return m;
}

/* The slow path of memfile_chunk_base: map the chunk under mappings_mu. */
static int chunk_map(struct pgc_memfile *mf, uint64_t chunk, uint8_t **base)
{
	struct memfile_mappings *m;
	uintptr_t addr;
	void *p;
	int ret = 0;

	pthread_mutex_lock(&mf->mappings_mu);
	/* The table may have been replaced since the caller looked. */
	m = atomic_load_explicit(&mf->mappings, memory_order_relaxed);
	if (chunk >= m->nchunks) {
		ret = -EINVAL;
		goto exit;
	}
	/* Another thread may have mapped it meanwhile. */
	addr = atomic_load_explicit(&m->chunk[chunk], memory_order_relaxed);
	if (!addr) {
		/*
		 * MAP_NORESERVE: on hugetlbfs a chunk mapping would otherwise
		 * reserve 512 huge pages up front, however few the file uses.
		 * Elsewhere it changes nothing for shared mappings.
		 */
		p = mmap(NULL, MF_CHUNK_SIZE,
			 mf->readonly ? PROT_READ : PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_NORESERVE, mf->fd, (off_t)(chunk << MF_CHUNK_SHIFT));
		if (p == MAP_FAILED) {
			ret = -errno;
			goto exit;
		}
		addr = (uintptr_t)p;
		atomic_store_explicit(&m->chunk[chunk], addr, memory_order_release);
	}
	*base = (uint8_t *)addr;
exit:
	pthread_mutex_unlock(&mf->mappings_mu);
	return ret;
}

int memfile_chunk_base(struct pgc_memfile *mf, uint64_t chunk, uint8_t **base)
{
	struct memfile_mappings *m;
	uintptr_t addr;

	m = atomic_load_explicit(&mf->mappings, memory_order_acquire);
	if (chunk < m->nchunks) {
		addr = atomic_load_explicit(&m->chunk[chunk], memory_order_acquire);
		if (addr) {
			*base = (uint8_t *)addr;
			return 0;
		}
	}
	return chunk_map(mf, chunk, base);
}

/* Validation shared by pgc_map_internal and memfile_map. */
static int map_check(struct pgc_memfile *mf, pgc_range r, int access, int iovcnt,
		     const struct iovec *iov)
{
	uint64_t chunks;

	if (access & ~(PGC_ACCESS_READ | PGC_ACCESS_WRITE | PGC_ACCESS_EXEC | PGC_ACCESS_NOWAIT))
		return -EINVAL;
	if (access & PGC_ACCESS_EXEC)
		return -EACCES;
	if (r.start >= r.end ||
	    r.end > atomic_load_explicit(&mf->file_size, memory_order_acquire))
		return -EINVAL;
	if ((access & PGC_ACCESS_WRITE) && mf->readonly)
		return -EBADF;
	chunks = ((r.end - 1) >> MF_CHUNK_SHIFT) - (r.start >> MF_CHUNK_SHIFT) + 1;
	if (!iov || iovcnt <= 0 || chunks > (uint64_t)iovcnt)
		return -ENOBUFS;
	return 0;
}

/*
 * The part of @r (not empty) inside chunk @c, mapped: *@iov. Returns 0 or
 * as memfile_chunk_base.
 */
static int chunk_piece(struct pgc_memfile *mf, uint64_t c, pgc_range r, struct iovec *iov)
{
	uint64_t lo = c << MF_CHUNK_SHIFT, hi = lo + MF_CHUNK_SIZE;
	uint8_t *base;
	int ret;

	ret = memfile_chunk_base(mf, c, &base);
	if (ret)
		return ret;
	if (lo < r.start)
		lo = r.start;
	if (hi > r.end)
		hi = r.end;
	iov->iov_base = base + (lo & MF_CHUNK_MASK);
	iov->iov_len = hi - lo;
	return 0;
}

int memfile_map(struct pgc_memfile *mf, pgc_range r, int access,
		struct iovec *iov, int iovcnt)
{
	uint64_t c;
	int n = 0, ret;

	ret = map_check(mf, r, access, iovcnt, iov);
	if (ret)
		return ret;
	for (c = r.start >> MF_CHUNK_SHIFT; c <= (r.end - 1) >> MF_CHUNK_SHIFT; c++) {
		ret = chunk_piece(mf, c, r, &iov[n]);
		if (ret)
			return ret;
		n++;
	}
	return n;
}

/*
 * Wait, through the wait hook, until every page of @r (inside the file)
 * holds its contents. Returns 0 or the load's error.
 */
static int memfile_wait_loaded(struct pgc_memfile *mf, pgc_range r)
{
	pgc_range pages;

	/* r.end <= file size, so rounding up cannot overflow. */
	pages.start = r.start & ~MF_PAGE_MASK;
	pages.end = (r.end + MF_PAGE_MASK) & ~MF_PAGE_MASK;
	return memfile_hook_wait(mf, pages);
}

/* Whether every page of @r is loaded now: 1, 0 or the load's error. */
static int memfile_loaded_now(struct pgc_memfile *mf, pgc_range r)
{
	pgc_range pages;

	pages.start = r.start & ~MF_PAGE_MASK;
	pages.end = (r.end + MF_PAGE_MASK) & ~MF_PAGE_MASK;
	return memfile_hook_ready(mf, pages);
}

int pgc_load_wait(pgc_memfile *mf, pgc_range r)
{
	if (!mf || r.start >= r.end ||
	    r.end > atomic_load_explicit(&mf->file_size, memory_order_acquire))
		return -EINVAL;
	return memfile_wait_loaded(mf, r);
}

int pgc_map_internal(pgc_memfile *mf, pgc_range r, int access,
		     struct iovec *iov, int iovcnt)
{
	int ret;

	if (!mf)
		return -EINVAL;
	PGC_ASSERT(r.start < r.end);
	ret = map_check(mf, r, access, iovcnt, iov);
	if (ret)
		return ret;
	if (access & PGC_ACCESS_NOWAIT) {
		ret = memfile_loaded_now(mf, r);
		if (ret <= 0)
			return ret < 0 ? ret : -EAGAIN;
	} else {
		/* Pages still being loaded in the background jump the queue. */
		ret = memfile_wait_loaded(mf, r);
		if (ret)
			return ret;
	}
	return memfile_map(mf, r, access & ~PGC_ACCESS_NOWAIT, iov, iovcnt);
}

/* ---- file size --------------------------------------------------------- */

/*
 * Size the backing file to @size or, where the host only takes whole
 * blocks of more than a page (hugetlbfs: huge pages, which it reports as
 * st_blksize), to @size rounded up to one; the memory file never uses
 * the pages past @size. Returns 0 or -errno.
 */
static int backing_truncate(int fd, uint64_t size)
{
	struct stat st;
	uint64_t blk;
	int err;

	if (ftruncate(fd, (off_t)size) == 0)
		return 0;
	err = errno;
	if (err != EINVAL || fstat(fd, &st) != 0)
		return -err;
	blk = (uint64_t)st.st_blksize;
	if (blk <= PGC_PAGE_SIZE || (blk & (blk - 1)) || !(size & (blk - 1)))
		return -err;
	size = (size + blk - 1) & ~(blk - 1);
	return ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
}

int memfile_grow_locked(struct pgc_memfile *mf, uint64_t new_size)
{
	struct memfile_mappings *cur, *next = NULL;
	uint64_t need, i;
	int ret;

	if (new_size <= atomic_load_explicit(&mf->file_size, memory_order_relaxed))
		return 0;
	if (mf->readonly)
		return -EBADF;
	if (new_size > (uint64_t)INT64_MAX)
		return -EFBIG;
	/* Only this function replaces the table, always under mf->mu. */
	cur = atomic_load_explicit(&mf->mappings, memory_order_relaxed);
	need = chunks_for(new_size);
	if (need > cur->nchunks) {
		next = mappings_alloc(need);
		if (!next)
			return -ENOMEM;
	}
	ret = backing_truncate(mf->fd, new_size);
	if (ret) {
		free(next);
		return ret;
	}
	if (next) {
		pthread_mutex_lock(&mf->mappings_mu);
		for (i = 0; i < cur->nchunks; i++)
			atomic_store_explicit(&next->chunk[i],
				atomic_load_explicit(&cur->chunk[i], memory_order_relaxed),
				memory_order_relaxed);
		/* Lock-free readers may still hold cur: retire, don't free. */
		cur->retired_next = mf->retired;
		mf->retired = cur;
		atomic_store_explicit(&mf->mappings, next, memory_order_release);
		pthread_mutex_unlock(&mf->mappings_mu);
	}
	/* Published after the table, so a reader that sees the size sees the table. */
	atomic_store_explicit(&mf->file_size, new_size, memory_order_release);
	return 0;
}

int memfile_set_size(struct pgc_memfile *mf, uint64_t size)
{
	int ret;

	if (size & MF_PAGE_MASK)
		return -EINVAL;
	pthread_mutex_lock(&mf->mu);
	ret = memfile_grow_locked(mf, size);
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

uint64_t pgc_total_size(pgc_memfile *mf)
{
	return mf ? atomic_load_explicit(&mf->file_size, memory_order_acquire) : 0;
}

int pgc_memfile_fd(const pgc_memfile *mf)
{
	return mf ? mf->fd : -EBADF;
}

void pgc_mark_savable(pgc_memfile *mf)
{
	if (mf)
		atomic_store_explicit(&mf->savable, true, memory_order_release);
}

bool pgc_is_savable(const pgc_memfile *mf)
{
	return mf && atomic_load_explicit(&mf->savable, memory_order_acquire);
}

bool pgc_is_disk_backed(const pgc_memfile *mf)
{
	return mf && mf->opts.disk_backed;
}

/* ---- commit, decommit, zeroing ----------------------------------------- */

int memfile_decommit_file(struct pgc_memfile *mf, pgc_range r)
{
	if (fallocate(mf->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)r.start, (off_t)(r.end - r.start)) != 0)
		return -errno;
	return 0;
}

int memfile_manually_zero(struct pgc_memfile *mf, pgc_range r)
{
	struct iovec piece;
	uint64_t c;
	int ret;

	if (mf->readonly)
		return -EBADF;
	for (c = r.start >> MF_CHUNK_SHIFT; r.start < r.end && c <= (r.end - 1) >> MF_CHUNK_SHIFT; c++) {
		ret = chunk_piece(mf, c, r, &piece);
		if (ret)
			return ret;
		memset(piece.iov_base, 0, piece.iov_len);
	}
	return 0;
}

static int decommitted_fn(void *arg, pgc_range r, void *val)
{
	struct pgc_memfile *mf = arg;
	struct usage_info *u = val;
	uint64_t len = r.end - r.start;

	if (u->known_committed) {
		memfile_acct_dec(mf, len, u->kind, u->memcg_id);
		PGC_ASSERT(mf->usage_expected >= len);
		mf->usage_expected -= mf->usage_expected >= len ? len : mf->usage_expected;
		u->known_committed = false;
	}
	u->memcg_id = 0;
	return 0;
}

int memfile_mark_decommitted_locked(struct pgc_memfile *mf, pgc_range r)
{
	return rs_mutate_range(&mf->usage, r, false, decommitted_fn, mf);
}

int pgc_decommit(pgc_memfile *mf, pgc_range r)
{
	int ret;

	if (!mf || !memfile_range_ok(r) ||
	    r.end > atomic_load_explicit(&mf->file_size, memory_order_acquire)) {
		PGC_ASSERT(!"pgc_decommit: bad range");
		return -EINVAL;
	}
	if (mf->readonly)
		return -EBADF;
	/*
	 * A background load must not write these pages after they are
	 * released: cancel what has not started (as decref does) and let
	 * the reads already writing into them land first.
	 */
	pthread_mutex_lock(&mf->mu);
	memfile_hook_cancel_locked(mf, r);
	pthread_mutex_unlock(&mf->mu);
	memfile_hook_quiesce(mf, r);
	/* A punched hole may not read back as zeroes on manual_zeroing files. */
	if (mf->opts.manual_zeroing)
		ret = memfile_manually_zero(mf, r);
	else
		ret = memfile_decommit_file(mf, r);
	if (ret)
		return ret;
	pthread_mutex_lock(&mf->mu);
	ret = memfile_mark_decommitted_locked(mf, r);
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

/* ---- allocation -------------------------------------------------------- */

/*
 * Process-wide, like gVisor: once mlock fails, stop trying it.
 * (MADV_POPULATE_WRITE has its own switch, in util_populate_write.)
 */
static atomic_bool mlock_populate_disabled;

/* Whether the pages of the range are populated (or need not be). */
static bool populate_madv(uintptr_t addr, size_t len)
{
	uintptr_t start = (addr + MF_PAGE_MASK) & ~(uintptr_t)MF_PAGE_MASK;
	uintptr_t end = (addr + len) & ~(uintptr_t)MF_PAGE_MASK;

	/* One syscall costs about as much as one fault: skip single pages. */
	if (start >= end || end - start <= PGC_PAGE_SIZE)
		return true;
	return util_populate_write((void *)start, end - start) == 0;
}

static bool populate_mlock(uintptr_t addr, size_t len)
{
	uintptr_t start = (addr + MF_HUGE_MASK) & ~(uintptr_t)MF_HUGE_MASK;
	uintptr_t end = (addr + len) & ~(uintptr_t)MF_HUGE_MASK;
	int ret;

	if (atomic_load_explicit(&mlock_populate_disabled, memory_order_relaxed))
		return false;
	/* Hugepage-aligned only, so splitting the VMA splits no hugepage. */
	if (start >= end)
		return true;
	ret = mlock((void *)start, end - start);
	munlock((void *)start, end - start);
	if (ret != 0) {
		atomic_store_explicit(&mlock_populate_disabled, true, memory_order_relaxed);
		return false;
	}
	return true;
}

static void populate(const struct iovec *iov, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)iov[i].iov_base;

		if (!populate_madv(a, iov[i].iov_len) &&
		    !populate_mlock(a, iov[i].iov_len))
			break;
	}
}

/*
 * Fill @iov from the reader until it is full, the reader reports end of
 * input (0) or an error. *@done is the number of bytes filled.
 * Returns 0 or the reader's error.
 */
static int read_full(const struct pgc_alloc_opts *o, const struct iovec *iov,
		     int n, uint64_t *done)
{
	int i;

	*done = 0;
	for (i = 0; i < n; i++) {
		uint8_t *p = iov[i].iov_base;
		size_t left = iov[i].iov_len;

		while (left) {
			int64_t got = o->reader(o->reader_arg, p, left);

			if (got < 0)
				return got < -INT_MAX ? -EIO : (int)got;
			if ((uint64_t)got > left)
				return -EINVAL;
			if (got == 0)
				return 0;
			p += got;
			left -= (size_t)got;
			*done += (uint64_t)got;
		}
	}
	return 0;
}

static bool has_space_locked(struct pgc_memfile *mf, uint64_t length)
{
	uint64_t max = mf->opts.max_allocatable, exact;

	if (!max)
		return true;
	if (mf->usage_expected + length <= max && mf->usage_expected + length >= length)
		return true;
	/*
	 * usage_expected is only as fresh as the last pgc_update_usage():
	 * avoid a false positive by checking the exact figure.
	 */
	if (pgc_total_usage(mf, &exact) != 0)
		return false;
	return exact + length <= max && exact + length >= length;
}

/* gVisor's allocate(): find, grow, zero, insert, under mf->mu. */
static int alloc_range(struct pgc_memfile *mf, uint64_t length,
		       const struct pgc_alloc_opts *o, pgc_range *out)
{
	struct usage_info info = {
		.refs = 1, .memcg_id = o->memcg_id, .kind = (uint8_t)o->kind,
	};
	uint64_t align = length >= PGC_HUGE_PAGE_SIZE ? PGC_HUGE_PAGE_SIZE : PGC_PAGE_SIZE;
	uint64_t size;
	pgc_range fr;
	int ret;

	pthread_mutex_lock(&mf->mu);
	if (!has_space_locked(mf, length)) {
		ret = -ENOMEM;
		goto exit;
	}
	size = atomic_load_explicit(&mf->file_size, memory_order_relaxed);
	ret = find_range(&mf->usage, size, length, align, o->dir, &fr);
	if (ret)
		goto exit;
	if (fr.end > size) {
		if (fr.end > (uint64_t)INT64_MAX - MF_CHUNK_MASK) {
			ret = -ENOMEM;
			goto exit;
		}
		ret = memfile_grow_locked(mf, (fr.end + MF_CHUNK_MASK) & ~MF_CHUNK_MASK);
		if (ret)
			goto exit;
	}
	ret = memfile_acct_ensure(mf, o->memcg_id);
	if (ret)
		goto exit;
	if (mf->opts.manual_zeroing) {
		ret = memfile_manually_zero(mf, fr);
		if (ret)
			goto exit;
	}
	ret = rs_insert(&mf->usage, fr, &info);
	if (ret)
		goto exit;
	*out = fr;
exit:
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

int pgc_allocate(pgc_memfile *mf, uint64_t length,
		 const struct pgc_alloc_opts *opts, pgc_range *out)
{
	static const struct pgc_alloc_opts defaults;
	const struct pgc_alloc_opts *o = opts ? opts : &defaults;
	struct iovec iov[64], *dsts = iov;
	int ndsts = 0, ret, rerr;
	uint64_t done, kept;
	pgc_range fr;

	if (!mf || !out || !length || (length & MF_PAGE_MASK) ||
	    (unsigned)o->kind >= PGC_KIND_COUNT ||
	    (o->dir != PGC_BOTTOM_UP && o->dir != PGC_TOP_DOWN) ||
	    (unsigned)o->mode > PGC_ALLOC_WRITE_POPULATE) {
		PGC_ASSERT(!"pgc_allocate: bad arguments");
		return -EINVAL;
	}
	if (!opts_reserved_zero(o))
		return -EINVAL;   /* a field this version does not know */
	if (mf->readonly)
		return -EBADF;
	ret = alloc_range(mf, length, o, &fr);
	if (ret)
		return ret;

	if (o->mode == PGC_ALLOC_WRITE_POPULATE || o->reader) {
		uint64_t chunks = ((fr.end - 1) >> MF_CHUNK_SHIFT) - (fr.start >> MF_CHUNK_SHIFT) + 1;

		if (chunks > sizeof(iov) / sizeof(iov[0])) {
			dsts = calloc(chunks, sizeof(*dsts));
			if (!dsts) {
				ret = -ENOMEM;
				goto fail;
			}
		}
		/* Fresh pages are never the engine's to fill: no need to wait. */
		ndsts = memfile_map(mf, fr, PGC_ACCESS_WRITE, dsts, (int)chunks);
		if (ndsts < 0) {
			ret = ndsts;
			goto fail;
		}
	}
	switch (o->mode) {
	case PGC_ALLOC_ONLY:
		break;
	case PGC_ALLOC_COMMIT:
		if (fallocate(mf->fd, 0, (off_t)fr.start, (off_t)length) != 0) {
			ret = -errno;
			goto fail;
		}
		break;
	case PGC_ALLOC_WRITE_POPULATE:
		populate(dsts, ndsts);
		break;
	}
	if (o->reader) {
		rerr = read_full(o, dsts, ndsts, &done);
		kept = done & ~MF_PAGE_MASK;
		if (kept < length) {
			/* Give back what the reader did not fill. */
			(void)pgc_decref(mf, (pgc_range){ fr.start + kept, fr.end });
			fr.end = fr.start + kept;
		}
		ret = rerr;
	}
	*out = fr;
	goto exit;
fail:
	(void)pgc_decref(mf, fr);
exit:
	if (dsts != iov)
		free(dsts);
	return ret;
}

/* ---- LoadFrom support -------------------------------------------------- */

int memfile_insert_segment(struct pgc_memfile *mf, const struct pgc_segment *seg)
{
	struct usage_info info;
	pgc_range r = seg->range;
	int ret;

	if (!memfile_range_ok(r) || (unsigned)seg->kind >= PGC_KIND_COUNT ||
	    (!seg->refs && seg->kind != PGC_KIND_SYSTEM))
		return -EINVAL;
	info = (struct usage_info){
		.refs = seg->refs, .memcg_id = seg->memcg_id,
		.kind = (uint8_t)seg->kind, .known_committed = seg->known_committed,
	};
	pthread_mutex_lock(&mf->mu);
	if (r.end > atomic_load_explicit(&mf->file_size, memory_order_relaxed)) {
		ret = -EINVAL;
		goto exit;
	}
	ret = memfile_acct_ensure(mf, seg->memcg_id);
	if (ret)
		goto exit;
	ret = rs_insert(&mf->usage, r, &info);
	if (ret)
		goto exit;
	if (info.known_committed) {
		memfile_acct_inc(mf, r.end - r.start, seg->kind, seg->memcg_id);
		mf->usage_expected += r.end - r.start;
	}
exit:
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

void memfile_reset(struct pgc_memfile *mf)
{
	size_t i;

	pthread_mutex_lock(&mf->mu);
	rs_clear(&mf->usage);
	rs_clear(&mf->reclaim);
	mf->reclaimable = false;
	mf->reclaim_rebuild = false;
	for (i = 0; i < mf->nacct; i++)
		memset(mf->acct[i].kind, 0, sizeof(mf->acct[i].kind));
	mf->usage_expected = 0;
	mf->usage_swapped = 0;
	mf->usage_scanned = false;
	/* The mappings stay; nothing maps past the size, now 0. */
	atomic_store_explicit(&mf->file_size, 0, memory_order_release);
	(void)backing_truncate(mf->fd, 0);
	pthread_mutex_unlock(&mf->mu);
}

void memfile_reclaim_freed(struct pgc_memfile *mf)
{
	rs_node *n;

	pthread_mutex_lock(&mf->mu);
	for (n = rs_first(&mf->usage); n; n = rs_next(n))
		if (!((const struct usage_info *)rs_value(n))->refs)
			memfile_reclaim_add_locked(mf, rs_range(n));
	pthread_mutex_unlock(&mf->mu);
}

int memfile_rescan_usage(struct pgc_memfile *mf, memfile_check_fn check, void *arg)
{
	uint64_t current;
	int ret;

	pthread_mutex_lock(&mf->mu);
	ret = pgc_total_usage(mf, &current);
	if (!ret)
		ret = memfile_update_usage_locked(mf, current, NULL, 0, true, check, arg);
	pthread_mutex_unlock(&mf->mu);
	return ret;
}

/* ---- creation and destruction ------------------------------------------ */

void pgc_memfile_opts_init(struct pgc_memfile_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->fd = -1;
	opts->delayed_eviction = PGC_EVICTION_DEFAULT;
}

/*
 * Map one page PROT_EXEC and unmap it while the file is small, so that IMA
 * (if enabled) measures it now and ignores the huge sparse file later.
 * Failure is harmless: IMA may not even be in use.
 */
static void ima_workaround(int fd)
{
	void *p = mmap(NULL, PGC_PAGE_SIZE, PROT_EXEC, MAP_SHARED, fd, 0);

	if (p != MAP_FAILED)
		munmap(p, PGC_PAGE_SIZE);
}

/*
 * Whether mapping grew the backing file past the memory file: hugetlbfs
 * extends a file to cover every mapping of it. (Only there: elsewhere a
 * larger file was grown by someone else, and is left alone.)
 */
static bool backing_grown(struct pgc_memfile *mf)
{
	uint64_t size = atomic_load_explicit(&mf->file_size, memory_order_relaxed);
	struct statfs sfs;
	struct stat st;

	return fstatfs(mf->fd, &sfs) == 0 && sfs.f_type == HUGETLBFS_MAGIC &&
	       fstat(mf->fd, &st) == 0 && (uint64_t)st.st_blksize > PGC_PAGE_SIZE &&
	       (uint64_t)st.st_size > ((size + (uint64_t)st.st_blksize - 1) &
				       ~((uint64_t)st.st_blksize - 1));
}

/* Release everything; @mf may be partly constructed. Threads are stopped. */
static void memfile_free(struct pgc_memfile *mf, bool close_fd)
{
	struct memfile_mappings *m, *next;
	uint64_t i;

	m = atomic_load_explicit(&mf->mappings, memory_order_relaxed);
	if (m) {
		bool mapped = false;

		for (i = 0; i < m->nchunks; i++) {
			uintptr_t a = atomic_load_explicit(&m->chunk[i], memory_order_relaxed);

			if (a) {
				munmap((void *)a, MF_CHUNK_SIZE);
				mapped = true;
			}
		}
		free(m);
		/*
		 * hugetlbfs grows a file to cover each mapping of it (a whole
		 * 1 GiB chunk): give the file back the memory file's size.
		 */
		if (mapped && !mf->readonly && mf->fd >= 0 && backing_grown(mf))
			(void)backing_truncate(mf->fd, atomic_load_explicit(&mf->file_size,
						   memory_order_relaxed));
	}
	for (m = mf->retired; m; m = next) {
		next = m->retired_next;
		free(m);
	}
	if (close_fd && mf->fd >= 0)
		close(mf->fd);
	rs_clear(&mf->usage);
	rs_clear(&mf->reclaim);
	free(mf->acct);
	pthread_cond_destroy(&mf->evict_cond);
	pthread_cond_destroy(&mf->reclaim_cond);
	pthread_mutex_destroy(&mf->mappings_mu);
	pthread_mutex_destroy(&mf->mu);
	free(mf);
}

/* Open or adopt the backing file; sets fd, readonly and the initial size. */
static int memfile_open(struct pgc_memfile *mf, uint64_t *size)
{
	struct stat st;
	int flags;

	if (mf->opts.fd == -1) {
		mf->fd = memfd_create("pgckpt-memfile", MFD_CLOEXEC);
		if (mf->fd < 0)
			return -errno;
	} else {
		mf->fd = mf->opts.fd;
	}
	flags = fcntl(mf->fd, F_GETFL);
	if (flags < 0)
		return -errno;
	if ((flags & O_ACCMODE) == O_WRONLY)
		return -EBADF;
	mf->readonly = (flags & O_ACCMODE) == O_RDONLY;
	*size = 0;
	if (!mf->opts.adopt)
		return ftruncate(mf->fd, 0) ? -errno : 0;
	if (fstat(mf->fd, &st) != 0)
		return -errno;
	if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)INT64_MAX - MF_PAGE_MASK)
		return -EFBIG;
	*size = ((uint64_t)st.st_size + MF_PAGE_MASK) & ~MF_PAGE_MASK;
	return 0;
}

int pgc_memfile_new(const struct pgc_memfile_opts *opts, pgc_memfile **out)
{
	struct pgc_memfile *mf;
	struct memfile_mappings *m;
	uint64_t size = 0;
	int ret;

	if (!out || (opts && (opts->fd < -1 || !opts_reserved_zero(opts))))
		return -EINVAL;
	mf = calloc(1, sizeof(*mf));
	if (!mf)
		return -ENOMEM;
	if (opts)
		mf->opts = *opts;
	else
		pgc_memfile_opts_init(&mf->opts);
	mf->fd = -1;
	mf->psi_fd = -1;
	mf->psi_stop_fd = -1;
	pthread_mutex_init(&mf->mu, NULL);
	pthread_mutex_init(&mf->mappings_mu, NULL);
	pthread_cond_init(&mf->reclaim_cond, NULL);
	pthread_cond_init(&mf->evict_cond, NULL);
	rs_init(&mf->usage, &usage_ops);
	rs_init(&mf->reclaim, &flag_ops);
	atomic_init(&mf->hook_ctx, NULL);
	atomic_init(&mf->savable, false);
	atomic_init(&mf->mappings, NULL);
	atomic_init(&mf->file_size, 0);

	switch (mf->opts.delayed_eviction) {
	case PGC_EVICTION_DEFAULT:
		mf->opts.delayed_eviction = PGC_EVICTION_ENABLED;
		break;
	case PGC_EVICTION_DISABLED:
	case PGC_EVICTION_MANUAL:
		mf->opts.use_host_memcg_pressure = false;
		break;
	case PGC_EVICTION_ENABLED:
		break;
	default:
		ret = -EINVAL;
		goto exit;
	}

	ret = memfile_open(mf, &size);
	if (ret)
		goto exit;
	m = mappings_alloc(chunks_for(size));
	ret = -ENOMEM;
	if (!m)
		goto exit;
	atomic_store_explicit(&mf->mappings, m, memory_order_relaxed);
	atomic_store_explicit(&mf->file_size, size, memory_order_relaxed);
	ret = memfile_acct_ensure(mf, 0);
	if (ret)
		goto exit;
	if (size) {
		/* Adopted contents: one allocated segment, commitment unknown. */
		struct usage_info info = { .refs = 1, .kind = PGC_KIND_SYSTEM };

		ret = rs_insert(&mf->usage, (pgc_range){ 0, size }, &info);
		if (ret)
			goto exit;
	}
	ret = memfile_evict_init(mf);
	if (ret)
		goto exit;
	ret = memfile_reclaim_start(mf);
	if (ret) {
		memfile_evict_fini(mf);
		goto exit;
	}
	if (!mf->opts.disable_ima_workaround)
		ima_workaround(mf->fd);
	*out = mf;
	return 0;
exit:
	/* A caller-given fd stays open on failure. */
	memfile_free(mf, mf->opts.fd == -1);
	return ret;
}

void pgc_memfile_destroy(pgc_memfile *mf)
{
	uint64_t size;

	if (!mf)
		return;
	/*
	 * The engine writes through the mappings: stop it first (a
	 * background load still running is cancelled; its waiters fail).
	 * It is freed only once the reclaimer, which may be quiescing it,
	 * has stopped.
	 */
	memfile_hooks_stop(mf);
	memfile_reclaim_stop(mf);
	memfile_evict_fini(mf);
	memfile_hooks_release(mf);
	size = atomic_load_explicit(&mf->file_size, memory_order_relaxed);
	if (mf->opts.decommit_on_destroy && size && !mf->readonly)
		(void)memfile_decommit_file(mf, (pgc_range){ 0, size });
	memfile_free(mf, true);
}
