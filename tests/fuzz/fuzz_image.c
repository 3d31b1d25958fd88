/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_image.c - libFuzzer harness for everything that parses an image:
 * memfile.img (magics, head, meta, segment / run / block records, trailer,
 * table validation), pages.img against the index, every block's decode,
 * and the CRIU pagemap encoder fed from the decoded runs.
 *
 * Input: one flag byte, a u32 LE length M, M bytes of memfile.img, the
 * rest is pages.img. Flag bit 0 asks the harness to patch memfile.img's
 * size field and trailer checksum so mutations get past the checksum to
 * the table decoding; without it the file is used as is. Both files are
 * written into a private temporary directory and opened with
 * sf_image_open(). An accepted image must satisfy every invariant of
 * statefile.h (checked here; a violation aborts). Each block is then read
 * and decoded as stored (sf_block_read) and once more with its
 * checksum replaced by the stored bytes' own, so the zstd decoder sees
 * the mutated frames too, into one buffer and into per-run iovecs, and in
 * two parts as a waiter and a worker do (sf_block_decode_part: the same
 * verdict and bytes as the whole decode, or it aborts).
 * Flag bit 1 also restores an accepted image (small enough: memory file
 * <= 1 TiB, stored memory <= 16 MiB) with pgc_load, eagerly and in the
 * background: the load must fail exactly when a block does not decode,
 * and every piece that maps must hold the decoded bytes - never wrong data.
 * Flag bit 2 makes the input a chain: after memfile.img come a u32 LE
 * length P, P bytes of pages.img, then a parent image (u32 LE length M2,
 * M2 bytes of its memfile.img, the rest its pages.img). The image is
 * written as DIR/c and the parent as DIR/p (the name mkcorpus's children
 * record), so the parent record, refs, hashes and the resolution of refs
 * into the parent's blocks are all fuzzed.
 *
 * Built with -fsanitize=fuzzer by `make fuzz`, and with -DREPLAY plus
 * replay.c by the normal build, which runs tests/fuzz/corpus/image/.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pgckpt.h"
#include "statefile/sf_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FIX_CHECKSUMS 1u
#define FUZZ_RESTORE 2u
#define FUZZ_CHAIN 4u
#define FUZZ_RESTORE_MAX_FILE (1ULL << 40)
#define FUZZ_RESTORE_MAX_MEM (16ULL << 20)

static char fuzz_dir[256], img_dir[300];

static void remove_files(const char *sub)
{
	char p[320];

	snprintf(p, sizeof(p), "%s/%s/%s", fuzz_dir, sub, SF_MEMFILE_NAME);
	unlink(p);
	snprintf(p, sizeof(p), "%s/%s/%s", fuzz_dir, sub, SF_PAGES_NAME);
	unlink(p);
}

static void remove_dir(void)
{
	char p[320];

	remove_files("c");
	remove_files("p");
	snprintf(p, sizeof(p), "%s/c", fuzz_dir);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/p", fuzz_dir);
	rmdir(p);
	rmdir(fuzz_dir);
}

static int make_dir(void)
{
	const char *t = getenv("TMPDIR");
	char path_p[300];

	if (fuzz_dir[0])
		return 0;
	if (!t || !*t)
		t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/pgckpt-fuzz.XXXXXX", t);
	if (!mkdtemp(fuzz_dir)) {
		perror("fuzz_image: mkdtemp");
		abort();
	}
	atexit(remove_dir);
	snprintf(img_dir, sizeof(img_dir), "%s/c", fuzz_dir);
	mkdir(img_dir, 0700);
	snprintf(path_p, sizeof(path_p), "%s/p", fuzz_dir);
	mkdir(path_p, 0700);
	return 0;
}

static void write_file(const char *sub, const char *name, const uint8_t *p, size_t len)
{
	char path[320];
	int fd;

	snprintf(path, sizeof(path), "%s/%s/%s", fuzz_dir, sub, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || sf_pwrite_all(fd, p, len, 0) != 0) {
		perror("fuzz_image: write");
		abort();
	}
	close(fd);
}

