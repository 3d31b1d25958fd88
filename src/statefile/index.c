/* SPDX-License-Identifier: Apache-2.0 */
/*
 * index.c - memfile.img: the in-memory tables of an image (metadata,
 * usage segments, runs, blocks) to bytes and back, and the validation
 * that makes the tables safe to index.
 *
 * Encoding: CRIU common magic, our magic, then records (head, meta,
 * segment records, run records, block records, [ref records, hash records,] trailer), each a u32 length
 * and a packed protobuf-c message; offsets and lengths are delta-coded in
 * pages inside packed repeated fields, so a million-block index is a few
 * megabytes and parses in milliseconds.
 *
 * Decoding trusts nothing: magics and the version come first, then the
 * meta record, whose counts bound every allocation; the trailer's xxh64
 * covers the rest before any of it is parsed; finally every table is
 * validated (sf_validate_tables) exactly as the writer validated it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sf_internal.h"
#include "statefile/memfile.pb-c.h"

/* ---- validation --------------------------------------------------------- */

static int validate_segs(const struct sf_tables *t)
{
	uint64_t prev_end = 0;
	size_t i;

	for (i = 0; i < t->nsegs; i++) {
		const struct pgc_segment *s = &t->segs[i];

		if ((s->range.start | s->range.end) & (SF_PAGE_SIZE - 1) ||
		    s->range.start < prev_end || s->range.end <= s->range.start ||
		    s->range.end > t->file_size || (unsigned)s->kind >= PGC_KIND_COUNT ||
		    (s->refs == 0 && s->kind != PGC_KIND_SYSTEM))
			return -PGC_ECORRUPT;
		prev_end = s->range.end;
	}
	return 0;
}

/* Runs: sorted, disjoint, page-aligned, each inside one segment with refs > 0. */
static int validate_runs(const struct sf_tables *t)
{
	uint64_t prev_end = 0;
	size_t i, s = 0;

	for (i = 0; i < t->nruns; i++) {
		const struct sf_run *r = &t->runs[i];

		if ((r->off | r->len) & (SF_PAGE_SIZE - 1) || r->len == 0 ||
		    r->off < prev_end || r->off > t->file_size ||
		    r->len > t->file_size - r->off)
			return -PGC_ECORRUPT;
		prev_end = r->off + r->len;
		while (s < t->nsegs && t->segs[s].range.end <= r->off)
			s++;
		if (s == t->nsegs || t->segs[s].range.start > r->off ||
		    t->segs[s].range.end < prev_end || t->segs[s].refs == 0)
			return -PGC_ECORRUPT;
	}
	return 0;
}

/*
 * Refs: sorted, disjoint, page-aligned, disjoint from the runs, each inside
 * one segment with refs > 0, depth 1..t->depth; then the hashes: one per
 * page of runs and refs.
 */
static int validate_refs(const struct sf_tables *t)
{
	uint64_t prev_end = 0, pages = 0;
	size_t i, s = 0, r = 0;

	for (i = 0; i < t->nruns; i++)
		pages += t->runs[i].len >> SF_PAGE_SHIFT;
	for (i = 0; i < t->nrefs; i++) {
		const struct sf_ref *f = &t->refs[i];

		if ((f->off | f->len) & (SF_PAGE_SIZE - 1) || f->len == 0 ||
		    f->off < prev_end || f->off > t->file_size ||
		    f->len > t->file_size - f->off || f->depth == 0 || f->depth > t->depth)
			return -PGC_ECORRUPT;
		prev_end = f->off + f->len;
		while (s < t->nsegs && t->segs[s].range.end <= f->off)
			s++;
		if (s == t->nsegs || t->segs[s].range.start > f->off ||
		    t->segs[s].range.end < prev_end || t->segs[s].refs == 0)
			return -PGC_ECORRUPT;
		while (r < t->nruns && t->runs[r].off + t->runs[r].len <= f->off)
			r++;
		if (r < t->nruns && t->runs[r].off < prev_end)
			return -PGC_ECORRUPT;
		pages += f->len >> SF_PAGE_SHIFT;
	}
	if (t->depth > SF_MAX_DEPTH || (t->depth && !t->parent_path))
		return -PGC_ECORRUPT;
	/* Version 1 images have no hashes; version 2 ones have them all. */
	if (t->nhashes && t->nhashes != pages)
		return -PGC_ECORRUPT;
	return 0;
}

