/* SPDX-License-Identifier: Apache-2.0 */
/*
 * statefile.h - the image format: writing an image directory atomically,
 * opening and validating one, and encoding / decoding / checksumming the
 * blocks of pages.img.
 *
 * An image directory holds memfile.img (CRIU framing: common magic, our
 * per-file magic, then u32-length-prefixed protobuf-c records: a head with
 * the format version, the metadata, the usage segments, the pages index,
 * and a trailer with the checksum of everything before it), pages.img
 * (blocks), and pagemap.img (a CRIU pagemap). See docs/format.md.
 *
 * The pages index is a list of runs and a list of blocks. A run is a
 * maximal stretch of non-zero pages inside one block: {memory-file offset,
 * length}. A block is up to block_size bytes of such pages, encoded as one
 * unit (one zstd frame, or the raw bytes) with an xxh64 checksum of what
 * pages.img stores. Blocks are stored in memory-offset order and each one
 * is reachable in O(1) through the index.
 *
 * A child image (version 2) stores only the pages that differ from its
 * parent's and references the others (refs), and records a hash of every
 * non-zero page; sf_image_open() follows its chain of parents.
 *
 * sf_image_open() checks everything before it returns; afterwards every
 * table may be indexed without further checks (see the invariants below).
 * This module depends on nothing else of pgckpt's and never prints.
 */
#ifndef PGC_STATEFILE_H
#define PGC_STATEFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "pgckpt.h"

#define SF_VERSION 2               /* format version written (1 and 2 are read) */
#define SF_MAX_DEPTH 16            /* most ancestors an image may have (chain length - 1) */
#define SF_MAX_BLOCK (4u << 20)    /* largest block_size accepted */

/* A run of non-zero pages: memory-file offset and length, page multiples. */
struct sf_run {
	uint64_t off;
	uint64_t len;
};

/* One block of pages.img. */
struct sf_block {
	uint64_t file_off;       /* offset in pages.img (raw: page-aligned) */
	uint32_t stored_len;     /* bytes in pages.img (raw: == mem_len) */
	uint32_t mem_len;        /* bytes of memory it holds (sum of its runs) */
	uint64_t checksum;       /* xxh64, seed 0, of the stored bytes */
	uint32_t first_run;      /* its runs are runs[first_run .. first_run + nruns) */
	uint32_t nruns;
	int fd;                  /* pages.img of the image that stores it (reader only) */
};

/* A run of non-zero pages held by the ancestor @depth links up (1: parent). */
struct sf_ref {
	uint64_t off;
	uint64_t len;
	uint32_t depth;
};

/*
 * What a load writes: the memory [off, off + len) comes from block @block
 * (whose runs cover it). Pieces are sorted and disjoint; a block's runs
 * may cover more than its pieces (pages a child changed or dropped).
 */
struct sf_piece {
	uint64_t off;
	uint64_t len;
	uint32_t block;
};

/* What the save engine records besides the index. */
struct sf_meta {
	uint64_t file_size;      /* memory file size, page multiple */
	uint64_t logical_size;   /* source size in bytes (<= file_size) */
	const struct pgc_segment *segs;
	size_t nsegs;
	const char *parent_path;  /* child: the parent, relative to the image's directory */
	uint64_t parent_id;      /* child: the parent's identity (sf_image.identity) */
	uint32_t depth;          /* child: the parent's depth + 1; 0 standalone */
};

/* Non-zero pages [off, off + len) held at @depth, hashes[hash0 ..] theirs. */
struct sf_hrange {
	uint64_t off, len;
	uint32_t depth;
	size_t hash0;
};

/*
 * An open, validated image. Invariants after sf_image_open():
 * - segs: page-aligned, non-empty, sorted, disjoint, end <= file_size,
 *   kind < PGC_KIND_COUNT, refs == 0 only with kind PGC_KIND_SYSTEM;
 * - runs: page-aligned, non-empty, sorted and disjoint across the whole
 *   image, end <= file_size, each inside a segment with refs > 0;
 * - blocks: their run slices partition runs in order; mem_len is the sum
 *   of its runs and <= block_size <= SF_MAX_BLOCK; stored_len <=
 *   sf_encode_bound(mem_len) (raw: == mem_len, file_off page-aligned);
 *   sorted by file_off, non-overlapping, inside pages.img;
 * - mem_bytes is the sum of all mem_len.
 */
