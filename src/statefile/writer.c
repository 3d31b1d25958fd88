/* SPDX-License-Identifier: Apache-2.0 */
/*
 * writer.c - writing an image directory atomically. The image is built in
 * a temporary sibling "PATH.tmp-XXXXXX"; the caller writes the blocks of
 * pages.img and registers each one here; commit writes memfile.img and
 * pagemap.img, fsyncs every file and the directory, and moves the
 * directory into place with one rename (renameat2 RENAME_NOREPLACE, or
 * RENAME_EXCHANGE over an existing image, whose old files are then
 * removed), then fsyncs the parent. A failed or interrupted save leaves at
 * most a temporary directory, never a half image under the final name, and
 * an existing image is only ever replaced whole.
 *
 * @path may name nothing, an empty directory, or a pgckpt image (a
 * directory whose memfile.img starts with our magics and that holds no
 * other file than memfile.img, pages.img and pagemap.img, each a regular
 * file); anything else is refused, so no user data is ever removed. Only the three files of an
 * image are ever unlinked.
 *
 * A writer is not locked: call sf_writer_* from one thread at a time (the
 * save engine's committing thread). pages.img may be written concurrently
 * by any thread at the offsets sf_writer_add_block() handed out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sf_internal.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

struct sf_writer {
	int parent_fd;           /* directory holding @path */
	char *name;              /* last component of @path */
	char *tmp_name;          /* last component of the temporary directory */
	int dir_fd;              /* the temporary directory */
	int pages_fd;            /* its pages.img */
	enum pgc_compress compress;
	int level;
	uint32_t block_size;
	struct sf_run *runs;
	size_t nruns, runs_cap;
	struct sf_block *blocks;
	size_t nblocks, blocks_cap;
	uint64_t last_end;       /* end of the last run added */
	uint64_t pages_off;      /* bytes of pages.img laid out so far */
	struct sf_ref *refs;     /* a child's referenced pages */
	size_t nrefs, refs_cap;
	uint64_t *hashes;        /* one per non-zero page */
	size_t nhashes, hashes_cap;
};

enum target_state {
	TARGET_ABSENT,
	TARGET_EMPTY_DIR,
	TARGET_IMAGE,
};

static const char *const image_files[] = {
	SF_MEMFILE_NAME, SF_PAGES_NAME, SF_PAGEMAP_NAME,
};

/*
 * Look at the entries of the directory @fd: *@empty if it has none, and
 * returns 0 if each is a regular file named like an image's own file,
 * -ENOTEMPTY if anything else is there (replacing the directory would
 * throw it away), or -errno.
 */
static int scan_dir(int fd, bool *empty)
{
	struct dirent *d;
	struct stat st;
	int ret = 0, dfd;
	size_t i;
	DIR *dir;

	dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		return -ENOMEM;
	}
	*empty = true;
	while (!ret && (d = readdir(dir)) != NULL) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		*empty = false;
		for (i = 0; i < sizeof(image_files) / sizeof(image_files[0]); i++)
			if (!strcmp(d->d_name, image_files[i]))
				break;
		if (i == sizeof(image_files) / sizeof(image_files[0]) ||
		    fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
			ret = -ENOTEMPTY;
	}
	closedir(dir);
	return ret;
}

/* Whether @mf starts like a memfile.img of ours (any version). */
static bool looks_like_image(int mf)
{
	uint8_t head[8 + 4 + SF_MAX_HEAD];
	uint32_t version;
	struct stat st;
	ssize_t got;

	if (fstat(mf, &st) != 0 || !S_ISREG(st.st_mode))
		return false;
	got = sf_pread_all(mf, head, sizeof(head), 0);
	if (got < 8)
		return false;
	/* Any version of ours counts: a newer image may be replaced too. */
	switch (sf_index_peek(head, (size_t)got, (uint64_t)got, &version)) {
	case 0:
	case -PGC_EVERSION:
	case -PGC_ECORRUPT:
	case -PGC_ETRUNCATED:
		return true;
	default:
		return false;
	}
}

/*
 * Whether the directory @fd holds an image and nothing else, or nothing at
 * all: 0 and *@state, -ENOTEMPTY for an image with other files beside it,
 * -EEXIST for anything else, or -errno.
 */