int sf_validate_tables(struct sf_tables *t)
{
	uint64_t file_off = 0, mem_bytes = 0, mem;
	size_t i, k, run = 0;
	int ret;

	if (t->file_size & (SF_PAGE_SIZE - 1) || t->file_size > SF_MAX_FILE_SIZE ||
	    t->logical_size > t->file_size)
		return -PGC_ECORRUPT;
	if (t->block_size < SF_PAGE_SIZE || t->block_size > SF_MAX_BLOCK ||
	    t->block_size & (SF_PAGE_SIZE - 1))
		return -PGC_ECORRUPT;
	if (t->compress == PGC_COMPRESS_ZSTD) {
		if (t->level < 1 || t->level > 19)
			return -PGC_ECORRUPT;
	} else if (t->compress != PGC_COMPRESS_NONE || t->level != 0) {
		return -PGC_ECORRUPT;
	}
	ret = validate_segs(t);
	if (!ret)
		ret = validate_runs(t);
	if (!ret)
		ret = validate_refs(t);
	if (ret)
		return ret;
	for (i = 0; i < t->nblocks; i++) {
		struct sf_block *b = &t->blocks[i];

		if (b->nruns == 0 || b->nruns > t->block_size / SF_PAGE_SIZE ||
		    b->nruns > t->nruns - run)
			return -PGC_ECORRUPT;
		mem = 0;
		for (k = run; k < run + b->nruns; k++) {
			/* Each run is inside the file: no overflow below 2^57. */
			mem += t->runs[k].len;
			if (mem > t->block_size)
				return -PGC_ECORRUPT;
		}
		if (b->stored_len == 0 ||
		    b->stored_len > sf_encode_bound(t->compress, (size_t)mem) ||
		    (t->compress == PGC_COMPRESS_NONE && b->stored_len != mem))
			return -PGC_ECORRUPT;
		b->first_run = (uint32_t)run;
		b->mem_len = (uint32_t)mem;
		b->file_off = file_off;
		run += b->nruns;
		file_off += b->stored_len;
		mem_bytes += mem;
	}
	if (run != t->nruns || run > UINT32_MAX)
		return -PGC_ECORRUPT;
	t->mem_bytes = mem_bytes;
	t->pages_bytes = file_off;
	return 0;
}

/* ---- encoding ----------------------------------------------------------- */

static size_t record_len(size_t n, size_t done)
{
	return n - done < SF_RECORD_ENTRIES ? n - done : SF_RECORD_ENTRIES;
}

static int encode_segs(const struct sf_tables *t, struct sf_buf *out)
{
	Pgckpt__PgcImgSegments m = PGCKPT__PGC_IMG_SEGMENTS__INIT;
	uint64_t *gap, *pages, *refs, prev_end = 0;
	uint32_t *kind, *memcg;
	protobuf_c_boolean *kc;
	size_t done, n, i;
	int ret = -ENOMEM;

	n = record_len(t->nsegs, 0);
	gap = calloc(n + 1, sizeof(*gap));
	pages = calloc(n + 1, sizeof(*pages));
	refs = calloc(n + 1, sizeof(*refs));
	kind = calloc(n + 1, sizeof(*kind));
	memcg = calloc(n + 1, sizeof(*memcg));
	kc = calloc(n + 1, sizeof(*kc));
	if (!gap || !pages || !refs || !kind || !memcg || !kc)
		goto exit;
	ret = 0;
	for (done = 0; done < t->nsegs && !ret; done += n) {
		n = record_len(t->nsegs, done);
		for (i = 0; i < n; i++) {
			const struct pgc_segment *s = &t->segs[done + i];

			gap[i] = (s->range.start - prev_end) >> SF_PAGE_SHIFT;
			pages[i] = (s->range.end - s->range.start) >> SF_PAGE_SHIFT;
			kind[i] = (uint32_t)s->kind;
			refs[i] = s->refs;
			memcg[i] = s->memcg_id;
			kc[i] = s->known_committed;
			prev_end = s->range.end;
		}
		m.n_gap_pages = m.n_pages = m.n_kind = m.n_refs = m.n_memcg_id =
			m.n_known_committed = n;
		m.gap_pages = gap;
		m.pages = pages;
		m.kind = kind;
		m.refs = refs;
		m.memcg_id = memcg;
		m.known_committed = kc;
		ret = sf_buf_put_record(out, &m.base);
	}
exit:
	free(gap);
	free(pages);
	free(refs);
	free(kind);
	free(memcg);
	free(kc);
	return ret;
}

