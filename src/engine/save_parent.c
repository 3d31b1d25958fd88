/* SPDX-License-Identifier: Apache-2.0 */
/*
 * save_parent.c - what a save against a parent (pgc_save_opts.parent)
 * needs before it starts: the parent's chain, opened and checked as any
 * reader checks it (so a child is never saved against a damaged or
 * replaced chain), the depth limit, the rule that a child never replaces
 * its parent or an ancestor (which would also make a cycle), and the
 * parent's path relative to the directory the child is written into, so
 * that a chain can be moved as a whole; and, from a small sample, how
 * much of the file has changed (the save sizes its windows by it).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "statefile/statefile.h"
#include "util/util.h"

/* The directory holding @path, resolved (realpath). NULL with errno set. */
static char *dir_of(const char *path)
{
	size_t n = strlen(path);
	char *d, *slash, *real;

	while (n > 1 && path[n - 1] == '/')
		n--;
	d = strndup(path, n);
	if (!d)
		return NULL;
	slash = strrchr(d, '/');
	if (!slash)
		strcpy(d, ".");
	else if (slash == d)
		d[1] = '\0';
	else
		*slash = '\0';
	real = realpath(d, NULL);
	free(d);
	return real;
}

/* @to (absolute, resolved) relative to the directory @from (same). */
static char *relative(const char *from, const char *to)
{
	size_t i = 0, common = 0, ups = 0, len;
	const char *rest;
	char *out;

	/* The longest common prefix ending at a component boundary. */
	while (from[i] && from[i] == to[i]) {
		i++;
		if (from[i - 1] == '/')
			common = i;
	}
	if (!from[i] && (to[i] == '/' || !to[i]))
		common = i;
	for (i = common; from[i]; i++)
		if (from[i] != '/' && (i == common || from[i - 1] == '/'))
			ups++;
	rest = to + common;
	while (*rest == '/')
		rest++;
	len = ups * 3 + strlen(rest) + 2;
	out = malloc(len);
	if (!out)
		return NULL;
	out[0] = '\0';
	while (ups--)
		strcat(out, "../");
	strcat(out, *rest ? rest : ".");
	return out;
}

/* -ELOOP if @path is the image at @img_path (same directory). */
static int not_same(const struct stat *target, const char *img_path)
{
	struct stat st;

	if (stat(img_path, &st) != 0)
		return 0;
	return st.st_dev == target->st_dev && st.st_ino == target->st_ino ? -ELOOP : 0;
}

int save_parent_open(const char *parent, const char *path, enum pgc_compress compress,
		     struct sf_image **img, char **rel)
{
	struct sf_image *p = NULL;
	char *pdir = NULL, *preal = NULL;
	struct stat target;
	size_t d;
	int ret;

	ret = sf_image_open(parent, false, &p);
	if (ret)
		return ret;
	ret = -PGC_ELIMIT;
	if (p->depth >= SF_MAX_DEPTH)
		goto exit;
	ret = -EINVAL;
	if (p->compress != compress)
		goto exit;
	/* A child never replaces its parent or an ancestor. */
	ret = 0;
	if (stat(path, &target) == 0) {
		ret = not_same(&target, p->path);
		for (d = 0; !ret && d < p->nanc; d++)
			ret = not_same(&target, p->anc[d]->path);
	}
	if (ret)
		goto exit;
	pdir = dir_of(path);
	preal = pdir ? realpath(parent, NULL) : NULL;
	if (!pdir || !preal) {
		ret = errno ? -errno : -ENOMEM;
		goto exit;
	}
	ret = -ENOMEM;
	*rel = relative(pdir, preal);
	if (!*rel)
		goto exit;
	*img = p;
	p = NULL;
	ret = 0;
exit:
	free(pdir);
	free(preal);
	sf_image_close(p);
	return ret;
}

/* Whether a save against @parent stores the page at @off of @fd (into @page). -errno on error. */
static int sample_stored(const struct sf_image *parent, int fd, uint64_t off, uint8_t *page,
			 size_t *cursor)
{
	ssize_t got = sf_pread_all(fd, page, PGC_PAGE_SIZE, off);
	uint64_t ph;
	uint32_t depth;

	if (got < 0)
		return (int)got;
	memset(page + got, 0, PGC_PAGE_SIZE - (size_t)got);
	if (util_page_is_zero(page))
		return 0;
	return !sf_image_page(parent, off, cursor, &ph, &depth) || ph != sf_page_hash(page);
}

int save_parent_changed(const struct sf_image *parent, int fd, const struct pgc_segment *segs,
			size_t nsegs)
{
	uint64_t pages = 0, step, at, base = 0;
	size_t k, cursor = 0, n = 0, stored = 0;
	uint8_t *page;
	int ret = 0;

	for (k = 0; k < nsegs; k++)
		if (segs[k].refs)
			pages += (segs[k].range.end - segs[k].range.start) / PGC_PAGE_SIZE;
	if (!pages)
		return 0;
	page = aligned_alloc(PGC_PAGE_SIZE, PGC_PAGE_SIZE);
	if (!page)
		return -ENOMEM;
	step = pages > SAVE_PARENT_SAMPLES ? pages / SAVE_PARENT_SAMPLES : 1;
	/*
	 * One sample in each stretch of @step of the segments' pages, in
	 * order, at a pseudo-random place in it: a change with a period
	 * (every MiB's first pages) is not hit always or never.
	 */
	for (k = 0, at = 0; k < nsegs && ret >= 0; k++) {
		uint64_t len = (segs[k].range.end - segs[k].range.start) / PGC_PAGE_SIZE;

		if (!segs[k].refs)
			continue;
		for (; at < base + len && ret >= 0; n++) {
			ret = sample_stored(parent, fd, segs[k].range.start +
					    (at - base) * PGC_PAGE_SIZE, page, &cursor);
			stored += ret > 0;
			at = (at / step + 1) * step + ((n + 1) * 0x9e3779b97f4a7c15ULL >> 40) % step;
		}
		base += len;
	}
	free(page);
	return ret < 0 ? ret : (int)(stored * 1024 / n);
}