static void put_u64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Patch meta.memfile_bytes (field 1, fixed64, packed first by the writer)
 * to @len and the trailer's checksum, where they are where the writer
 * puts them.
 */
static void fix_checksums(uint8_t *p, size_t len)
{
	size_t pos, hl, ml;

	if (len < 12)
		return;
	hl = sf_get_u32(p + 8);
	if (hl > len - 12)
		return;
	pos = 12 + hl;
	if (len - pos < 4)
		return;
	ml = sf_get_u32(p + pos);
	pos += 4;
	if (ml < 9 || ml > len - pos)
		return;
	if (p[pos] == 0x09)
		put_u64(p + pos + 1, len);
	if (len - pos - ml < SF_TRAILER_BYTES)
		return;
	if (sf_get_u32(p + len - SF_TRAILER_BYTES) == SF_TRAILER_BYTES - 4 &&
	    p[len - 9] == 0x09)
		put_u64(p + len - 8, sf_checksum(p, len - SF_TRAILER_BYTES));
}

/* What sf_image_open() promises; any violation is a parser bug. */
static void check_invariants(const struct sf_image *img)
{
	uint64_t prev = 0, mem = 0, off = 0, sum;
	size_t i, k, run = 0;

	if (img->file_size % SF_PAGE_SIZE || img->logical_size > img->file_size ||
	    img->block_size < SF_PAGE_SIZE || img->block_size > SF_MAX_BLOCK)
		abort();
	for (i = 0; i < img->nsegs; i++) {
		const struct pgc_segment *s = &img->segs[i];

		if (s->range.start < prev || s->range.end <= s->range.start ||
		    s->range.end > img->file_size || (unsigned)s->kind >= PGC_KIND_COUNT)
			abort();
		prev = s->range.end;
	}
	prev = 0;
	for (i = 0; i < img->nruns_own; i++) {
		if (img->runs[i].off < prev || !img->runs[i].len ||
		    img->runs[i].off + img->runs[i].len > img->file_size)
			abort();
		prev = img->runs[i].off + img->runs[i].len;
	}
	for (i = 0; i < img->nblocks; i++) {
		const struct sf_block *b = &img->blocks[i];

		if (b->first_run != run || b->nruns == 0 || run + b->nruns > img->nruns ||
		    (i < img->nblocks_own && b->file_off != off) || b->mem_len > img->load_block ||
		    b->stored_len > sf_encode_bound(img->compress, b->mem_len))
			abort();
		for (sum = 0, k = run; k < run + b->nruns; k++)
			sum += img->runs[k].len;
		if (sum != b->mem_len)
			abort();
		run += b->nruns;
		if (i < img->nblocks_own) {
			off += b->stored_len;
			mem += b->mem_len;
		}
	}
	if (run != img->nruns || off != img->pages_bytes || mem != img->mem_bytes)
		abort();
	/* Pieces: sorted, disjoint, each inside one run of its block. */
	for (prev = 0, mem = 0, i = 0; i < img->npieces; i++) {
		const struct sf_piece *p = &img->pieces[i];
		const struct sf_block *b = &img->blocks[p->block];

		if (p->off < prev || !p->len || p->block >= img->nblocks ||
		    p->off + p->len > img->file_size)
			abort();
		for (k = b->first_run; k < b->first_run + b->nruns; k++)
			if (img->runs[k].off <= p->off &&
			    p->off + p->len <= img->runs[k].off + img->runs[k].len)
				break;
		if (k == b->first_run + b->nruns)
			abort();
		prev = p->off + p->len;
		mem += p->len;
	}
	if (mem != img->load_bytes || img->nanc != img->depth)
		abort();
	/* Refs: sorted, disjoint, depth 1..depth; hashes: none or one per page. */
	for (prev = 0, sum = 0, i = 0; i < img->nrefs; i++) {
		if (img->refs[i].off < prev || !img->refs[i].len || !img->refs[i].depth ||
		    img->refs[i].depth > img->depth)
			abort();
		prev = img->refs[i].off + img->refs[i].len;
		sum += img->refs[i].len;
	}
	if (img->nhashes && img->nhashes * SF_PAGE_SIZE != sum + img->mem_bytes)
		abort();
}

