/* SPDX-License-Identifier: Apache-2.0 */
/*
 * block.c - the unit of pages.img: encoding a block of memory (one zstd
 * frame, or the raw bytes), its xxh64 checksum, and decoding it again
 * straight into the destination iovecs. Decoding checks the checksum
 * first and then insists that the frame yields exactly the block's memory
 * length and ends exactly at its stored length, so a damaged block is
 * refused rather than turned into wrong memory.
 *
 * A codec is per thread: it owns one zstd compression and one
 * decompression context.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY   /* XXH64_state_t on the stack */
#include <xxhash.h>
#define ZSTD_STATIC_LINKING_ONLY  /* buffer-less streaming: sf_block_decode_part */
#include <zstd.h>
#include <zstd_errors.h>

#include "sf_internal.h"

/* Decompression window limit: blocks are at most SF_MAX_BLOCK bytes. */
#define SF_WINDOW_LOG_MAX 23

struct sf_codec {
	enum pgc_compress compress;
	int level;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	size_t in_pos;          /* sf_block_decode_part: stored bytes consumed */
};

int sf_codec_new(enum pgc_compress compress, int level, struct sf_codec **out)
{
	struct sf_codec *c;
	int ret = -ENOMEM;

	if (compress != PGC_COMPRESS_ZSTD && compress != PGC_COMPRESS_NONE)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->compress = compress;
	c->level = level < 1 ? 1 : level > ZSTD_maxCLevel() ? ZSTD_maxCLevel() : level;
	if (compress == PGC_COMPRESS_ZSTD) {
		c->cctx = ZSTD_createCCtx();
		c->dctx = ZSTD_createDCtx();
		if (!c->cctx || !c->dctx)
			goto exit;
		if (ZSTD_isError(ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_windowLogMax,
							 SF_WINDOW_LOG_MAX))) {
			ret = -EINVAL;
			goto exit;
		}
	}
	*out = c;
	return 0;
exit:
	sf_codec_free(c);
	return ret;
}

void sf_codec_free(struct sf_codec *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	free(c);
}

size_t sf_encode_bound(enum pgc_compress compress, size_t mem_len)
{
	if (compress == PGC_COMPRESS_NONE)
		return mem_len;
	return ZSTD_COMPRESSBOUND(mem_len);
}

uint64_t sf_checksum(const void *buf, size_t len)
{
	return XXH64(buf, len, 0);
}

uint64_t sf_page_hash(const void *page)
{
#ifdef SF_HAVE_PAGE_HASH_AVX2
	if (__builtin_cpu_supports("avx2"))
		return sf_page_hash_avx2(page);
#endif
	return XXH3_64bits(page, SF_PAGE_SIZE);
}

uint64_t sf_checksum_iov(const struct iovec *iov, int n)
{
	XXH64_state_t st;
	int i;

	/* A stack state: no allocation, so this cannot fail. */
	XXH64_reset(&st, 0);
	for (i = 0; i < n; i++)
		XXH64_update(&st, iov[i].iov_base, iov[i].iov_len);
	return XXH64_digest(&st);
}

/* Sum of @iov's lengths, or SIZE_MAX if it overflows or @n is negative. */
static size_t iov_total(const struct iovec *iov, int n)
{
	size_t sum = 0;
	int i;

	if (n < 0)
		return SIZE_MAX;
	for (i = 0; i < n; i++) {
		if (iov[i].iov_len > SIZE_MAX - 1 - sum)
			return SIZE_MAX;
		sum += iov[i].iov_len;
	}
	return sum;
}