static int classify_dir(int fd, enum target_state *state)
{
	bool empty = false, image;
	int mf, ret;

	ret = scan_dir(fd, &empty);
	if (ret && ret != -ENOTEMPTY)
		return ret;
	if (empty) {
		*state = TARGET_EMPTY_DIR;
		return 0;
	}
	mf = openat(fd, SF_MEMFILE_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	image = mf >= 0 && looks_like_image(mf);
	if (mf >= 0)
		close(mf);
	if (!image)
		return -EEXIST;
	*state = TARGET_IMAGE;
	return ret;
}

/* What @name in @parent_fd is, refusing anything we must not replace. */
static int classify_target(int parent_fd, const char *name, enum target_state *state)
{
	struct stat st;
	int fd, ret;

	if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno != ENOENT)
			return -errno;
		*state = TARGET_ABSENT;
		return 0;
	}
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	ret = classify_dir(fd, state);
	close(fd);
	return ret;
}

/* Remove the files of an image directory and the directory, best effort. */
static void remove_image_dir(int parent_fd, const char *name)
{
	size_t i;
	int fd;

	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	for (i = 0; i < sizeof(image_files) / sizeof(image_files[0]); i++)
		unlinkat(fd, image_files[i], 0);
	close(fd);
	unlinkat(parent_fd, name, AT_REMOVEDIR);
}

static void writer_free(struct sf_writer *w)
{
	if (w->pages_fd >= 0)
		close(w->pages_fd);
	if (w->dir_fd >= 0)
		close(w->dir_fd);
	if (w->parent_fd >= 0)
		close(w->parent_fd);
	free(w->name);
	free(w->tmp_name);
	free(w->runs);
	free(w->blocks);
	free(w->refs);
	free(w->hashes);
	free(w);
}

/* Split @path into an open parent directory and a last component. */
static int split_path(const char *path, struct sf_writer *w, char **full)
{
	size_t len = strlen(path), slash;
	char *dir;

	while (len > 1 && path[len - 1] == '/')
		len--;
	if (len == 0 || len >= PATH_MAX - 16)
		return len ? -ENAMETOOLONG : -ENOENT;
	for (slash = len; slash > 0 && path[slash - 1] != '/'; slash--)
		;
	if (slash == len)
		return -EINVAL;  /* "/" */
	w->name = strndup(path + slash, len - slash);
	if (!w->name || !strcmp(w->name, ".") || !strcmp(w->name, ".."))
		return w->name ? -EINVAL : -ENOMEM;
	dir = slash ? strndup(path, slash) : strdup(".");
	if (!dir)
		return -ENOMEM;
	w->parent_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (w->parent_fd < 0)
		return -errno;
	*full = malloc(len + sizeof(".tmp-XXXXXX"));
	if (!*full)
		return -ENOMEM;
	memcpy(*full, path, len);
	memcpy(*full + len, ".tmp-XXXXXX", sizeof(".tmp-XXXXXX"));
	return 0;
}

int sf_writer_open(const char *path, enum pgc_compress compress, int level,
		   uint32_t block_size, struct sf_writer **out)
{
	enum target_state state;
	struct sf_writer *w;
	char *tmp = NULL;
	int ret;

	if ((compress != PGC_COMPRESS_ZSTD && compress != PGC_COMPRESS_NONE) ||
	    (compress == PGC_COMPRESS_ZSTD && (level < 1 || level > 19)) ||
	    block_size < SF_PAGE_SIZE || block_size > SF_MAX_BLOCK ||
	    block_size % SF_PAGE_SIZE)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->parent_fd = w->dir_fd = w->pages_fd = -1;
	w->compress = compress;
	w->level = compress == PGC_COMPRESS_ZSTD ? level : 0;
	w->block_size = block_size;
	ret = split_path(path, w, &tmp);
	if (!ret)
		ret = classify_target(w->parent_fd, w->name, &state);
	if (ret)
		goto exit;
	if (!mkdtemp(tmp)) {
		ret = -errno;
		goto exit;
	}
	w->tmp_name = strdup(strrchr(tmp, '/') ? strrchr(tmp, '/') + 1 : tmp);
	w->dir_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (w->dir_fd < 0 || !w->tmp_name) {
		ret = w->tmp_name ? -errno : -ENOMEM;
		rmdir(tmp);
		goto exit;
	}
	w->pages_fd = openat(w->dir_fd, SF_PAGES_NAME,
			     O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->pages_fd < 0) {
		ret = -errno;
		rmdir(tmp);
		goto exit;
	}
	free(tmp);
	*out = w;
	return 0;
exit:
	free(tmp);
	writer_free(w);
	return ret;
}