static int encode_runs(const struct sf_tables *t, struct sf_buf *out)
{
	Pgckpt__PgcImgRuns m = PGCKPT__PGC_IMG_RUNS__INIT;
	uint64_t *gap, *pages, prev_end = 0;
	size_t done, n, i;
	int ret = -ENOMEM;

	n = record_len(t->nruns, 0);
	gap = calloc(n + 1, sizeof(*gap));
	pages = calloc(n + 1, sizeof(*pages));
	if (!gap || !pages)
		goto exit;
	ret = 0;
	for (done = 0; done < t->nruns && !ret; done += n) {
		n = record_len(t->nruns, done);
		for (i = 0; i < n; i++) {
			const struct sf_run *r = &t->runs[done + i];

			gap[i] = (r->off - prev_end) >> SF_PAGE_SHIFT;
			pages[i] = r->len >> SF_PAGE_SHIFT;
			prev_end = r->off + r->len;
		}
		m.n_gap_pages = m.n_pages = n;
		m.gap_pages = gap;
		m.pages = pages;
		ret = sf_buf_put_record(out, &m.base);
	}
exit:
	free(gap);
	free(pages);
	return ret;
}

static int encode_blocks(const struct sf_tables *t, struct sf_buf *out)
{
	Pgckpt__PgcImgBlocks m = PGCKPT__PGC_IMG_BLOCKS__INIT;
	uint32_t *nruns, *stored;
	uint64_t *sum;
	size_t done, n, i;
	int ret = -ENOMEM;

	n = record_len(t->nblocks, 0);
	nruns = calloc(n + 1, sizeof(*nruns));
	stored = calloc(n + 1, sizeof(*stored));
	sum = calloc(n + 1, sizeof(*sum));
	if (!nruns || !stored || !sum)
		goto exit;
	ret = 0;
	for (done = 0; done < t->nblocks && !ret; done += n) {
		n = record_len(t->nblocks, done);
		for (i = 0; i < n; i++) {
			nruns[i] = t->blocks[done + i].nruns;
			stored[i] = t->blocks[done + i].stored_len;
			sum[i] = t->blocks[done + i].checksum;
		}
		m.n_nruns = m.n_stored_len = m.n_checksum = n;
		m.nruns = nruns;
		m.stored_len = stored;
		m.checksum = sum;
		ret = sf_buf_put_record(out, &m.base);
	}
exit:
	free(nruns);
	free(stored);
	free(sum);
	return ret;
}

static int encode_refs(const struct sf_tables *t, struct sf_buf *out)
{
	Pgckpt__PgcImgRefs m = PGCKPT__PGC_IMG_REFS__INIT;
	uint64_t *gap, *pages, prev_end = 0;
	uint32_t *depth;
	size_t done, n, i;
	int ret = -ENOMEM;

	n = record_len(t->nrefs, 0);
	gap = calloc(n + 1, sizeof(*gap));
	pages = calloc(n + 1, sizeof(*pages));
	depth = calloc(n + 1, sizeof(*depth));
	if (!gap || !pages || !depth)
		goto exit;
	ret = 0;
	for (done = 0; done < t->nrefs && !ret; done += n) {
		n = record_len(t->nrefs, done);
		for (i = 0; i < n; i++) {
			const struct sf_ref *r = &t->refs[done + i];

			gap[i] = (r->off - prev_end) >> SF_PAGE_SHIFT;
			pages[i] = r->len >> SF_PAGE_SHIFT;
			depth[i] = r->depth;
			prev_end = r->off + r->len;
		}
		m.n_gap_pages = m.n_pages = m.n_depth = n;
		m.gap_pages = gap;
		m.pages = pages;
		m.depth = depth;
		ret = sf_buf_put_record(out, &m.base);
	}
exit:
	free(gap);
	free(pages);
	free(depth);
	return ret;
}

