/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loader_read.c - the page loader's reads, from the index to memory:
 * building a read of consecutive blocks (its destinations: the pages of
 * each block still wanted, with scratch for cancelled ones), recycling its
 * buffer, reading it synchronously for eager loads, and checking and
 * placing each block — decoded into a buffer and pwritten into the
 * backing file, or, where the host cannot pwrite (hugetlbfs), decoded
 * straight into the mapping; a waiter's block decoded only as far as its
 * pages, the rest later; and the decoders (a codec and a block of
 * scratch) with the pool that waiters take theirs from. The loader's
 * threads and its waiting and cancelling live in loader.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine.h"
#include "loader_int.h"

/* ---- decoders ------------------------------------------------------------ */

void ld_decoder_free(struct ld_decoder *d)
{
	if (!d)
		return;
	free(d->scratch);
	sf_codec_free(d->codec);
	free(d);
}

int ld_decoder_new(const struct loader *l, struct ld_decoder **out)
{
	struct ld_decoder *d = calloc(1, sizeof(*d));
	int ret = d ? sf_codec_new(l->img->compress, 0, &d->codec) : -ENOMEM;

	if (!ret && l->img->compress != PGC_COMPRESS_NONE) {
		d->scratch = malloc(l->img->load_block);
		if (!d->scratch)
			ret = -ENOMEM;
	}
	if (ret) {
		ld_decoder_free(d);
		return ret;
	}
	*out = d;
	return 0;
}

struct ld_decoder *ld_decoder_get_locked(struct loader *l)
{
	struct ld_decoder *d = l->decoders;

	if (d)
		l->decoders = d->next;
	return d;
}

void ld_decoder_put_locked(struct loader *l, struct ld_decoder *d)
{
	if (!d)
		return;
	d->next = l->decoders;
	l->decoders = d;
}

void ld_decoders_free_locked(struct loader *l)
{
	struct ld_decoder *d;

	while ((d = ld_decoder_get_locked(l)) != NULL)
		ld_decoder_free(d);
}

/* ---- building reads ------------------------------------------------------ */

/*
 * Append one destination (@len bytes at @base, file offset @off or
 * UINT64_MAX for scratch) to @rd, growing its arrays as needed.
 * Returns 0 or -ENOMEM.
 */