struct sf_image {
	uint32_t version;
	uint64_t file_size;
	uint64_t logical_size;
	uint32_t block_size;
	enum pgc_compress compress;
	int level;
	struct pgc_segment *segs;
	size_t nsegs;
	struct sf_run *runs;
	size_t nruns;
	struct sf_block *blocks;
	size_t nblocks;
	uint64_t mem_bytes;      /* sum of the blocks' mem_len */
	uint64_t pages_bytes;    /* size of pages.img */
	int pages_fd;            /* pages.img, O_RDONLY (| O_DIRECT if asked) */
	bool direct;             /* pages_fd was opened with O_DIRECT */
	/* Version 2. */
	uint64_t identity;       /* the checksum memfile.img's trailer records: names this image */
	uint32_t depth;          /* ancestors (0: standalone) */
	char *parent_path;       /* depth > 0: as recorded, relative to the image's directory */
	uint64_t parent_id;      /* depth > 0: the parent's identity */
	struct sf_ref *refs;     /* pages held by ancestors; disjoint from runs */
	size_t nrefs;
	uint64_t *hashes;        /* XXH3-64 of each non-zero page (runs and refs), offset order */
	size_t nhashes;          /* 0 for version 1 images */
	/*
	 * The chain, resolved by sf_image_open: runs[0..nruns_own) and
	 * blocks[0..nblocks_own) are this image's own (what its pages.img
	 * and pagemap.img hold); the ancestors' blocks that it references
	 * follow (each block's fd says where it is stored). pieces say what
	 * a load writes from which block; load_bytes is their sum.
	 */
	size_t nruns_own, nblocks_own;
	struct sf_piece *pieces;
	size_t npieces;
	uint64_t load_bytes;
	struct sf_hrange *hr;    /* runs and refs merged, for sf_image_page */
	size_t nhr;
	uint32_t load_block;     /* largest block_size in the chain */
	struct sf_image **anc;   /* anc[d - 1]: the ancestor d links up */
	size_t nanc;
	char *path;              /* as opened (ancestors: resolved) */
};

/*
 * sf_image_open - open the image directory @path, read and validate
 * memfile.img (version first, then sizes, then everything else), and open
 * pages.img (with O_DIRECT if @direct and the image is raw; silently
 * without it where the file system refuses). For a child (depth > 0),
 * open each ancestor the same way, check that it is the recorded one
 * (identity, depth, compression), and resolve the refs into the
 * ancestors' blocks (chain.c). Never allocates more than the files'
 * sizes justify.
 * Returns 0 and *@out, -PGC_EFOREIGN (not a pgckpt image), -PGC_EVERSION
 * (newer format), -PGC_ECORRUPT, -PGC_ECHECKSUM, -PGC_ETRUNCATED,
 * -PGC_EPARENT (an ancestor missing, damaged or not the recorded one), or
 * -errno (-ENOENT, -ENOTDIR, -EACCES, -ENOMEM, -EIO).
 */
int sf_image_open(const char *path, bool direct, struct sf_image **out);

/* sf_image_close - close and free @img and its ancestors (may be NULL). */
void sf_image_close(struct sf_image *img);

/*
 * sf_image_open_one - sf_image_open without following the chain: only the
 * image's own tables (pieces cover its own runs; refs unresolved).
 * Returns as sf_image_open.
 */
int sf_image_open_one(const char *path, bool direct, struct sf_image **out);

/*
 * sf_parent_path - the path of @img's parent: its recorded path joined to
 * the directory holding @path (the image's own path). Returns a malloc'd
 * string, or NULL (no parent, or out of memory: check img->depth).
 */
char *sf_parent_path(const char *path, const struct sf_image *img);

/*
 * sf_image_page - what @img's chain holds at the page at @off: returns 0
 * (a zero page), or 1 with *@hash and *@depth (0: @img stores it, d: the
 * ancestor d links up does). @cursor (start at 0) speeds up calls with
 * rising offsets.
 */
int sf_image_page(const struct sf_image *img, uint64_t off, size_t *cursor,
		  uint64_t *hash, uint32_t *depth);

/* sf_page_hash - XXH3-64 (seed 0) of one page, the hash images record. */
uint64_t sf_page_hash(const void *page);

/* ---- blocks ------------------------------------------------------------ */

/* A per-thread zstd context (compression or decompression). */
struct sf_codec;

/*
 * sf_codec_new - a codec for @compress at @level (ignored for
 * decompression and raw). Returns 0 or -ENOMEM.
 */
int sf_codec_new(enum pgc_compress compress, int level, struct sf_codec **out);
void sf_codec_free(struct sf_codec *c);

/* sf_encode_bound - the largest stored size of a block of @mem_len bytes. */
size_t sf_encode_bound(enum pgc_compress compress, size_t mem_len);