static int encode_hashes(const struct sf_tables *t, struct sf_buf *out)
{
	Pgckpt__PgcImgHashes m = PGCKPT__PGC_IMG_HASHES__INIT;
	size_t done, n;
	int ret = 0;

	for (done = 0; done < t->nhashes && !ret; done += n) {
		n = record_len(t->nhashes, done);
		m.n_hash = n;
		m.hash = (uint64_t *)(uintptr_t)(t->hashes + done);
		ret = sf_buf_put_record(out, &m.base);
	}
	return ret;
}

static int encode_parent(const struct sf_tables *t, struct sf_buf *out)
{
	Pgckpt__PgcImgParent m = PGCKPT__PGC_IMG_PARENT__INIT;

	if (!t->depth)
		return 0;
	m.path = (char *)(uintptr_t)t->parent_path;
	m.identity = t->parent_id;
	return sf_buf_put_record(out, &m.base);
}

int sf_index_encode(const struct sf_tables *t, struct sf_buf *out)
{
	Pgckpt__PgcImgHead head = PGCKPT__PGC_IMG_HEAD__INIT;
	Pgckpt__PgcImgMeta meta = PGCKPT__PGC_IMG_META__INIT;
	size_t meta_at;
	uint64_t size;
	int ret;

	sf_buf_put_u32(out, SF_CRIU_COMMON_MAGIC);
	sf_buf_put_u32(out, SF_MEMFILE_MAGIC);
	head.version = SF_VERSION;
	sf_buf_put_record(out, &head.base);

	meta.file_size = t->file_size;
	meta.logical_size = t->logical_size;
	meta.chunk_size = PGC_CHUNK_SIZE;
	meta.page_size = (uint32_t)SF_PAGE_SIZE;
	meta.compress = (uint32_t)t->compress;
	meta.level = (uint32_t)t->level;
	meta.block_size = t->block_size;
	meta.nsegs = t->nsegs;
	meta.nruns = t->nruns;
	meta.nblocks = t->nblocks;
	meta.mem_bytes = t->mem_bytes;
	meta.pages_bytes = t->pages_bytes;
	meta.has_nrefs = meta.has_nhashes = meta.has_depth = true;
	meta.nrefs = t->nrefs;
	meta.nhashes = t->nhashes;
	meta.depth = t->depth;
	/*
	 * memfile_bytes is only known at the end. It is a fixed64, so the
	 * meta record has the same size whatever its value: pack it now,
	 * patch it in place once the size is known.
	 */
	meta.memfile_bytes = 0;
	meta_at = out->len;
	ret = sf_buf_put_record(out, &meta.base);
	if (!ret)
		ret = encode_parent(t, out);
	if (!ret)
		ret = encode_segs(t, out);
	if (!ret)
		ret = encode_runs(t, out);
	if (!ret)
		ret = encode_blocks(t, out);
	if (!ret)
		ret = encode_refs(t, out);
	if (!ret)
		ret = encode_hashes(t, out);
	if (!ret)
		ret = out->err;
	if (ret)
		return ret;
	size = out->len + SF_TRAILER_BYTES;
	meta.memfile_bytes = size;
	protobuf_c_message_pack(&meta.base, out->p + meta_at + 4);
	sf_trailer_put(out);
	if (out->err)
		return out->err;
	return out->len == size ? 0 : -EOVERFLOW;
}

/* ---- decoding ----------------------------------------------------------- */