static int push_iov(struct ld_read *rd, int *cap, void *base, size_t len, uint64_t off)
{
	int last = rd->niov - 1;

	if (!len)
		return 0;
	/* Merge with the previous destination in the file, never across blocks. */
	if (rd->niov > rd->blk_first && off != UINT64_MAX && rd->ioff[last] != UINT64_MAX &&
	    (uint8_t *)rd->iov[last].iov_base + rd->iov[last].iov_len == (uint8_t *)base &&
	    rd->ioff[last] + rd->iov[last].iov_len == off) {
		rd->iov[last].iov_len += len;
		return 0;
	}
	if (rd->niov == *cap) {
		int ncap = *cap ? *cap * 2 : 16;
		struct iovec *n = realloc(rd->iov, (size_t)ncap * sizeof(*n));
		uint64_t *o;

		if (!n)
			return -ENOMEM;
		rd->iov = n;
		o = realloc(rd->ioff, (size_t)ncap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		rd->ioff = o;
		*cap = ncap;
	}
	rd->iov[rd->niov].iov_base = base;
	rd->iov[rd->niov].iov_len = len;
	rd->ioff[rd->niov] = off;
	rd->niov++;
	return 0;
}

/*
 * Destinations of block @b, appended to @rd: its pages still in the
 * unloaded set go to the mapping, cancelled ones to @scratch (at the same
 * offset within the block). Returns 0 or -errno.
 */
static int block_dests_locked(struct loader *l, struct ld_read *rd, int *cap,
			      uint32_t b, uint8_t *scratch)
{
	const struct sf_block *sb = ld_blk(l, b);
	uint64_t pos = 0;
	uint32_t i;
	int ret;

	for (i = 0; i < sb->nruns; i++) {
		const struct sf_run *run = &l->img->runs[sb->first_run + i];
		uint64_t at = run->off, end = run->off + run->len;
		rs_node *n = rs_lower_bound(&l->unloaded, at);

		while (at < end) {
			uint64_t upto = end;
			bool present = false;

			/* Pages another block of a chain loads are not this one's. */
			if (n && rs_range(n).start <= at) {
				upto = rs_range(n).end < end ? rs_range(n).end : end;
				present = ld_node_is(n, b);
			} else if (n && rs_range(n).start < end) {
				upto = rs_range(n).start;
			}
			if (present) {
				struct iovec v[2];
				int k, nv = memfile_map(l->mf, (pgc_range){ at, upto },
							PGC_ACCESS_WRITE, v, 2);

				if (nv < 0)
					return nv;
				for (k = 0; k < nv; k++) {
					ret = push_iov(rd, cap, v[k].iov_base, v[k].iov_len,
						       k ? at + v[0].iov_len : at);
					if (ret)
						return ret;
				}
			} else {
				/*
				 * Cancelled pages: raw blocks read straight into
				 * the mapping put them in the read's scratch; for
				 * the others the placing worker picks scratch.
				 */
				void *base = scratch ? scratch + pos + (at - run->off) : NULL;

				ret = push_iov(rd, cap, base, upto - at, UINT64_MAX);
				if (ret)
					return ret;
			}
			if (n && rs_range(n).end <= upto)
				n = rs_next(n);
			at = upto;
		}
		pos += run->len;
	}
	return 0;
}

/* ---- read buffers -------------------------------------------------------- */

/* Bytes of the read buffers' mapping. */
static size_t arena_bytes(const struct loader *l)
{
	return l->pool_cap * l->pool_size;
}

int ld_pool_init(struct loader *l)
{
	unsigned i;

	l->pool = calloc(l->pool_cap, sizeof(*l->pool));
	if (!l->pool)
		return -ENOMEM;
	l->arena = mmap(NULL, arena_bytes(l), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (l->arena == MAP_FAILED) {
		l->arena = NULL;
		return -ENOMEM;
	}
	/* Taken from the end of the array: the first buffers go first. */
	for (i = 0; i < l->pool_cap; i++)
		l->pool[l->npool++] = l->arena + (size_t)(l->pool_cap - 1 - i) * l->pool_size;
	return 0;
}

void ld_pool_free(struct loader *l)
{
	if (l->arena)
		munmap(l->arena, arena_bytes(l));
	l->arena = NULL;
	free(l->pool);
	l->pool = NULL;
	l->npool = 0;
}

static bool in_arena(const struct loader *l, const uint8_t *buf)
{
	return l->arena && buf >= l->arena && buf < l->arena + arena_bytes(l);
}

/*
 * Read buffers come from one mapping made when the load starts
 * (ld_pool_init), recycled: a malloc per read was a fresh mmap or brk
 * each time, and each of those takes the address space's lock for
 * writing, which the threads waiting for pages then queue behind. Only a
 * read longer than pool_size, or one more than pool_cap in flight, gets
 * memory of its own.
 */
static void *buf_get_locked(struct loader *l, size_t len)
{
	/* Page-aligned: raw reads may use O_DIRECT. */
	if (len > l->pool_size)
		return aligned_alloc(PGC_PAGE_SIZE, (len + MF_PAGE_MASK) & ~MF_PAGE_MASK);
	if (l->npool)
		return l->pool[--l->npool];
	return aligned_alloc(PGC_PAGE_SIZE, l->pool_size);
}

void ld_buf_put_locked(struct loader *l, struct ld_read *rd)
{
	if (in_arena(l, rd->buf))
		l->pool[l->npool++] = rd->buf;
	else
		free(rd->buf);
	rd->buf = NULL;
}

void ld_read_free(struct ld_read *rd)
{
	if (!rd)
		return;
	free(rd->scratch);
	free(rd->iov);
	free(rd->ioff);
	free(rd->blk_iov);
	free(rd);
}

/* Whether every page of block @b is still wanted (nothing cancelled). */
static bool block_whole_locked(struct loader *l, uint32_t b)
{
	const struct sf_block *sb = ld_blk(l, b);
	uint32_t i;

	for (i = 0; i < sb->nruns; i++) {
		const struct sf_run *run = &l->img->runs[sb->first_run + i];
		uint64_t at = run->off;
		rs_node *n = rs_lower_bound(&l->unloaded, at);

		/* Covered by this block's nodes alone. */
		for (; at < run->off + run->len; n = rs_next(n)) {
			if (!n || rs_range(n).start > at || !ld_node_is(n, b))
				return false;
			at = rs_range(n).end;
		}
	}
	return true;
}

/*
 * Scratch for the cancelled pages of @rd's blocks (read raw straight into
 * the mapping): one block's worth for every block not wholly wanted, none
 * if all are. Returns 0 or -ENOMEM.
 */
static int read_scratch_locked(struct loader *l, struct ld_read *rd)
{
	uint64_t need = 0;
	uint32_t b;

	for (b = rd->b0; b < rd->b1; b++)
		if (!block_whole_locked(l, b))
			need += ld_blk(l, b)->mem_len;
	if (!need)
		return 0;
	/* Page-aligned: pages.img may be open with O_DIRECT. */
	rd->scratch = aligned_alloc(PGC_PAGE_SIZE, (need + MF_PAGE_MASK) & ~MF_PAGE_MASK);
	return rd->scratch ? 0 : -ENOMEM;
}

/*
 * Start a read of blocks [b0, b1) (all unstarted): mark them started and
 * build their destinations. Returns the read, or NULL after recording an
 * error.
 */
struct ld_read *ld_read_start_locked(struct loader *l, uint32_t b0, uint32_t b1,
					 bool fill)
{
	bool raw = l->img->compress == PGC_COMPRESS_NONE;
	struct ld_read *rd = calloc(1, sizeof(*rd));
	int cap = 0, ret = -ENOMEM;
	uint8_t *at;
	uint32_t b;

	if (!rd)
		goto fail;
	rd->b0 = b0;
	rd->b1 = b1;
	rd->fill = fill;
	rd->fd = ld_blk(l, b0)->fd;
	rd->file_off = ld_blk(l, b0)->file_off;
	rd->len = ld_blk(l, b1 - 1)->file_off + ld_blk(l, b1 - 1)->stored_len - rd->file_off;
	rd->blk_iov = calloc(b1 - b0 + 1, sizeof(*rd->blk_iov));
	if (!rd->blk_iov)
		goto fail;
	/*
	 * Raw blocks are read straight into the mapping unless pwritten or
	 * read from a pages source (which fills one buffer).
	 */
	if (!raw || atomic_load_explicit(&l->use_pwrite, memory_order_relaxed) ||
	    ld_from_source(l, rd)) {
		rd->buf = buf_get_locked(l, rd->len);
		if (!rd->buf)
			goto fail;
	}
	/*
	 * Raw blocks read straight into the mapping send their cancelled
	 * pages to scratch; each such block gets its own part of it, since
	 * the checksum reads them back after the whole read has landed.
	 */
	if (raw && !rd->buf) {
		ret = read_scratch_locked(l, rd);
		if (ret)
			goto fail;
	}
	for (b = b0, at = rd->scratch; b < b1; b++) {
		uint8_t *bscratch = NULL;

		rd->blk_iov[b - b0] = rd->blk_first = rd->niov;
		if (at && !block_whole_locked(l, b)) {
			bscratch = at;
			at += ld_blk(l, b)->mem_len;
		}
		/* zstd blocks decode into a worker's own scratch when cancelled. */
		ret = block_dests_locked(l, rd, &cap, b, bscratch);
		if (ret)
			goto fail;
		l->bstate[b] = BLK_STARTED;
	}
	rd->blk_iov[b1 - b0] = rd->niov;
	l->reads++;
	if (fill)
		l->fill_reads++;
	return rd;
fail:
	if (rd)
		ld_buf_put_locked(l, rd);
	ld_read_free(rd);
	ld_fail_locked(l, ret);
	return NULL;
}

/*
 * Write bytes [@lo, @hi) of a decoded block (@data: the whole block) to
 * their destinations @iov/@ioff[0..n) (in block order; cancelled pieces
 * are skipped): pwritten into the backing file, or copied into the
 * mapping where pwrite does not work (hugetlbfs). @serial: one writer at
 * a time (l->write_mu).
 */
static int place_pieces(struct loader *l, const uint8_t *data, struct iovec *iov,
			const uint64_t *ioff, int n, uint64_t lo, uint64_t hi, bool serial)
{
	bool pw = atomic_load_explicit(&l->use_pwrite, memory_order_relaxed);
	uint64_t pos = 0, a, e;
	int i, ret = 0;

	serial = serial && pw;
	if (serial)
		pthread_mutex_lock(&l->write_mu);
	for (i = 0; i < n && pos < hi; pos += iov[i].iov_len, i++) {
		uint8_t *dst;

		a = pos > lo ? pos : lo;
		e = pos + iov[i].iov_len < hi ? pos + iov[i].iov_len : hi;
		if (ioff[i] == UINT64_MAX || a >= e)
			continue;   /* cancelled, or outside [lo, hi) */
		dst = (uint8_t *)iov[i].iov_base + (a - pos);
		if (pw) {
			ret = sf_pwrite_all(pgc_memfile_fd(l->mf), data + a, e - a, ioff[i] + (a - pos));
			if (!ret)
				continue;
			if (ret != -EINVAL && ret != -EOPNOTSUPP && ret != -ENOTSUP)
				break;
			/* No write(2) here: use the mapping from now on. */
			atomic_store_explicit(&l->use_pwrite, false, memory_order_relaxed);
			if (serial)
				pthread_mutex_unlock(&l->write_mu);
			pw = serial = false;
		}
		ret = engine_populate(dst, e - a);
		if (ret)
			break;
		memcpy(dst, data + a, e - a);
	}
	if (serial)
		pthread_mutex_unlock(&l->write_mu);
	return ret;
}

/*
 * Place block @sb (stored bytes at @src, in memory) at its destinations
 * @iov/@ioff[0..n). Into a file the host can write (tmpfs, disk), a zstd
 * block is decoded into @scratch (a raw one is used where it is) and
 * pwritten: the host allocates the pages without page-table work, which
 * on VMs costs more than the copy. Where pwrite does not work
 * (hugetlbfs), zstd blocks are decoded straight into the mapping,
 * populated in bulk first, and raw ones copied into it.
 */
static int place_block(struct loader *l, const struct sf_block *sb, const uint8_t *src,
		       struct iovec *iov, const uint64_t *ioff, int n,
		       struct sf_codec *codec, uint8_t *scratch, bool serial)
{
	bool pw = atomic_load_explicit(&l->use_pwrite, memory_order_relaxed);
	const uint8_t *data;
	uint64_t pos = 0;
	int i, ret;

	if (l->img->compress == PGC_COMPRESS_NONE) {
		/* Raw: the stored bytes are the pages. */
		if (sf_checksum(src, sb->stored_len) != sb->checksum)
			return -PGC_ECHECKSUM;
		data = src;
	} else if (pw) {
		struct iovec whole = { scratch, sb->mem_len };

		ret = sf_block_decode(codec, sb, src, &whole, 1);
		if (ret)
			return ret;
		data = scratch;
	} else {
		/*
		 * Straight into the mapping, populated in bulk first; cancelled
		 * pieces decode into the worker's scratch, at their place.
		 */
		for (i = 0; i < n; pos += iov[i].iov_len, i++) {
			if (ioff[i] == UINT64_MAX) {
				iov[i].iov_base = scratch + pos;
				continue;
			}
			ret = engine_populate(iov[i].iov_base, iov[i].iov_len);
			if (ret)
				return ret;
		}
		return sf_block_decode(codec, sb, src, iov, n);
	}
	return place_pieces(l, data, iov, ioff, n, 0, sb->mem_len, pw && serial);
}

/*
 * Whether @rd's writes take write_mu: a background load's, unless a
 * waiter decodes it, and an eager load's of a chain, whose blocks go in
 * as pieces around the newer images' pages: two workers pwriting small
 * pieces at once spin on the inode lock (measured: -7% CPU for a chain
 * of three).
 */
static bool serial_writes(const struct loader *l, const struct ld_read *rd)
{
	return (l->opts.background || l->img->nanc) && !rd->waiter_decodes;
}

/* Block @sb of @rd passed its checksum and is in: a source may keep it. */
static void block_verified(struct loader *l, const struct ld_read *rd,
			   const struct sf_block *sb)
{
	const struct pgc_pages_source *src = l->opts.pages_source;

	if (ld_from_source(l, rd) && src->verified)
		src->verified(src->arg, (uint32_t)ld_source_depth(l, rd),
			      rd->buf + (sb->file_off - rd->file_off), sb->stored_len,
			      sb->file_off);
}

/* Check and decode every block of @rd. Returns 0 or the first error. */
int ld_read_decode(struct loader *l, struct ld_read *rd, struct sf_codec *codec,
		       uint8_t *scratch)
{
	bool raw = l->img->compress == PGC_COMPRESS_NONE;
	uint32_t b;
	int ret;

	for (b = rd->b0; b < rd->b1; b++) {
		const struct sf_block *sb = ld_blk(l, b);
		int first = rd->blk_iov[b - rd->b0];
		int n = rd->blk_iov[b - rd->b0 + 1] - first;

		if (raw && !rd->buf) {
			/* Read straight into the mapping: check it there. */
			if (sf_checksum_iov(rd->iov + first, n) != sb->checksum)
				return -PGC_ECHECKSUM;
			continue;
		}
		ret = place_block(l, sb, rd->buf + (sb->file_off - rd->file_off), rd->iov + first,
				  rd->ioff + first, n, codec, scratch, serial_writes(l, rd));
		if (ret)
			return ret;
		block_verified(l, rd, sb);
	}
	return 0;
}

/* The bytes of block @sb that hold pages of @want: [*lo, *hi), empty if none. */
static void block_window(const struct loader *l, const struct sf_block *sb, pgc_range want,
			 uint64_t *lo, uint64_t *hi)
{
	uint64_t pos = 0, a, e;
	uint32_t i;

	*lo = UINT64_MAX;
	*hi = 0;
	for (i = 0; i < sb->nruns; pos += l->img->runs[sb->first_run + i].len, i++) {
		const struct sf_run *run = &l->img->runs[sb->first_run + i];

		a = run->off > want.start ? run->off : want.start;
		e = run->off + run->len < want.end ? run->off + run->len : want.end;
		if (a >= e)
			continue;
		if (pos + (a - run->off) < *lo)
			*lo = pos + (a - run->off);
		if (pos + (e - run->off) > *hi)
			*hi = pos + (e - run->off);
	}
	if (*lo >= *hi)
		*lo = *hi = 0;
}

int ld_read_decode_first(struct loader *l, struct ld_read *rd, pgc_range want,
			 struct ld_decoder *dec)
{
	const struct sf_block *sb = ld_blk(l, rd->b0);
	const uint8_t *src = rd->buf;
	struct iovec *iov = rd->iov;
	int n = rd->niov, ret;
	uint64_t lo, hi;

	block_window(l, sb, want, &lo, &hi);
	/* Whole blocks where parts would not pay, or are not possible. */
	if (l->img->compress != PGC_COMPRESS_ZSTD || rd->b1 != rd->b0 + 1 || !rd->buf ||
	    !atomic_load_explicit(&l->use_pwrite, memory_order_relaxed) || lo >= hi ||
	    (lo == 0 && hi == sb->mem_len))
		return ld_read_decode(l, rd, dec->codec, dec->scratch);
	rd->dec_pos = 0;
	ret = sf_block_decode_part(dec->codec, sb, src, dec->scratch, &rd->dec_pos, hi);
	if (ret)
		return ret;
	/* The waiter's pages go in at once, not behind the fill's writes. */
	ret = place_pieces(l, dec->scratch, iov, rd->ioff, n, lo, hi, false);
	if (ret)
		return ret;
	rd->early_lo = lo;
	rd->early_hi = hi;
	return 1;
}

int ld_read_decode_rest(struct loader *l, struct ld_read *rd)
{
	const struct sf_block *sb = ld_blk(l, rd->b0);
	struct ld_decoder *dec = rd->dec;
	int ret = 0;

	if (rd->dec_pos < sb->mem_len)
		ret = sf_block_decode_part(dec->codec, sb, rd->buf, dec->scratch, &rd->dec_pos,
					   sb->mem_len);
	if (!ret)
		ret = place_pieces(l, dec->scratch, rd->iov, rd->ioff, rd->niov, 0, rd->early_lo,
				   serial_writes(l, rd));
	if (!ret)
		ret = place_pieces(l, dec->scratch, rd->iov, rd->ioff, rd->niov, rd->early_hi,
				   sb->mem_len, serial_writes(l, rd));
	if (!ret)
		block_verified(l, rd, sb);
	return ret;
}

/*
 * Read @rd synchronously (eager loads): into its buffer, or for raw
 * blocks straight into the mapping after populating it in bulk.
 * Returns 0, -PGC_ETRUNCATED at a premature end of file, or -errno.
 */
int ld_read_sync(struct loader *l, struct ld_read *rd)
{
	const struct pgc_pages_source *src = l->opts.pages_source;
	int fd = rd->fd, i, ret;
	uint64_t done, skip;
	ssize_t n;

	if (rd->buf) {
		if (ld_from_source(l, rd))
			n = src->read(src->arg, (uint32_t)ld_source_depth(l, rd), rd->buf, rd->len,
				      rd->file_off);
		else
			n = sf_pread_all(fd, rd->buf, rd->len, rd->file_off);
		return n < 0 ? (int)n : (uint64_t)n < rd->len ? -PGC_ETRUNCATED : 0;
	}
	for (i = 0; i < rd->niov; i++) {
		ret = engine_populate(rd->iov[i].iov_base, rd->iov[i].iov_len);
		if (ret)
			return ret;
	}
	/* One preadv; a short one is finished iovec by iovec. */
	n = preadv(fd, rd->iov, rd->niov < IOV_MAX ? rd->niov : IOV_MAX, (off_t)rd->file_off);
	done = n > 0 ? (uint64_t)n : 0;
	for (i = 0, skip = done; i < rd->niov; i++) {
		uint64_t len = rd->iov[i].iov_len;

		if (skip >= len) {
			skip -= len;
			continue;
		}
		n = sf_pread_all(fd, (uint8_t *)rd->iov[i].iov_base + skip, len - skip,
				 rd->file_off + done);
		if (n < 0)
			return (int)n;
		if ((uint64_t)n < len - skip)
			return -PGC_ETRUNCATED;
		done += len - skip;
		skip = 0;
	}
	return 0;
}