/* Compress @src into one zstd frame that records its content size. */
static int encode_zstd(struct sf_codec *c, const struct iovec *src, int nsrc,
		       size_t mem_len, void *dst, size_t cap, size_t *stored)
{
	ZSTD_outBuffer out = { dst, cap, 0 };
	ZSTD_inBuffer in;
	size_t r;
	int i;

	ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_and_parameters);
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, c->level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0)))
		return -EINVAL;
	if (nsrc == 1) {
		r = ZSTD_compress2(c->cctx, dst, cap, src[0].iov_base, mem_len);
		if (ZSTD_isError(r))
			return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? -ENOBUFS
										     : -ENOMEM;
		*stored = r;
		return 0;
	}
	if (ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c->cctx, mem_len)))
		return -EINVAL;
	for (i = 0; i < nsrc; i++) {
		in.src = src[i].iov_base;
		in.size = src[i].iov_len;
		in.pos = 0;
		while (in.pos < in.size) {
			r = ZSTD_compressStream2(c->cctx, &out, &in, ZSTD_e_continue);
			if (ZSTD_isError(r))
				return -ENOMEM;
			if (out.pos == out.size && in.pos < in.size)
				return -ENOBUFS;
		}
	}
	in.src = NULL;
	in.size = 0;
	in.pos = 0;
	do {
		r = ZSTD_compressStream2(c->cctx, &out, &in, ZSTD_e_end);
		if (ZSTD_isError(r))
			return -ENOMEM;
		if (r && out.pos == out.size)
			return -ENOBUFS;
	} while (r);
	*stored = out.pos;
	return 0;
}

int sf_block_encode(struct sf_codec *c, const struct iovec *src, int nsrc,
		    void *dst, size_t cap, size_t *stored_len, uint64_t *checksum)
{
	size_t mem_len = iov_total(src, nsrc), stored = 0, off = 0;
	int i, ret;

	if (!c || mem_len == SIZE_MAX || mem_len == 0 || mem_len > SF_MAX_BLOCK)
		return -EINVAL;
	if (cap < sf_encode_bound(c->compress, mem_len))
		return -ENOBUFS;
	if (c->compress == PGC_COMPRESS_NONE) {
		for (i = 0; i < nsrc; i++) {
			memcpy((uint8_t *)dst + off, src[i].iov_base, src[i].iov_len);
			off += src[i].iov_len;
		}
		stored = mem_len;
	} else {
		ret = encode_zstd(c, src, nsrc, mem_len, dst, cap, &stored);
		if (ret)
			return ret;
	}
	*stored_len = stored;
	*checksum = sf_checksum(dst, stored);
	return 0;
}

/*
 * Every byte of the block is out (@r: ZSTD_decompressStream's last hint):
 * the frame must now end, producing nothing more, exactly at the end of
 * @in. Returns 0 or -PGC_ECORRUPT.
 */
static int frame_end(struct sf_codec *c, ZSTD_inBuffer *in, size_t r)
{
	ZSTD_outBuffer out;
	uint8_t spill;
	size_t in0;

	while (r != 0) {
		out.dst = &spill;
		out.size = 1;
		out.pos = 0;
		in0 = in->pos;
		r = ZSTD_decompressStream(c->dctx, &out, in);
		if (ZSTD_isError(r) || out.pos != 0 || (r != 0 && in->pos == in0))
			return -PGC_ECORRUPT;
	}
	if (in->pos != in->size)
		return -PGC_ECORRUPT;           /* trailing bytes */
	return 0;
}

/*
 * Decode one zstd frame of exactly @src_len bytes into exactly the bytes
 * of @dst. Every loop makes progress or fails, so a hostile frame cannot
 * spin.
 */
static int decode_zstd(struct sf_codec *c, const void *src, size_t src_len,
		       const struct iovec *dst, int ndst)
{
	ZSTD_inBuffer in = { src, src_len, 0 };
	ZSTD_outBuffer out;
	size_t r = 1, in0, out0;
	int i;

	c->in_pos = 0;
	ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only);
	for (i = 0; i < ndst; i++) {
		out.dst = dst[i].iov_base;
		out.size = dst[i].iov_len;
		out.pos = 0;
		while (out.pos < out.size) {
			if (r == 0)
				return -PGC_ECORRUPT;   /* frame ended early */
			in0 = in.pos;
			out0 = out.pos;
			r = ZSTD_decompressStream(c->dctx, &out, &in);
			if (ZSTD_isError(r))
				return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation
					       ? -ENOMEM : -PGC_ECORRUPT;
			if (in.pos == in0 && out.pos == out0)
				return -PGC_ECORRUPT;   /* input exhausted */
		}
	}
	return frame_end(c, &in, r);
}

