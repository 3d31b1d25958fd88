/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sf_internal.h - what the files of src/statefile share and nobody else
 * sees: the magics and limits of the format, a growable output buffer with
 * CRIU record framing, a bounds-checked record cursor, full-length I/O
 * helpers, and the memfile.img encoder / decoder and table validation.
 */
#ifndef PGC_SF_INTERNAL_H
#define PGC_SF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "statefile.h"

/* CRIU's common image magic, first u32 of every CRIU-framed file. */
#define SF_CRIU_COMMON_MAGIC 0x54564319u
/* CRIU's PAGEMAP_MAGIC (criu/include/magic.h). */
#define SF_CRIU_PAGEMAP_MAGIC 0x56084025u
/* Ours, second u32 of memfile.img: the bytes "PGCK" on disk. */
#define SF_MEMFILE_MAGIC 0x4b434750u
/* Second u32 of a working-set file: the bytes "PGWS" on disk. */
#define SF_WS_MAGIC 0x53574750u

/* CRIU pagemap entry flag: the pages are in the pages file. */
#define SF_PE_PRESENT (1u << 2)

#define SF_PAGE_SIZE ((uint64_t)PGC_PAGE_SIZE)
#define SF_PAGE_SHIFT 12

/* Entries per table record (segments, runs, blocks, refs, hashes). */
#define SF_RECORD_ENTRIES 65536u
/* Largest head and meta records a reader accepts. */
#define SF_MAX_HEAD 64u
#define SF_MAX_META 512u
/* Largest record of any kind (a full table record is well below this). */
#define SF_MAX_RECORD (8u << 20)
/* Largest memfile.img a reader accepts. */
#define SF_MAX_MEMFILE (1ULL << 34)
/*
 * Largest memory file size recorded: 128 TiB. It keeps all offset
 * arithmetic in range and bounds what a valid image can make a loader
 * reserve (the chunk table: 8 bytes per GiB, 1 MiB here).
 */
#define SF_MAX_FILE_SIZE PGC_MAX_FILE_SIZE
/* The trailer record: u32 length 9, tag 0x09, fixed64. */
#define SF_TRAILER_BYTES 13u
/* Longest parent path a child records. */
#define SF_MAX_PARENT_PATH 4096u

#define SF_MEMFILE_NAME "memfile.img"
#define SF_PAGES_NAME "pages.img"
#define SF_PAGEMAP_NAME "pagemap.img"

/* ---- framing.c ---------------------------------------------------------- */

/* A growable byte buffer; on allocation failure it keeps err = -ENOMEM. */
struct sf_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
	int err;
};

void sf_buf_free(struct sf_buf *b);
/* Append @len bytes; on failure sets b->err. Returns 0 or -ENOMEM. */
int sf_buf_put(struct sf_buf *b, const void *data, size_t len);
/* Append a little-endian u32. Returns 0 or -ENOMEM. */
int sf_buf_put_u32(struct sf_buf *b, uint32_t v);
/*
 * Append one record: u32 LE length then @msg packed. Returns 0, -ENOMEM,
 * or -EOVERFLOW if the message is larger than SF_MAX_RECORD.
 */
int sf_buf_put_record(struct sf_buf *b, const ProtobufCMessage *msg);

/* A read cursor over an in-memory file. */
struct sf_cursor {
	const uint8_t *p;
	size_t len;
	size_t pos;
};

/* Little-endian u32 at @p. */
uint32_t sf_get_u32(const uint8_t *p);

/*
 * sf_cursor_record - take the next record: its length (<= @max, else
 * -PGC_ECORRUPT) and bytes (inside the buffer, else -PGC_ETRUNCATED).
 * Returns 0 and *@rec, *@rlen.
 */
int sf_cursor_record(struct sf_cursor *c, size_t max, const uint8_t **rec, size_t *rlen);

/*
 * sf_create_tmp - create a new file for @name in @dirfd under a temporary
 * name (written to @tmp, @len bytes), mode 0600, O_EXCL | O_NOFOLLOW: nothing
 * that exists is ever opened. Returns the fd or -errno.
 */
int sf_create_tmp(int dirfd, const char *name, char *tmp, size_t len);

/*
 * sf_install - move @tmp to @name in @dirfd: a new name only (-EEXIST),
 * unless @force, which replaces the entry (a symlink is never followed).
 * Returns 0 or -errno.
 */
int sf_install(int dirfd, const char *tmp, const char *name, bool force);

/* sf_pwrite_all and sf_pread_all are declared in statefile.h (the loader uses them). */
/* sf_write_file_at - create @name in @dirfd (O_EXCL unless @trunc), write @buf, fsync, close. 0 or -errno. */
int sf_write_file_at(int dirfd, const char *name, const void *buf, size_t len, bool trunc);

/* ---- index.c ------------------------------------------------------------ */

