/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reader.c - opening an image directory: memfile.img is read and fully
 * validated (version first, then its size, its checksum, every table),
 * then pages.img is opened and its size checked against the index, so
 * that callers may index every table and read every block without
 * further checks. Also the block read helper verify and export share.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sf_internal.h"

/* Read and validate memfile.img, open in @dirfd, into @img. */
static int read_memfile(int fd, struct sf_image *img)
{
	uint8_t head[8 + 4 + SF_MAX_HEAD];
	uint8_t *buf = NULL;
	struct stat st;
	uint32_t version;
	size_t n;
	ssize_t got;
	int ret;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -PGC_EFOREIGN;
	/* Magics and version before anything is allocated. */
	n = (uint64_t)st.st_size < sizeof(head) ? (size_t)st.st_size : sizeof(head);
	got = sf_pread_all(fd, head, n, 0);
	if (got < 0)
		return (int)got;
	ret = sf_index_peek(head, (size_t)got, (uint64_t)got, &version);
	if (ret)
		return ret;
	if ((uint64_t)st.st_size > SF_MAX_MEMFILE)
		return -PGC_ECORRUPT;
	n = (size_t)st.st_size;
	buf = malloc(n);
	if (!buf)
		return -ENOMEM;
	got = sf_pread_all(fd, buf, n, 0);
	if (got < 0) {
		ret = (int)got;
		goto exit;
	}
	ret = sf_index_decode(buf, (size_t)got, img);
exit:
	free(buf);
	return ret;
}

/* Open pages.img, with O_DIRECT where asked and possible. */
static int open_pages(int dirfd, bool direct, struct sf_image *img)
{
	int flags = O_RDONLY | O_CLOEXEC;
	struct stat st;

	if (direct && img->compress == PGC_COMPRESS_NONE) {
		img->pages_fd = openat(dirfd, SF_PAGES_NAME, flags | O_DIRECT);
		img->direct = img->pages_fd >= 0;
	}
	if (img->pages_fd < 0)
		img->pages_fd = openat(dirfd, SF_PAGES_NAME, flags);
	if (img->pages_fd < 0)
		return errno == ENOENT ? -PGC_ECORRUPT : -errno;
	if (fstat(img->pages_fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -PGC_ECORRUPT;
	if ((uint64_t)st.st_size < img->pages_bytes)
		return -PGC_ETRUNCATED;
	if ((uint64_t)st.st_size > img->pages_bytes)
		return -PGC_ECORRUPT;
	return 0;
}

int sf_image_open(const char *path, bool direct, struct sf_image **out)
{
	struct sf_image *img;
	int dirfd, fd = -1, ret;

	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	img = calloc(1, sizeof(*img));
	if (!img) {
		ret = -ENOMEM;
		goto exit;
	}
	img->pages_fd = -1;
	fd = openat(dirfd, SF_MEMFILE_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = errno == ENOENT ? -PGC_EFOREIGN : -errno;
		goto exit;
	}
	ret = read_memfile(fd, img);
	if (!ret)
		ret = open_pages(dirfd, direct, img);
exit:
	if (fd >= 0)
		close(fd);
	close(dirfd);
	if (ret) {
		sf_image_close(img);
		return ret;
	}
	*out = img;
	return 0;
}

void sf_image_close(struct sf_image *img)
{
	if (!img)
		return;
	if (img->pages_fd >= 0)
		close(img->pages_fd);
	free(img->segs);
	free(img->runs);
	free(img->blocks);
	free(img);
}

int sf_image_read_block(const struct sf_image *img, struct sf_codec *c, size_t i,
			void *scratch, void *dst)
{
	const struct sf_block *b;
	struct iovec iov;
	ssize_t got;

	if (i >= img->nblocks)
		return -EINVAL;
	b = &img->blocks[i];
	got = sf_pread_all(img->pages_fd, scratch, b->stored_len, b->file_off);
	if (got < 0)
		return (int)got;
	if ((size_t)got < b->stored_len)
		return -PGC_ETRUNCATED;
	iov.iov_base = dst;
	iov.iov_len = b->mem_len;
	return sf_block_decode(c, b, scratch, &iov, 1);
}