/*
 * sf_block_encode - encode the bytes of @src (@nsrc iovecs, @mem_len bytes
 * in all) into @dst (@cap >= sf_encode_bound bytes) with @c, and checksum
 * the result. For raw images this copies; the save engine writes raw
 * blocks straight from the mapping and calls sf_checksum_iov() instead.
 * Returns 0 and *@stored_len, *@checksum, or -ENOBUFS / -EINVAL / -ENOMEM.
 */
int sf_block_encode(struct sf_codec *c, const struct iovec *src, int nsrc,
		    void *dst, size_t cap, size_t *stored_len, uint64_t *checksum);

/* sf_checksum - xxh64 (seed 0) of @len bytes. */
uint64_t sf_checksum(const void *buf, size_t len);

/* sf_checksum_iov - xxh64 (seed 0) of the concatenation of @iov[0..n). */
uint64_t sf_checksum_iov(const struct iovec *iov, int n);

/*
 * sf_block_decode - check @src (the block's stored_len stored bytes)
 * against b->checksum, then decode it into @dst (@ndst iovecs holding
 * exactly b->mem_len bytes; for zstd, decompressed straight into them with
 * @c, a decompression codec). Returns 0, -PGC_ECHECKSUM, or -PGC_ECORRUPT
 * (the frame does not decode to exactly mem_len bytes).
 */
int sf_block_decode(struct sf_codec *c, const struct sf_block *b, const void *src,
		    const struct iovec *dst, int ndst);

/*
 * sf_block_decode_part - decode the zstd block @b (stored bytes at @src)
 * into @dst (b->mem_len bytes) in parts: from byte *@pos (0: a new
 * block, checked against b->checksum first) until at least @upto bytes
 * are out, setting *@pos to the bytes out. The call that puts out the
 * block's last byte (at the latest the one with @upto == b->mem_len)
 * checks that the frame ends there; later calls return 0. The
 * codec holds the block's state in between: one block at a time per
 * codec, @src unchanged, and no other decode on @c until it ends.
 * Returns 0, -EINVAL (not zstd, or @upto past the block), -PGC_ECHECKSUM,
 * -PGC_ECORRUPT or -ENOMEM; after an error the block is abandoned.
 */
int sf_block_decode_part(struct sf_codec *c, const struct sf_block *b, const void *src,
			 uint8_t *dst, size_t *pos, size_t upto);

/* ---- I/O loops (framing.c) --------------------------------------------- */

/*
 * sf_pwrite_all - write all @len bytes of @buf at @off, retrying short
 * writes and EINTR. Returns 0 or -errno (-EIO when no progress is made,
 * -EINVAL when the range is past INT64_MAX).
 */
int sf_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/*
 * sf_pread_all - read @len bytes at @off, retrying short reads and EINTR.
 * Returns the bytes read (fewer than @len only at end of file) or -errno.
 */
ssize_t sf_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* ---- writing ----------------------------------------------------------- */

struct sf_writer;

/*
 * sf_writer_open - start an image at @path: create a temporary sibling
 * directory "PATH.tmp-XXXXXX" holding an empty pages.img. @path must not
 * exist, or be an empty directory or an existing pgckpt image directory
 * holding only the image's own files (replaced atomically at commit) —
 * anything else is refused with -EEXIST / -ENOTDIR, and an image with
 * other files beside its own with -ENOTEMPTY.
 * Returns 0 and *@out, -EINVAL (bad compress / level / block_size), or
 * -errno.
 */
int sf_writer_open(const char *path, enum pgc_compress compress, int level,
		   uint32_t block_size, struct sf_writer **out);

/* The pages.img descriptor (O_WRONLY); the caller writes blocks into it. */
int sf_writer_pages_fd(const struct sf_writer *w);

/*
 * sf_writer_add_block - append a block to the index: its runs (sorted,
 * after every earlier run, in total <= block_size), stored size and
 * checksum. Stores in *@file_off where the caller must write the
 * @stored_len bytes in pages.img (blocks are laid out in the order they
 * are added; raw blocks page-aligned).
 * Returns 0, -EINVAL (runs out of order, bad sizes) or -ENOMEM.
 */
int sf_writer_add_block(struct sf_writer *w, const struct sf_run *runs, uint32_t nruns,
			uint32_t stored_len, uint64_t checksum, uint64_t *file_off);

/*
 * sf_writer_add_refs - append runs of pages the chain holds (a child's
 * referenced pages), after every earlier ref, each at most @depth_max.
 * sf_writer_add_hashes - append the hashes of the next @n non-zero pages
 * (stored or referenced, in offset order). Both return 0, -EINVAL or
 * -ENOMEM.
 */