int sf_index_peek(const uint8_t *p, size_t len, uint64_t size, uint32_t *version)
{
	uint8_t magic[8];
	struct sf_cursor c = { p, len, 8 };
	const uint8_t *rec;
	Pgckpt__PgcImgHead *head;
	size_t rlen;
	int ret;

	magic[0] = SF_CRIU_COMMON_MAGIC & 0xff;
	magic[1] = (SF_CRIU_COMMON_MAGIC >> 8) & 0xff;
	magic[2] = (SF_CRIU_COMMON_MAGIC >> 16) & 0xff;
	magic[3] = SF_CRIU_COMMON_MAGIC >> 24;
	magic[4] = SF_MEMFILE_MAGIC & 0xff;
	magic[5] = (SF_MEMFILE_MAGIC >> 8) & 0xff;
	magic[6] = (SF_MEMFILE_MAGIC >> 16) & 0xff;
	magic[7] = SF_MEMFILE_MAGIC >> 24;
	if (memcmp(p, magic, len < 8 ? len : 8) != 0)
		return -PGC_EFOREIGN;
	if (len < 8)
		return -PGC_ETRUNCATED;
	if (len > size)
		return -EINVAL;
	ret = sf_cursor_record(&c, SF_MAX_HEAD, &rec, &rlen);
	if (ret)
		return ret;
	head = pgckpt__pgc_img_head__unpack(NULL, rlen, rec);
	if (!head)
		return -PGC_ECORRUPT;
	*version = head->version;
	pgckpt__pgc_img_head__free_unpacked(head, NULL);
	if (*version == 0)
		return -PGC_ECORRUPT;
	if (*version > SF_VERSION)
		return -PGC_EVERSION;
	return 0;
}

/* Check the meta record against the file and the format's limits. */
static int check_meta(const Pgckpt__PgcImgMeta *m, size_t len, uint32_t version)
{
	uint64_t max_pages = m->file_size >> SF_PAGE_SHIFT;

	if (version < 2 && (m->nrefs || m->nhashes || m->depth))
		return -PGC_ECORRUPT;
	if (m->depth > SF_MAX_DEPTH || m->nrefs > max_pages || m->nrefs > len / 3 ||
	    m->nhashes > max_pages || m->nhashes > len / 8)
		return -PGC_ECORRUPT;

	if (m->page_size != SF_PAGE_SIZE || m->chunk_size != PGC_CHUNK_SIZE ||
	    m->compress > PGC_COMPRESS_NONE || m->level > 19 ||
	    m->block_size > SF_MAX_BLOCK || m->file_size > SF_MAX_FILE_SIZE)
		return -PGC_ECORRUPT;
	/* Each entry costs at least one byte per array: bound by both files. */
	if (m->nsegs > max_pages || m->nsegs > len / 6 ||
	    m->nruns > max_pages || m->nruns > len / 2 || m->nruns > UINT32_MAX ||
	    m->nblocks > m->nruns || m->nblocks > len / 10 ||
	    m->nblocks > m->pages_bytes || m->mem_bytes > m->file_size)
		return -PGC_ECORRUPT;
	/* A bound of this reader's: what the segment tables cost in memory. */
	if (m->nsegs > PGC_MAX_SEGMENTS)
		return -PGC_ELIMIT;
	return 0;
}

/* Turn one delta-coded (gap, pages) pair into a range inside the file. */
static int undelta(uint64_t *cur_pages, uint64_t max_pages, uint64_t gap,
		   uint64_t pages, uint64_t *start, uint64_t *end)
{
	if (gap > max_pages - *cur_pages)
		return -PGC_ECORRUPT;
	*start = *cur_pages + gap;
	if (pages == 0 || pages > max_pages - *start)
		return -PGC_ECORRUPT;
	*cur_pages = *start + pages;
	*start <<= SF_PAGE_SHIFT;
	*end = *cur_pages << SF_PAGE_SHIFT;
	return 0;
}

/*
 * Decode a table of @count entries stored as records of message type
 * @desc, record_len() entries each. @fill checks the @n entries of one
 * unpacked record and stores them from entry @done on; it returns 0 or
 * -PGC_ECORRUPT. Returns 0, -PGC_ECORRUPT or the cursor's error.
 */
typedef int (*table_fill_fn)(void *arg, const ProtobufCMessage *m, size_t done, size_t n);

