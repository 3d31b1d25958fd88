/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ws.c - working-set files: the blocks of one image in the order a
 * restore first demanded them, and the pages it first demanded (page
 * granular: a lazy server places exactly those first, not whole blocks),
 * recorded so that the next restore of the same image loads (and a lazy
 * server places) them first. Files from before pages were recorded hold
 * blocks only and still read. The file is
 * CRIU-framed like memfile.img (ws.proto, docs/format.md), ends in the
 * same xxh64 trailer, and names its image by the image's own trailer
 * checksum, so a working set is never applied to another image. It is a
 * hint: the caller ignores one that does not decode.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sf_internal.h"
#include "statefile/ws.pb-c.h"

#define WS_MAX_HEAD 64u

/*
 * Largest file a working set of @nblocks blocks and @mem_pages pages can
 * be: 5 bytes a block, 10 a page, and framing.
 */
static uint64_t ws_max_bytes(uint64_t nblocks, uint64_t mem_pages)
{
	return 8 + 4 + WS_MAX_HEAD + 5 * nblocks + 16 * (nblocks / SF_RECORD_ENTRIES + 1) +
	       10 * mem_pages + 16 * (mem_pages / SF_RECORD_ENTRIES + 1) + SF_TRAILER_BYTES;
}

/* Whether @blocks holds @n distinct numbers below @nblocks. */
static int ws_check_blocks(const uint32_t *blocks, size_t n, uint64_t nblocks, uint8_t *seen)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (blocks[i] >= nblocks || seen[blocks[i]])
			return -PGC_ECORRUPT;
		seen[blocks[i]] = 1;
	}
	return 0;
}