int sf_writer_pages_fd(const struct sf_writer *w)
{
	return w->pages_fd;
}

/* Make room for @extra more elements of @size bytes in *@arr. */
static int grow(void **arr, size_t *cap, size_t used, size_t extra, size_t size)
{
	size_t ncap = *cap ? *cap : 1024;
	void *p;

	if (extra <= *cap - used)
		return 0;
	while (ncap - used < extra) {
		if (ncap > SIZE_MAX / 2 / size)
			return -ENOMEM;
		ncap *= 2;
	}
	p = realloc(*arr, ncap * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

int sf_writer_add_block(struct sf_writer *w, const struct sf_run *runs, uint32_t nruns,
			uint32_t stored_len, uint64_t checksum, uint64_t *file_off)
{
	uint64_t end = w->last_end, mem = 0;
	struct sf_block *b;
	uint32_t i;
	int ret;

	if (nruns == 0 || nruns > w->block_size / SF_PAGE_SIZE ||
	    w->nruns + nruns > UINT32_MAX)
		return -EINVAL;
	for (i = 0; i < nruns; i++) {
		if ((runs[i].off | runs[i].len) & (SF_PAGE_SIZE - 1) || runs[i].len == 0 ||
		    runs[i].off < end || runs[i].len > w->block_size - mem ||
		    runs[i].off > SF_MAX_FILE_SIZE)
			return -EINVAL;
		mem += runs[i].len;
		end = runs[i].off + runs[i].len;
	}
	if (stored_len == 0 || stored_len > sf_encode_bound(w->compress, (size_t)mem) ||
	    (w->compress == PGC_COMPRESS_NONE && stored_len != mem))
		return -EINVAL;
	ret = grow((void **)&w->runs, &w->runs_cap, w->nruns, nruns, sizeof(*w->runs));
	if (!ret)
		ret = grow((void **)&w->blocks, &w->blocks_cap, w->nblocks, 1,
			   sizeof(*w->blocks));
	if (ret)
		return ret;
	memcpy(w->runs + w->nruns, runs, nruns * sizeof(*runs));
	b = &w->blocks[w->nblocks++];
	b->file_off = w->pages_off;
	b->stored_len = stored_len;
	b->mem_len = (uint32_t)mem;
	b->checksum = checksum;
	b->first_run = (uint32_t)w->nruns;
	b->nruns = nruns;
	w->nruns += nruns;
	w->last_end = end;
	*file_off = w->pages_off;
	w->pages_off += stored_len;
	return 0;
}

int sf_writer_add_refs(struct sf_writer *w, const struct sf_ref *refs, size_t n)
{
	int ret = n ? grow((void **)&w->refs, &w->refs_cap, w->nrefs, n, sizeof(*refs)) : 0;
	size_t i;

	if (ret)
		return ret;
	for (i = 0; i < n; i++) {
		struct sf_ref *last = w->nrefs ? &w->refs[w->nrefs - 1] : NULL;

		if (last && refs[i].off < last->off + last->len)
			return -EINVAL;
		if (last && last->off + last->len == refs[i].off && last->depth == refs[i].depth)
			last->len += refs[i].len;
		else
			w->refs[w->nrefs++] = refs[i];
	}
	return 0;   /* the rest is checked with the tables at commit */
}

int sf_writer_add_hashes(struct sf_writer *w, const uint64_t *hashes, size_t n)
{
	int ret;

	if (!n)
		return 0;
	ret = grow((void **)&w->hashes, &w->hashes_cap, w->nhashes, n, sizeof(*hashes));
	if (ret)
		return ret;
	memcpy(w->hashes + w->nhashes, hashes, n * sizeof(*hashes));
	w->nhashes += n;
	return 0;
}

/* Write memfile.img and pagemap.img into the temporary directory. */
static int write_metadata(struct sf_writer *w, const struct sf_meta *meta)
{
	struct sf_tables t = { 0 };
	struct sf_buf buf = { 0 };
	int ret;

	t.file_size = meta->file_size;
	t.logical_size = meta->logical_size;
	t.block_size = w->block_size;
	t.compress = w->compress;
	t.level = w->level;
	t.segs = meta->segs;
	t.nsegs = meta->nsegs;
	t.runs = w->runs;
	t.nruns = w->nruns;
	t.blocks = w->blocks;
	t.nblocks = w->nblocks;
	t.refs = w->refs;
	t.nrefs = w->nrefs;
	t.hashes = w->hashes;
	t.nhashes = w->nhashes;
	t.depth = meta->depth;
	t.parent_path = meta->parent_path;
	t.parent_id = meta->parent_id;
	if (meta->depth && (!meta->parent_path || !meta->parent_path[0] ||
			    strlen(meta->parent_path) > SF_MAX_PARENT_PATH))
		return -EINVAL;
	/* The reader's checks, here: a writer bug must not make an image. */
	if (sf_validate_tables(&t) != 0 || t.pages_bytes != w->pages_off)
		return -EINVAL;
	ret = sf_index_encode(&t, &buf);
	if (!ret)
		ret = sf_write_file_at(w->dir_fd, SF_MEMFILE_NAME, buf.p, buf.len, false);
	if (ret)
		goto exit;
	buf.len = 0;
	ret = sf_pagemap_encode(w->runs, w->nruns, &buf);
	if (!ret)
		ret = sf_write_file_at(w->dir_fd, SF_PAGEMAP_NAME, buf.p, buf.len, false);
exit:
	sf_buf_free(&buf);
	return ret;
}

/* Move the finished temporary directory to its final name. */
static int install(struct sf_writer *w)
{
	enum target_state state;
	char old[NAME_MAX + 1];
	int ret;

	ret = classify_target(w->parent_fd, w->name, &state);
	if (ret)
		return ret;
	if (state == TARGET_ABSENT) {
		if (renameat2(w->parent_fd, w->tmp_name, w->parent_fd, w->name,
			      RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
		/* No RENAME_NOREPLACE here: rename() never replaces a non-empty dir. */
		return renameat(w->parent_fd, w->tmp_name, w->parent_fd, w->name) ? -errno : 0;
	}
	if (renameat2(w->parent_fd, w->tmp_name, w->parent_fd, w->name,
		      RENAME_EXCHANGE) == 0) {
		/* The old image now lives under the temporary name. */
		remove_image_dir(w->parent_fd, w->tmp_name);
		return 0;
	}
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/*
	 * No RENAME_EXCHANGE: move the old image aside, then the new one in.
	 * There is a moment without an image under the name, never a half one.
	 */
	if ((size_t)snprintf(old, sizeof(old), "%s.old", w->tmp_name) >= sizeof(old))
		return -ENAMETOOLONG;
	if (renameat(w->parent_fd, w->name, w->parent_fd, old) != 0)
		return -errno;
	if (renameat(w->parent_fd, w->tmp_name, w->parent_fd, w->name) != 0) {
		ret = -errno;
		renameat(w->parent_fd, old, w->parent_fd, w->name);
		return ret;
	}
	remove_image_dir(w->parent_fd, old);
	return 0;
}

int sf_writer_commit(struct sf_writer *w, const struct sf_meta *meta)
{
	struct stat st;
	int ret;

	if (fstat(w->pages_fd, &st) != 0) {
		ret = -errno;
		goto fail;
	}
	/* Every block must be there: a short write shows up as a short file. */
	ret = -EIO;
	if ((uint64_t)st.st_size != w->pages_off)
		goto fail;
	if (fsync(w->pages_fd) != 0) {
		ret = -errno;
		goto fail;
	}
	ret = write_metadata(w, meta);
	if (ret)
		goto fail;
	if (fsync(w->dir_fd) != 0) {
		ret = -errno;
		goto fail;
	}
	ret = install(w);
	if (ret)
		goto fail;
	ret = fsync(w->parent_fd) != 0 ? -errno : 0;
	writer_free(w);
	return ret;
fail:
	sf_writer_abort(w);
	return ret;
}

void sf_writer_abort(struct sf_writer *w)
{
	if (!w)
		return;
	if (w->tmp_name)
		remove_image_dir(w->parent_fd, w->tmp_name);
	writer_free(w);
}
