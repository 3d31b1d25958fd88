/* SPDX-License-Identifier: Apache-2.0 */
/*
 * handoff.c - the JSON of Firecracker's UFFD handoff message: a strict,
 * bounds-checked parser for exactly an array of objects with unsigned
 * integer values, and the matching formatter. The input comes from another
 * process and is untrusted: every read is checked against the buffer end,
 * nothing recurses and nothing is allocated.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lazy/lazy.h"

#define KEY_MAX 64

struct cursor {
	const char *p;
	const char *end;
};

enum {
	F_BASE = 1,
	F_SIZE = 2,
	F_OFFSET = 4,
	F_PAGE = 8,
};

static void skip_ws(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

/* Consume @ch after whitespace. -ENODATA at the end, -EINVAL if another byte. */
static int expect(struct cursor *c, char ch)
{
	skip_ws(c);
	if (c->p == c->end)
		return -ENODATA;
	if (*c->p != ch)
		return -EINVAL;
	c->p++;
	return 0;
}

/* A key: "..." without escapes or control bytes, at most KEY_MAX bytes. */
static int parse_key(struct cursor *c, char *key)
{
	size_t n = 0;
	int ret;

	ret = expect(c, '"');
	if (ret)
		return ret;
	for (;;) {
		unsigned char ch;

		if (c->p == c->end)
			return -ENODATA;
		ch = (unsigned char)*c->p++;
		if (ch == '"')
			break;
		if (ch == '\\' || ch < 0x20 || n == KEY_MAX)
			return -EINVAL;
		key[n++] = (char)ch;
	}
	key[n] = '\0';
	return 0;
}

/*
 * An unsigned decimal integer without sign, fraction, exponent or leading
 * zeros, fitting in 64 bits. A number running into the end of the buffer
 * is incomplete (more digits may follow).
 */
static int parse_u64(struct cursor *c, uint64_t *out)
{
	uint64_t v = 0;
	const char *start;

	skip_ws(c);
	start = c->p;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		unsigned d = (unsigned)(*c->p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
		c->p++;
	}
	if (c->p == c->end)
		return -ENODATA;
	if (c->p == start)
		return -EINVAL;
	if (*start == '0' && c->p - start > 1)
		return -EINVAL;
	if (*c->p == '.' || *c->p == 'e' || *c->p == 'E')
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_object(struct cursor *c, struct pgc_lazy_map *m)
{
	char key[KEY_MAX + 1];
	unsigned seen = 0;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = expect(c, '{');
	if (ret)
		return ret;
	for (;;) {
		unsigned bit = 0;
		uint64_t v;

		ret = parse_key(c, key);
		if (ret)
			return ret;
		ret = expect(c, ':');
		if (ret)
			return ret;
		ret = parse_u64(c, &v);
		if (ret)
			return ret;
		if (!strcmp(key, "base_host_virt_addr")) {
			bit = F_BASE;
			m->base = v;
		} else if (!strcmp(key, "size")) {
			bit = F_SIZE;
			m->size = v;
		} else if (!strcmp(key, "offset")) {
			bit = F_OFFSET;
			m->offset = v;
		} else if (!strcmp(key, "page_size") || !strcmp(key, "page_size_kib")) {
			/* page_size_kib is the older name; it carries bytes. */
			bit = F_PAGE;
			m->page_size = v;
		}
		if (seen & bit)
			return -EINVAL;
		seen |= bit;
		skip_ws(c);
		if (c->p == c->end)
			return -ENODATA;
		if (*c->p == '}') {
			c->p++;
			break;
		}
		if (*c->p != ',')
			return -EINVAL;
		c->p++;
	}
	return seen == (F_BASE | F_SIZE | F_OFFSET | F_PAGE) ? 0 : -EINVAL;
}

int pgc_lazy_parse_regions(const char *buf, size_t len, struct pgc_lazy_map *out,
			   size_t max, size_t *n)
{
	struct cursor c = { buf, buf + len };
	struct pgc_lazy_map m;
	size_t count = 0;
	int ret;

	*n = 0;
	if (!buf)
		return -EINVAL;
	ret = expect(&c, '[');
	if (ret)
		goto exit;
	for (;;) {
		ret = parse_object(&c, &m);
		if (ret)
			goto exit;
		if (count == max) {
			ret = -E2BIG;
			goto exit;
		}
		out[count++] = m;
		skip_ws(&c);
		if (c.p == c.end) {
			ret = -ENODATA;
			goto exit;
		}
		if (*c.p == ']') {
			c.p++;
			break;
		}
		if (*c.p != ',') {
			ret = -EINVAL;
			goto exit;
		}
		c.p++;
	}
	skip_ws(&c);
	/* Tolerate one trailing NUL from senders that include the terminator. */
	if (c.p < c.end && *c.p == '\0')
		c.p++;
	if (c.p != c.end) {
		ret = -EINVAL;
		goto exit;
	}
	*n = count;
	ret = 0;
exit:
	return ret;
}

int pgc_lazy_format_regions(const struct pgc_lazy_map *m, size_t n, char *buf,
			    size_t size)
{
	size_t used = 0, i;
	int w;

	if (size == 0)
		return -ENOBUFS;
	buf[0] = '\0';
	w = snprintf(buf, size, "[");
	if (w < 0 || (size_t)w >= size)
		return -ENOBUFS;
	used = (size_t)w;
	for (i = 0; i < n; i++) {
		w = snprintf(buf + used, size - used,
			     "%s{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%" PRIu64
			     ",\"offset\":%" PRIu64 ",\"page_size\":%" PRIu64 "}",
			     i ? "," : "", m[i].base, m[i].size, m[i].offset, m[i].page_size);
		if (w < 0 || (size_t)w >= size - used)
			return -ENOBUFS;
		used += (size_t)w;
	}
	w = snprintf(buf + used, size - used, "]");
	if (w < 0 || (size_t)w >= size - used)
		return -ENOBUFS;
	used += (size_t)w;
	return used > INT32_MAX ? -ENOBUFS : (int)used;
}