/* Decode block @i again, its checksum replaced by the stored bytes' own. */
static void decode_unchecked(const struct sf_image *img, struct sf_codec *c, size_t i,
			     uint8_t *scratch, uint8_t *mem, struct iovec *iov)
{
	struct sf_block b = img->blocks[i];
	size_t k, n = 0, at = 0;
	ssize_t got;

	got = sf_pread_all(b.fd, scratch, b.stored_len, b.file_off);
	if (got != (ssize_t)b.stored_len)
		abort();   /* sf_image_open checked the size of pages.img */
	b.checksum = sf_checksum(scratch, b.stored_len);
	iov[0].iov_base = mem;
	iov[0].iov_len = b.mem_len;
	if (sf_block_decode(c, &b, scratch, iov, 1) == -PGC_ECHECKSUM)
		abort();
	/* The same into one iovec per run, as the loaders decode. */
	for (k = b.first_run; k < b.first_run + b.nruns; k++) {
		iov[n].iov_base = mem + at;
		iov[n].iov_len = img->runs[k].len;
		at += img->runs[k].len;
		n++;
	}
	if (sf_block_decode(c, &b, scratch, iov, (int)n) == -PGC_ECHECKSUM)
		abort();
	/* In two parts, as a waiter and a worker decode: the same verdict and bytes. */
	if (img->compress == PGC_COMPRESS_ZSTD) {
		uint8_t *part = malloc(b.mem_len ? b.mem_len : 1);
		size_t pos = 0;
		int whole, parts;

		iov[0].iov_base = mem;
		iov[0].iov_len = b.mem_len;
		whole = sf_block_decode(c, &b, scratch, iov, 1);
		if (!part)
			return;
		parts = sf_block_decode_part(c, &b, scratch, part, &pos, b.mem_len / 3);
		if (!parts)
			parts = sf_block_decode_part(c, &b, scratch, part, &pos, b.mem_len);
		if ((whole == 0) != (parts == 0) || (!whole && memcmp(part, mem, b.mem_len)))
			abort();   /* the partial decode disagrees with the whole one */
		free(part);
	}
}

/*
 * Compare every piece of @img in @mf with @all (the decoded blocks back to
 * back). Pieces whose map fails are skipped (background: the load error).
 * Returns the first map error, or 0.
 */
static int compare_pieces(pgc_memfile *mf, const struct sf_image *img, const uint8_t *all)
{
	struct iovec iov[4];
	size_t i;
	int n, k, err = 0;

	for (i = 0; i < img->npieces; i++) {
		const struct sf_piece *p = &img->pieces[i];
		const struct sf_block *b = &img->blocks[p->block];
		pgc_range range = { p->off, p->off + p->len };
		size_t done = 0, at = 0, j, r;

		for (j = 0; j < p->block; j++)
			at += img->blocks[j].mem_len;
		for (r = b->first_run; img->runs[r].off + img->runs[r].len <= p->off; r++)
			at += img->runs[r].len;
		at += p->off - img->runs[r].off;
		n = pgc_map_internal(mf, range, PGC_ACCESS_READ, iov, 4);
		if (n < 0) {
			if (!err)
				err = n;
			continue;
		}
		for (k = 0; k < n; k++) {
			if (memcmp(iov[k].iov_base, all + at + done, iov[k].iov_len))
				abort();   /* wrong data restored */
			done += iov[k].iov_len;
		}
		if (done != p->len)
			abort();
	}
	return err;
}

/* Restore @img, eagerly and in the background; @all_ok: every block decoded. */
static void restore(const struct sf_image *img, const uint8_t *all, bool all_ok)
{
	struct pgc_load_opts lo;
	pgc_memfile *mf;
	int bg;

	for (bg = 0; bg < 2; bg++) {
		struct pgc_memfile_opts mo;
		int ret;

		pgc_memfile_opts_init(&mo);
		if (pgc_memfile_new(&mo, &mf) != 0)
			return;
		pgc_load_opts_init(&lo);
		lo.background = bg;
		lo.jobs = 2;
		ret = pgc_load(mf, img_dir, &lo);
		if (ret == -ENOMEM) {
			pgc_memfile_destroy(mf);
			continue;
		}
		if (!bg && (ret == 0) != all_ok)
			abort();   /* a bad block accepted, or a good image refused */
		if (!ret) {
			ret = compare_pieces(mf, img, all);
			if (all_ok && ret)
				abort();
			ret = pgc_load_await(mf);
			if ((ret == 0) != all_ok)
				abort();
		}
		pgc_memfile_destroy(mf);
	}
}