int sf_block_decode(struct sf_codec *c, const struct sf_block *b, const void *src,
		    const struct iovec *dst, int ndst)
{
	size_t total = iov_total(dst, ndst), off = 0;
	int i;

	if (!c || total != b->mem_len)
		return -EINVAL;
	if (sf_checksum(src, b->stored_len) != b->checksum)
		return -PGC_ECHECKSUM;
	if (c->compress == PGC_COMPRESS_ZSTD)
		return decode_zstd(c, src, b->stored_len, dst, ndst);
	if (b->stored_len != b->mem_len)
		return -PGC_ECORRUPT;
	for (i = 0; i < ndst; i++) {
		memcpy(dst[i].iov_base, (const uint8_t *)src + off, dst[i].iov_len);
		off += dst[i].iov_len;
	}
	return 0;
}

int sf_block_decode_part(struct sf_codec *c, const struct sf_block *b, const void *src,
			 uint8_t *dst, size_t *pos, size_t upto)
{
	const uint8_t *in = src;
	size_t out = *pos, need, r;
	int ret = -PGC_ECORRUPT;

	if (!c || c->compress != PGC_COMPRESS_ZSTD || upto > b->mem_len || *pos > upto)
		return -EINVAL;
	if (*pos && *pos == b->mem_len)
		return 0;           /* an earlier call ended the block, and checked its end */
	if (*pos == 0) {
		ZSTD_frameHeader fh;

		c->in_pos = 0;
		if (sf_checksum(src, b->stored_len) != b->checksum)
			return -PGC_ECHECKSUM;
		/*
		 * What decode_zstd refuses, refused here too: a frame that is
		 * not one whole zstd frame, or (no content size: zstd's buffered
		 * mode) a window above SF_WINDOW_LOG_MAX.
		 */
		if (ZSTD_getFrameHeader(&fh, src, b->stored_len) != 0 || fh.frameType != ZSTD_frame ||
		    (fh.frameContentSize == ZSTD_CONTENTSIZE_UNKNOWN &&
		     fh.windowSize > (1ull << SF_WINDOW_LOG_MAX)))
			return -PGC_ECORRUPT;
		if (ZSTD_isError(ZSTD_decompressBegin(c->dctx)))
			return -ENOMEM;
	}
	/*
	 * zstd's buffer-less streaming: one zstd block (at most 128 KiB) at a
	 * time, straight into @dst, each after the one before (no window
	 * buffer, no copy); zstd checks every block against the space left.
	 */
	while ((need = ZSTD_nextSrcSizeToDecompress(c->dctx)) != 0) {
		/* Once every byte is out, the frame is ended here and now. */
		if (out >= upto && out < b->mem_len)
			break;
		if (need > b->stored_len - c->in_pos)
			goto end;       /* the frame goes on past the block */
		r = ZSTD_decompressContinue(c->dctx, dst + out, b->mem_len - out, in + c->in_pos,
					    need);
		if (ZSTD_isError(r))
			goto end;
		c->in_pos += need;
		out += r;
	}
	*pos = out;
	if (need != 0)
		return 0;           /* @upto bytes are out, not all: the block goes on later */
	/* The frame has ended: exactly the block's bytes, exactly its stored bytes. */
	if (out == b->mem_len && c->in_pos == b->stored_len)
		ret = 0;
end:
	c->in_pos = 0;
	return ret;
}