/* The tables of an image, as the writer holds them and the reader builds them. */
struct sf_tables {
	uint64_t file_size;
	uint64_t logical_size;
	uint32_t block_size;
	enum pgc_compress compress;
	int level;
	const struct pgc_segment *segs;
	size_t nsegs;
	const struct sf_run *runs;
	size_t nruns;
	struct sf_block *blocks;  /* file_off, mem_len, first_run are filled by validation */
	size_t nblocks;
	uint64_t mem_bytes;       /* output of validation */
	uint64_t pages_bytes;     /* output of validation */
	/* Version 2. */
	const struct sf_ref *refs;
	size_t nrefs;
	const uint64_t *hashes;
	size_t nhashes;
	uint32_t depth;
	const char *parent_path;  /* depth > 0 */
	uint64_t parent_id;
};

/*
 * sf_validate_tables - check the invariants of statefile.h on @t and fill
 * each block's first_run, mem_len and file_off (from nruns and
 * stored_len), t->mem_bytes and t->pages_bytes.
 * Returns 0 or -PGC_ECORRUPT.
 */
int sf_validate_tables(struct sf_tables *t);

/*
 * sf_index_encode - serialize validated tables as memfile.img into @out.
 * Returns 0, -ENOMEM or -EOVERFLOW.
 */
int sf_index_encode(const struct sf_tables *t, struct sf_buf *out);

/*
 * sf_index_peek - check the magics and the head record of the first
 * @len bytes of a memfile.img of @size bytes.
 * Returns 0 and *@version, -PGC_EFOREIGN, -PGC_EVERSION, -PGC_ETRUNCATED
 * or -PGC_ECORRUPT.
 */
int sf_index_peek(const uint8_t *p, size_t len, uint64_t size, uint32_t *version);

/*
 * sf_index_decode - parse and validate the whole memfile.img in @p, @len
 * bytes, into @img (version, sizes, options and the segs / runs / blocks
 * tables, allocated here). Returns 0, -PGC_E*, or -ENOMEM.
 */
int sf_index_decode(const uint8_t *p, size_t len, struct sf_image *img);

/*
 * sf_trailer_put - append the trailer record (SF_TRAILER_BYTES): the xxh64
 * of every byte of @b so far. Returns 0 or @b's error.
 */
int sf_trailer_put(struct sf_buf *b);

/*
 * sf_trailer_check - check the trailer at the end of the @len bytes at @p
 * and store its checksum in *@sum. Returns 0, -PGC_ETRUNCATED (too short
 * for one), -PGC_ECORRUPT or -PGC_ECHECKSUM.
 */
int sf_trailer_check(const uint8_t *p, size_t len, uint64_t *sum);

/* ---- reader.c ----------------------------------------------------------- */

/*
 * A reader of whole blocks of one image (opened without O_DIRECT): its
 * codec, a buffer for a block's stored bytes and one for its decoded
 * bytes, mem (load_block bytes).
 */
struct sf_block_reader {
	const struct sf_image *img;
	struct sf_codec *codec;
	uint8_t *stored;
	uint8_t *mem;
};

/* sf_block_reader_init - set up @r for @img. Returns 0 or -ENOMEM. */
int sf_block_reader_init(struct sf_block_reader *r, const struct sf_image *img);

/*
 * sf_block_read - read block @i of the image (of the chain's table) and
 * decode it into r->mem. Returns 0, -PGC_ETRUNCATED (pages.img shrank),
 * -PGC_ECHECKSUM, -PGC_ECORRUPT, -EINVAL or -errno.
 */
int sf_block_read(struct sf_block_reader *r, size_t i);

/* sf_block_reader_free - free what sf_block_reader_init allocated. */
void sf_block_reader_free(struct sf_block_reader *r);

/*
 * sf_image_each_block - read, check and decode every block of @img in
 * order (sf_block_read), calling @fn with the block's index and its
 * mem_len decoded bytes. Stops at the first error or non-zero @fn value.
 * Returns 0, that value, -PGC_E*, -ENOMEM or -errno.
 */
int sf_image_each_block(const struct sf_image *img,
			int (*fn)(void *arg, size_t i, const uint8_t *mem), void *arg);

/* ---- pagemap.c ---------------------------------------------------------- */

/*
 * sf_pagemap_encode - a CRIU pagemap.img for @runs (sorted) into @out:
 * adjacent runs merged, pages_id 1. Returns 0, -ENOMEM or -EOVERFLOW.
 */
int sf_pagemap_encode(const struct sf_run *runs, size_t nruns, struct sf_buf *out);

/* ---- pagehash.c --------------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SF_HAVE_PAGE_HASH_AVX2 1
/*
 * sf_page_hash_avx2 - sf_page_hash's XXH3-64 of one page, compiled for
 * AVX2: call it only where __builtin_cpu_supports("avx2"). Cannot fail.
 */
uint64_t sf_page_hash_avx2(const void *page);
#endif

#endif /* PGC_SF_INTERNAL_H */