static int decode_table(struct sf_cursor *c, const ProtobufCMessageDescriptor *desc,
			size_t count, table_fill_fn fill, void *arg)
{
	ProtobufCMessage *m;
	const uint8_t *rec;
	size_t done, n, rlen;
	int ret = 0;

	for (done = 0; done < count && !ret; done += n) {
		n = record_len(count, done);
		ret = sf_cursor_record(c, SF_MAX_RECORD, &rec, &rlen);
		if (ret)
			break;
		m = protobuf_c_message_unpack(desc, NULL, rlen, rec);
		if (!m)
			return -PGC_ECORRUPT;
		ret = fill(arg, m, done, n);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return ret;
}

/* Where a delta-coded table is being decoded to. */
struct undelta_ctx {
	uint64_t cur, max_pages;     /* pages: the end of the last range, the file */
	void *out;                   /* struct pgc_segment[] or struct sf_run[] */
};

static int fill_segs(void *arg, const ProtobufCMessage *msg, size_t done, size_t n)
{
	const Pgckpt__PgcImgSegments *m = (const Pgckpt__PgcImgSegments *)msg;
	struct undelta_ctx *u = arg;
	size_t i;

	if (m->n_gap_pages != n || m->n_pages != n || m->n_kind != n ||
	    m->n_refs != n || m->n_memcg_id != n || m->n_known_committed != n)
		return -PGC_ECORRUPT;
	for (i = 0; i < n; i++) {
		struct pgc_segment *s = (struct pgc_segment *)u->out + done + i;

		if (undelta(&u->cur, u->max_pages, m->gap_pages[i], m->pages[i],
			    &s->range.start, &s->range.end) ||
		    m->kind[i] >= PGC_KIND_COUNT)
			return -PGC_ECORRUPT;
		s->kind = (enum pgc_kind)m->kind[i];
		s->refs = m->refs[i];
		s->memcg_id = m->memcg_id[i];
		s->known_committed = m->known_committed[i];
	}
	return 0;
}

static int fill_runs(void *arg, const ProtobufCMessage *msg, size_t done, size_t n)
{
	const Pgckpt__PgcImgRuns *m = (const Pgckpt__PgcImgRuns *)msg;
	struct undelta_ctx *u = arg;
	uint64_t end;
	size_t i;

	if (m->n_gap_pages != n || m->n_pages != n)
		return -PGC_ECORRUPT;
	for (i = 0; i < n; i++) {
		struct sf_run *r = (struct sf_run *)u->out + done + i;

		if (undelta(&u->cur, u->max_pages, m->gap_pages[i], m->pages[i], &r->off, &end))
			return -PGC_ECORRUPT;
		r->len = end - r->off;
	}
	return 0;
}

static int fill_blocks(void *arg, const ProtobufCMessage *msg, size_t done, size_t n)
{
	const Pgckpt__PgcImgBlocks *m = (const Pgckpt__PgcImgBlocks *)msg;
	struct sf_block *blocks = (struct sf_block *)arg + done;
	size_t i;

	if (m->n_nruns != n || m->n_stored_len != n || m->n_checksum != n)
		return -PGC_ECORRUPT;
	for (i = 0; i < n; i++) {
		blocks[i].nruns = m->nruns[i];
		blocks[i].stored_len = m->stored_len[i];
		blocks[i].checksum = m->checksum[i];
	}
	return 0;
}

static int fill_refs(void *arg, const ProtobufCMessage *msg, size_t done, size_t n)
{
	const Pgckpt__PgcImgRefs *m = (const Pgckpt__PgcImgRefs *)msg;
	struct undelta_ctx *u = arg;
	uint64_t end;
	size_t i;

	if (m->n_gap_pages != n || m->n_pages != n || m->n_depth != n)
		return -PGC_ECORRUPT;
	for (i = 0; i < n; i++) {
		struct sf_ref *r = (struct sf_ref *)u->out + done + i;

		if (undelta(&u->cur, u->max_pages, m->gap_pages[i], m->pages[i], &r->off, &end))
			return -PGC_ECORRUPT;
		r->len = end - r->off;
		r->depth = m->depth[i];
	}
	return 0;
}

static int fill_hashes(void *arg, const ProtobufCMessage *msg, size_t done, size_t n)
{
	const Pgckpt__PgcImgHashes *m = (const Pgckpt__PgcImgHashes *)msg;

	if (m->n_hash != n)
		return -PGC_ECORRUPT;
	memcpy((uint64_t *)arg + done, m->hash, n * sizeof(uint64_t));
	return 0;
}

/* The parent record of a child (depth > 0): its path and identity, in @img. */
static int decode_parent(struct sf_cursor *c, struct sf_image *img)
{
	Pgckpt__PgcImgParent *m;
	const uint8_t *rec;
	size_t rlen;
	int ret;

	ret = sf_cursor_record(c, SF_MAX_PARENT_PATH + 32, &rec, &rlen);
	if (ret)
		return ret;
	m = pgckpt__pgc_img_parent__unpack(NULL, rlen, rec);
	if (!m)
		return -PGC_ECORRUPT;
	ret = -PGC_ECORRUPT;
	if (m->path[0] && strlen(m->path) <= SF_MAX_PARENT_PATH) {
		img->parent_path = strdup(m->path);
		img->parent_id = m->identity;
		ret = img->parent_path ? 0 : -ENOMEM;
	}
	pgckpt__pgc_img_parent__free_unpacked(m, NULL);
	return ret;
}

static int decode_segs(struct sf_cursor *c, uint64_t file_size,
		       struct pgc_segment *segs, size_t nsegs)
{
	struct undelta_ctx u = { 0, file_size >> SF_PAGE_SHIFT, segs };

	return decode_table(c, &pgckpt__pgc_img_segments__descriptor, nsegs, fill_segs, &u);
}

static int decode_runs(struct sf_cursor *c, uint64_t file_size,
		       struct sf_run *runs, size_t nruns)
{
	struct undelta_ctx u = { 0, file_size >> SF_PAGE_SHIFT, runs };

	return decode_table(c, &pgckpt__pgc_img_runs__descriptor, nruns, fill_runs, &u);
}

static int decode_blocks(struct sf_cursor *c, struct sf_block *blocks, size_t nblocks)
{
	return decode_table(c, &pgckpt__pgc_img_blocks__descriptor, nblocks, fill_blocks, blocks);
}

int sf_trailer_put(struct sf_buf *b)
{
	Pgckpt__PgcImgTrailer trailer = PGCKPT__PGC_IMG_TRAILER__INIT;

	if (b->err)
		return b->err;
	trailer.checksum = sf_checksum(b->p, b->len);
	return sf_buf_put_record(b, &trailer.base);
}

int sf_trailer_check(const uint8_t *p, size_t len, uint64_t *sum)
{
	const uint8_t *t = p + len - SF_TRAILER_BYTES;
	Pgckpt__PgcImgTrailer *m;
	int ret = 0;

	if (len < SF_TRAILER_BYTES)
		return -PGC_ETRUNCATED;
	if (sf_get_u32(t) != SF_TRAILER_BYTES - 4)
		return -PGC_ECORRUPT;
	m = pgckpt__pgc_img_trailer__unpack(NULL, SF_TRAILER_BYTES - 4, t + 4);
	if (!m)
		return -PGC_ECORRUPT;
	if (m->checksum != sf_checksum(p, len - SF_TRAILER_BYTES))
		ret = -PGC_ECHECKSUM;
	*sum = m->checksum;
	pgckpt__pgc_img_trailer__free_unpacked(m, NULL);
	return ret;
}

int sf_index_decode(const uint8_t *p, size_t len, struct sf_image *img)
{
	struct sf_cursor c = { p, len, 8 };
	struct sf_tables t = { 0 };
	struct pgc_segment *segs = NULL;
	struct sf_run *runs = NULL;
	struct sf_block *blocks = NULL;
	struct sf_ref *refs = NULL;
	uint64_t *hashes = NULL;
	Pgckpt__PgcImgMeta *m = NULL;
	const uint8_t *rec;
	uint32_t version;
	size_t rlen;
	int ret;

	ret = sf_index_peek(p, len < 8 + 4 + SF_MAX_HEAD ? len : 8 + 4 + SF_MAX_HEAD,
			    len, &version);
	if (ret)
		return ret;
	ret = sf_cursor_record(&c, SF_MAX_HEAD, &rec, &rlen);  /* the head again */
	if (!ret)
		ret = sf_cursor_record(&c, SF_MAX_META, &rec, &rlen);
	if (ret)
		return ret;
	m = pgckpt__pgc_img_meta__unpack(NULL, rlen, rec);
	if (!m)
		return -PGC_ECORRUPT;
	/* The size first: a short file is "truncated", whatever else is wrong. */
	ret = -PGC_ETRUNCATED;
	if (m->memfile_bytes > len)
		goto exit;
	ret = -PGC_ECORRUPT;
	if (m->memfile_bytes < len || len - c.pos < SF_TRAILER_BYTES)
		goto exit;
	ret = sf_trailer_check(p, len, &img->identity);
	if (!ret)
		ret = check_meta(m, len, version);
	if (ret)
		goto exit;

	ret = -ENOMEM;
	segs = calloc(m->nsegs ? m->nsegs : 1, sizeof(*segs));
	runs = calloc(m->nruns ? m->nruns : 1, sizeof(*runs));
	blocks = calloc(m->nblocks ? m->nblocks : 1, sizeof(*blocks));
	refs = calloc(m->nrefs ? m->nrefs : 1, sizeof(*refs));
	hashes = calloc(m->nhashes ? m->nhashes : 1, sizeof(*hashes));
	if (!segs || !runs || !blocks || !refs || !hashes)
		goto exit;
	c.len = len - SF_TRAILER_BYTES;
	ret = m->depth ? decode_parent(&c, img) : 0;
	if (!ret)
		ret = decode_segs(&c, m->file_size, segs, m->nsegs);
	if (!ret)
		ret = decode_runs(&c, m->file_size, runs, m->nruns);
	if (!ret)
		ret = decode_blocks(&c, blocks, m->nblocks);
	if (!ret) {
		struct undelta_ctx u = { 0, m->file_size >> SF_PAGE_SHIFT, refs };

		ret = decode_table(&c, &pgckpt__pgc_img_refs__descriptor, m->nrefs, fill_refs, &u);
	}
	if (!ret)
		ret = decode_table(&c, &pgckpt__pgc_img_hashes__descriptor, m->nhashes,
				   fill_hashes, hashes);
	if (ret)
		goto exit;
	ret = -PGC_ECORRUPT;
	if (c.pos != c.len)
		goto exit;

	t.file_size = m->file_size;
	t.logical_size = m->logical_size;
	t.block_size = m->block_size;
	t.compress = (enum pgc_compress)m->compress;
	t.level = (int)m->level;
	t.segs = segs;
	t.nsegs = m->nsegs;
	t.runs = runs;
	t.nruns = m->nruns;
	t.blocks = blocks;
	t.nblocks = m->nblocks;
	t.refs = refs;
	t.nrefs = m->nrefs;
	t.hashes = hashes;
	t.nhashes = m->nhashes;
	t.depth = m->depth;
	t.parent_path = img->parent_path;
	ret = sf_validate_tables(&t);
	if (ret)
		goto exit;
	ret = -PGC_ECORRUPT;
	if (t.mem_bytes != m->mem_bytes || t.pages_bytes != m->pages_bytes)
		goto exit;

	img->version = version;
	img->file_size = t.file_size;
	img->logical_size = t.logical_size;
	img->block_size = t.block_size;
	img->compress = t.compress;
	img->level = t.level;
	img->segs = segs;
	img->nsegs = t.nsegs;
	img->runs = runs;
	img->nruns = t.nruns;
	img->blocks = blocks;
	img->nblocks = t.nblocks;
	img->mem_bytes = t.mem_bytes;
	img->pages_bytes = t.pages_bytes;
	img->refs = refs;
	img->nrefs = t.nrefs;
	img->hashes = hashes;
	img->nhashes = t.nhashes;
	img->depth = t.depth;
	segs = NULL;
	runs = NULL;
	blocks = NULL;
	refs = NULL;
	hashes = NULL;
	ret = 0;
exit:
	free(segs);
	free(runs);
	free(blocks);
	free(refs);
	free(hashes);
	pgckpt__pgc_img_meta__free_unpacked(m, NULL);
	return ret;
}