int sf_writer_add_refs(struct sf_writer *w, const struct sf_ref *refs, size_t n);
int sf_writer_add_hashes(struct sf_writer *w, const uint64_t *hashes, size_t n);

/*
 * sf_writer_commit - once every block's bytes are written: write
 * memfile.img (with @meta) and pagemap.img, size and fsync every file and
 * the directory, then move the directory to its final name atomically
 * (rename, or renameat2 RENAME_EXCHANGE over an existing image whose old
 * contents are then removed) and fsync the parent. Frees @w, also on
 * failure (the temporary directory is then removed).
 * Returns 0 or -errno (-ENOSPC, -EIO, ...).
 */
int sf_writer_commit(struct sf_writer *w, const struct sf_meta *meta);

/* sf_writer_abort - remove the temporary directory and free @w (may be NULL). */
void sf_writer_abort(struct sf_writer *w);

/* ---- working sets (ws.c) ---------------------------------------------- */

/* A working set: blocks in the order first demanded, and the pages (may be none). */
struct sf_ws {
	uint32_t *blocks;        /* distinct block numbers */
	size_t n;
	uint64_t *pages;         /* distinct page numbers (memory-file offset / 4096) */
	size_t npages;
};

/* The pages of memory @img restores: what a working set's page numbers are below. */
static inline uint64_t sf_ws_mem_pages(const struct sf_image *img)
{
	return (img->logical_size + 4095) / 4096;
}

/* The mem_pages of the block-only calls: any page number a file holds passes. */
#define SF_WS_ANY_PAGES (UINT64_MAX / 4096)

/*
 * sf_ws_write_set - write @ws (at least one block; pages each below
 * @mem_pages) as the working-set file @path, like sf_ws_write.
 * Returns as sf_ws_write (-EINVAL also for a page out of range or repeated).
 */
int sf_ws_write_set(const char *path, uint64_t image_id, uint64_t nblocks, uint64_t mem_pages,
		    const struct sf_ws *ws);

/*
 * sf_ws_decode_set - sf_ws_decode with the pages: each must be below
 * @mem_pages and none repeated (else -PGC_ECORRUPT). *@ws is zeroed on
 * error, else holds malloc'd arrays (sf_ws_free).
 */
int sf_ws_decode_set(const uint8_t *p, size_t len, uint64_t image_id, uint64_t nblocks,
		     uint64_t mem_pages, struct sf_ws *ws);

/* sf_ws_read_set - sf_ws_read with the pages, as sf_ws_decode_set. */
int sf_ws_read_set(const char *path, uint64_t image_id, uint64_t nblocks, uint64_t mem_pages,
		   struct sf_ws *ws);

/* sf_ws_free - free @ws's arrays and zero it. */
void sf_ws_free(struct sf_ws *ws);

/*
 * sf_ws_write - write the working-set file @path: @n distinct block
 * numbers (each < @nblocks) of the image whose id is @image_id, in order.
 * Atomic: a new file in @path's directory, fsynced, renamed over @path
 * (a symlink there is replaced, never followed), and the directory fsynced.
 * Returns 0, -EINVAL (@n is 0, a block out of range or repeated), or
 * -errno (-ENOSPC, -EIO, ...).
 */
int sf_ws_write(const char *path, uint64_t image_id, uint64_t nblocks,
		const uint32_t *blocks, size_t n);

/*
 * sf_ws_decode - parse the working-set file in the @len bytes at @p for
 * the image @image_id of @nblocks blocks; *@blocks (malloc'd) and *@n get
 * its blocks in order (the pages of a page-granular file are checked,
 * then dropped). Never reads outside @p.
 * Returns 0; -PGC_EFOREIGN (not a working-set file), -ESTALE (one of
 * another image), -ENODATA (no block, or an empty file), -PGC_ECORRUPT, -PGC_ECHECKSUM,
 * -PGC_ETRUNCATED, or -ENOMEM.
 */
int sf_ws_decode(const uint8_t *p, size_t len, uint64_t image_id, uint64_t nblocks,
		 uint32_t **blocks, size_t *n);

/*
 * sf_ws_read - read and sf_ws_decode the regular file @path (never
 * blocking on a FIFO or device). Returns as sf_ws_decode, or -errno
 * (-ENOENT, -EACCES, -EISDIR; -EINVAL for a file that is not regular).
 */
int sf_ws_read(const char *path, uint64_t image_id, uint64_t nblocks,
	       uint32_t **blocks, size_t *n);

#endif /* PGC_STATEFILE_H */