static int cmp_page(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Whether @pages holds @n distinct page numbers below @mem_pages (sorted
 * in a copy: the memory may be far larger than the working set).
 * Returns 0, -PGC_ECORRUPT or -ENOMEM.
 */
static int ws_check_pages(const uint64_t *pages, size_t n, uint64_t mem_pages)
{
	uint64_t *sorted;
	size_t i;
	int ret = 0;

	for (i = 0; i < n; i++)
		if (pages[i] >= mem_pages)
			return -PGC_ECORRUPT;
	if (n < 2)
		return 0;
	sorted = malloc(n * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	memcpy(sorted, pages, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_page);
	for (i = 1; i < n && !ret; i++)
		if (sorted[i] == sorted[i - 1])
			ret = -PGC_ECORRUPT;
	free(sorted);
	return ret;
}

static int ws_encode(uint64_t image_id, uint64_t nblocks, const struct sf_ws *ws,
		     struct sf_buf *out)
{
	Pgckpt__PgcWsHead head = PGCKPT__PGC_WS_HEAD__INIT;
	size_t i, head_at, n = ws->n;

	sf_buf_put_u32(out, SF_CRIU_COMMON_MAGIC);
	sf_buf_put_u32(out, SF_WS_MAGIC);
	head.image_id = image_id;
	head.nblocks = nblocks;
	head.count = n;
	head.has_npages = ws->npages != 0;
	head.npages = ws->npages;
	head_at = out->len;
	sf_buf_put_record(out, &head.base);
	for (i = 0; i < n; i += SF_RECORD_ENTRIES) {
		Pgckpt__PgcWsBlocks m = PGCKPT__PGC_WS_BLOCKS__INIT;

		m.n_block = n - i < SF_RECORD_ENTRIES ? n - i : SF_RECORD_ENTRIES;
		m.block = (uint32_t *)(uintptr_t)(ws->blocks + i);
		sf_buf_put_record(out, &m.base);
	}
	for (i = 0; i < ws->npages; i += SF_RECORD_ENTRIES) {
		Pgckpt__PgcWsPages m = PGCKPT__PGC_WS_PAGES__INIT;

		m.n_page = ws->npages - i < SF_RECORD_ENTRIES ? ws->npages - i : SF_RECORD_ENTRIES;
		m.page = (uint64_t *)(uintptr_t)(ws->pages + i);
		sf_buf_put_record(out, &m.base);
	}
	if (out->err)
		return out->err;
	/* file_bytes is a fixed64: the head keeps its size when patched. */
	head.file_bytes = out->len + SF_TRAILER_BYTES;
	protobuf_c_message_pack(&head.base, out->p + head_at + 4);
	return sf_trailer_put(out);
}

/* Write @buf to a new file beside @path and rename it over @path. */
static int ws_install(const char *path, const struct sf_buf *buf)
{
	char *dcopy = strdup(path), *bcopy = strdup(path), tmp[300];
	const char *dir, *name;
	int dirfd = -1, fd = -1, ret;

	if (!dcopy || !bcopy) {
		ret = -ENOMEM;
		goto exit;
	}
	dir = dirname(dcopy);
	name = basename(bcopy);
	if (strlen(name) > 200) {
		ret = -ENAMETOOLONG;
		goto exit;
	}
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = -errno;
		goto exit;
	}
	fd = sf_create_tmp(dirfd, name, tmp, sizeof(tmp));
	if (fd < 0) {
		ret = fd;
		goto exit;
	}
	ret = sf_pwrite_all(fd, buf->p, buf->len, 0);
	if (!ret && fsync(fd) != 0)
		ret = -errno;
	if (close(fd) != 0 && !ret && errno != EINTR)
		ret = -errno;
	if (!ret)
		ret = sf_install(dirfd, tmp, name, true);
	if (ret)
		unlinkat(dirfd, tmp, 0);
	else if (fsync(dirfd) != 0)
		ret = -errno;
exit:
	if (dirfd >= 0)
		close(dirfd);
	free(dcopy);
	free(bcopy);
	return ret;
}

int sf_ws_write_set(const char *path, uint64_t image_id, uint64_t nblocks, uint64_t mem_pages,
		    const struct sf_ws *ws)
{
	struct sf_buf buf = { 0 };
	uint8_t *seen;
	int ret;

	if (!ws->n || nblocks > UINT32_MAX)
		return -EINVAL;
	seen = calloc(nblocks, 1);
	if (!seen)
		return -ENOMEM;
	ret = ws_check_blocks(ws->blocks, ws->n, nblocks, seen) ? -EINVAL :
	      ws_check_pages(ws->pages, ws->npages, mem_pages);
	free(seen);
	if (ret == -PGC_ECORRUPT)
		ret = -EINVAL;
	if (!ret)
		ret = ws_encode(image_id, nblocks, ws, &buf);
	if (!ret)
		ret = ws_install(path, &buf);
	sf_buf_free(&buf);
	return ret;
}

int sf_ws_write(const char *path, uint64_t image_id, uint64_t nblocks,
		const uint32_t *blocks, size_t n)
{
	struct sf_ws ws = { .blocks = (uint32_t *)(uintptr_t)blocks, .n = n };

	return sf_ws_write_set(path, image_id, nblocks, 0, &ws);
}

void sf_ws_free(struct sf_ws *ws)
{
	free(ws->blocks);
	free(ws->pages);
	*ws = (struct sf_ws){ 0 };
}

/*
 * The head record: the file's size (a short file is "truncated", whatever
 * else is wrong), then the image it belongs to and the count that follows.
 */
static int ws_decode_head(struct sf_cursor *c, uint64_t image_id, uint64_t nblocks,
			  uint64_t mem_pages, uint64_t *count, uint64_t *npages)
{
	Pgckpt__PgcWsHead *h;
	const uint8_t *rec;
	size_t rlen;
	int ret;

	ret = sf_cursor_record(c, WS_MAX_HEAD, &rec, &rlen);
	if (ret)
		return ret;
	h = pgckpt__pgc_ws_head__unpack(NULL, rlen, rec);
	if (!h)
		return -PGC_ECORRUPT;
	ret = 0;
	if (h->file_bytes > c->len)
		ret = -PGC_ETRUNCATED;
	else if (h->file_bytes < c->len)
		ret = -PGC_ECORRUPT;
	else if (h->image_id != image_id || h->nblocks != nblocks)
		ret = -ESTALE;
	else if (!h->count)
		ret = -ENODATA;
	else if (h->count > nblocks || h->npages > mem_pages || h->npages > c->len)
		ret = -PGC_ECORRUPT;   /* a page takes a byte at least */
	*count = h->count;
	*npages = h->npages;
	pgckpt__pgc_ws_head__free_unpacked(h, NULL);
	return ret;
}

/* The block records: exactly @count distinct blocks below @nblocks into @out. */
static int ws_decode_blocks(struct sf_cursor *c, uint64_t nblocks, uint64_t count,
			    uint32_t *out, uint8_t *seen)
{
	uint64_t got = 0;

	while (got < count) {
		Pgckpt__PgcWsBlocks *m;
		const uint8_t *rec;
		size_t rlen;
		int ret = sf_cursor_record(c, SF_MAX_RECORD, &rec, &rlen);

		if (ret)
			return ret;
		m = pgckpt__pgc_ws_blocks__unpack(NULL, rlen, rec);
		if (!m)
			return -PGC_ECORRUPT;
		ret = !m->n_block || m->n_block > SF_RECORD_ENTRIES || m->n_block > count - got ?
		      -PGC_ECORRUPT : ws_check_blocks(m->block, m->n_block, nblocks, seen);
		if (!ret)
			memcpy(out + got, m->block, m->n_block * sizeof(*out));
		got += m->n_block;
		pgckpt__pgc_ws_blocks__free_unpacked(m, NULL);
		if (ret)
			return ret;
	}
	return 0;
}

/* The page records: exactly @count pages into @out (checked by the caller). */
static int ws_decode_pages(struct sf_cursor *c, uint64_t count, uint64_t *out)
{
	uint64_t got = 0;

	while (got < count) {
		Pgckpt__PgcWsPages *m;
		const uint8_t *rec;
		size_t rlen;
		int ret = sf_cursor_record(c, SF_MAX_RECORD, &rec, &rlen);

		if (ret)
			return ret;
		m = pgckpt__pgc_ws_pages__unpack(NULL, rlen, rec);
		if (!m)
			return -PGC_ECORRUPT;
		ret = !m->n_page || m->n_page > SF_RECORD_ENTRIES || m->n_page > count - got ?
		      -PGC_ECORRUPT : 0;
		if (!ret)
			memcpy(out + got, m->page, m->n_page * sizeof(*out));
		got += m->n_page;
		pgckpt__pgc_ws_pages__free_unpacked(m, NULL);
		if (ret)
			return ret;
	}
	return 0;
}

/* After the head: the blocks, then the pages, and nothing else. */
static int ws_decode_body(struct sf_cursor *c, uint64_t nblocks, uint64_t mem_pages,
			  uint64_t count, uint64_t npages, struct sf_ws *ws)
{
	uint8_t *seen = calloc(nblocks, 1);
	int ret;

	ws->blocks = malloc(count * sizeof(*ws->blocks));
	ws->pages = npages ? malloc(npages * sizeof(*ws->pages)) : NULL;
	if (!seen || !ws->blocks || (npages && !ws->pages)) {
		ret = -ENOMEM;
		goto exit;
	}
	ret = ws_decode_blocks(c, nblocks, count, ws->blocks, seen);
	if (!ret)
		ret = ws_decode_pages(c, npages, ws->pages);
	if (!ret && c->pos != c->len)
		ret = -PGC_ECORRUPT;
	if (!ret)
		ret = ws_check_pages(ws->pages, npages, mem_pages);
exit:
	free(seen);
	if (ret) {
		sf_ws_free(ws);
		return ret;
	}
	ws->n = count;
	ws->npages = npages;
	return 0;
}

int sf_ws_decode_set(const uint8_t *p, size_t len, uint64_t image_id, uint64_t nblocks,
		     uint64_t mem_pages, struct sf_ws *ws)
{
	struct sf_cursor c = { p, len, 8 };
	uint64_t count = 0, npages = 0, sum;
	int ret;

	*ws = (struct sf_ws){ 0 };
	if (!len)
		return -ENODATA;     /* an empty file: no working set */
	if (len < 8)
		return -PGC_ETRUNCATED;
	if (sf_get_u32(p) != SF_CRIU_COMMON_MAGIC || sf_get_u32(p + 4) != SF_WS_MAGIC)
		return -PGC_EFOREIGN;
	ret = ws_decode_head(&c, image_id, nblocks, mem_pages, &count, &npages);
	if (ret == -ESTALE || ret == -ENODATA || !ret) {
		/* Only a file that is whole may say whose it is or that it is empty. */
		int t = sf_trailer_check(p, len, &sum);

		ret = t ? t : ret;
	}
	if (ret)
		return ret;
	c.len = len - SF_TRAILER_BYTES;
	if (c.len < c.pos)
		return -PGC_ECORRUPT;   /* the head ran into the trailer */
	return ws_decode_body(&c, nblocks, mem_pages, count, npages, ws);
}

int sf_ws_decode(const uint8_t *p, size_t len, uint64_t image_id, uint64_t nblocks,
		 uint32_t **blocks, size_t *n)
{
	struct sf_ws ws;
	int ret = sf_ws_decode_set(p, len, image_id, nblocks, SF_WS_ANY_PAGES, &ws);

	free(ws.pages);
	*blocks = ws.blocks;
	*n = ws.n;
	return ret;
}

int sf_ws_read_set(const char *path, uint64_t image_id, uint64_t nblocks, uint64_t mem_pages,
		   struct sf_ws *ws)
{
	struct stat st;
	uint8_t *buf = NULL;
	ssize_t got;
	int fd, ret;

	*ws = (struct sf_ws){ 0 };
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		ret = -errno;
		goto exit;
	}
	ret = S_ISDIR(st.st_mode) ? -EISDIR : !S_ISREG(st.st_mode) ? -EINVAL :
	      (uint64_t)st.st_size > ws_max_bytes(nblocks, mem_pages) ? -PGC_ECORRUPT : 0;
	if (ret)
		goto exit;
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		ret = -ENOMEM;
		goto exit;
	}
	got = sf_pread_all(fd, buf, (size_t)st.st_size, 0);
	ret = got < 0 ? (int)got :
	      sf_ws_decode_set(buf, (size_t)got, image_id, nblocks, mem_pages, ws);
exit:
	free(buf);
	close(fd);
	return ret;
}

int sf_ws_read(const char *path, uint64_t image_id, uint64_t nblocks,
	       uint32_t **blocks, size_t *n)
{
	struct sf_ws ws;
	int ret = sf_ws_read_set(path, image_id, nblocks, SF_WS_ANY_PAGES, &ws);

	free(ws.pages);
	*blocks = ws.blocks;
	*n = ws.n;
	return ret;
}