static void exercise(const struct sf_image *img, bool do_restore)
{
	struct sf_block_reader r = { 0 };
	uint8_t *all = NULL;
	struct iovec *iov = NULL;
	struct sf_buf pm = { 0 };
	bool all_ok = true;
	size_t i, at = 0;

	check_invariants(img);
	if (sf_block_reader_init(&r, img) != 0)
		goto exit;
	iov = calloc(img->load_block / SF_PAGE_SIZE, sizeof(*iov));
	if (!iov)
		goto exit;
	for (i = 0; i < img->nblocks; i++)
		at += img->blocks[i].mem_len;
	if (do_restore && img->file_size <= FUZZ_RESTORE_MAX_FILE && at <= FUZZ_RESTORE_MAX_MEM)
		all = malloc(at ? at : 1);
	at = 0;
	for (i = 0; i < img->nblocks; i++) {
		if (sf_block_read(&r, i))
			all_ok = false;
		else if (all)
			memcpy(all + at, r.mem, img->blocks[i].mem_len);
		at += img->blocks[i].mem_len;
	}
	for (i = 0; i < img->nblocks; i++)
		decode_unchecked(img, r.codec, i, r.stored, r.mem, iov);
	if (sf_pagemap_encode(img->runs, img->nruns_own, &pm) == 0 && pm.len < 8)
		abort();
	if (all)
		restore(img, all, all_ok);
exit:
	sf_buf_free(&pm);
	free(all);
	free(iov);
	sf_block_reader_free(&r);
}

/* Take a u32 length off the front of @data (what is there of it), capped at what follows. */
static size_t take_len(const uint8_t **data, size_t *size)
{
	size_t len = *size >= 4 ? sf_get_u32(*data) : 0, head = *size >= 4 ? 4 : *size;

	*data += head;
	*size -= head;
	return len > *size ? *size : len;
}

/* FUZZ_CHAIN: u32 P, the image's pages.img, u32 M2, the parent's files. */
static void write_chain(const uint8_t *data, size_t size)
{
	size_t plen, mlen;

	plen = take_len(&data, &size);
	write_file("c", SF_PAGES_NAME, data, plen);
	data += plen;
	size -= plen;
	mlen = take_len(&data, &size);
	write_file("p", SF_MEMFILE_NAME, data, mlen);
	write_file("p", SF_PAGES_NAME, data + mlen, size - mlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sf_image *img = NULL;
	uint8_t *mf;
	size_t mlen;
	uint8_t flags;

	if (size < 5)
		return 0;
	make_dir();
	flags = data[0];
	mlen = sf_get_u32(data + 1);
	data += 5;
	size -= 5;
	if (mlen > size)
		mlen = size;
	mf = malloc(mlen ? mlen : 1);
	if (!mf)
		return 0;
	memcpy(mf, data, mlen);
	if (flags & FUZZ_FIX_CHECKSUMS)
		fix_checksums(mf, mlen);
	write_file("c", SF_MEMFILE_NAME, mf, mlen);
	free(mf);
	data += mlen;
	size -= mlen;
	remove_files("p");
	if (flags & FUZZ_CHAIN)
		write_chain(data, size);
	else
		write_file("c", SF_PAGES_NAME, data, size);
	/* The image's own records alone, then with its chain. */
	if (sf_image_open_one(img_dir, false, &img) == 0)
		sf_image_close(img);
	if (sf_image_open(img_dir, false, &img) == 0) {
		exercise(img, flags & FUZZ_RESTORE);
		sf_image_close(img);
	}
	return 0;
}
