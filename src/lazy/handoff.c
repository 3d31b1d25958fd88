/* SPDX-License-Identifier: Apache-2.0 */
/*
 * handoff.c - the JSON of Firecracker's UFFD handoff message: a strict,
 * bounds-checked parser for an array of region objects, and the matching
 * formatter. The input comes from another process and is untrusted: every
 * read is checked against the buffer end, nothing recurses and nothing is
 * allocated. Every Firecracker version's form is accepted: "page_size_kib"
 * alone (1.0-1.6; it carries bytes), "page_size" alone, or both, which must
 * agree (1.7 on). A key the parser does not know is skipped with its value,
 * whatever JSON value it is, nested at most DEPTH_MAX containers deep.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/utf8.h"
#include "lazy/lazy.h"

#define DEPTH_MAX 32   /* containers nested inside one unknown value */

struct cursor {
	const char *p;
	const char *end;
};

/* The keys a region may carry; bit K_x of a "seen" mask is key K_x. */
enum { K_BASE, K_SIZE, K_OFFSET, K_PAGE, K_PAGE_KIB, K_COUNT };

static const char *const known_keys[K_COUNT] = {
	"base_host_virt_addr", "size", "offset", "page_size", "page_size_kib",
};

#define BIT(k) (1u << (k))

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

static bool is_hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* One escape: @c->p is at the backslash. */
static int skip_escape(struct cursor *c)
{
	int i;

	if (c->end - c->p < 2)
		return -ENODATA;
	if (strchr("\"\\/bfnrt", c->p[1]) && c->p[1] != '\0') {
		c->p += 2;
		return 0;
	}
	if (c->p[1] != 'u')
		return -EINVAL;
	for (i = 2; i < 6; i++) {
		if (c->end - c->p == i)
			return -ENODATA;
		if (!is_hex(c->p[i]))
			return -EINVAL;
	}
	c->p += 6;
	return 0;
}

/*
 * A string, after whitespace: well-formed UTF-8, no control bytes, escapes
 * only if @escapes. *@s and *@len get its raw bytes between the quotes.
 */
static int scan_string(struct cursor *c, bool escapes, const char **s, size_t *len)
{
	int ret = expect(c, '"');

	if (ret)
		return ret;
	*s = c->p;
	for (;;) {
		int n;

		if (c->p == c->end)
			return -ENODATA;
		if (*c->p == '"')
			break;
		if (*c->p == '\\') {
			if (!escapes)
				return -EINVAL;
			ret = skip_escape(c);
			if (ret)
				return ret;
			continue;
		}
		if ((unsigned char)*c->p < 0x20)
			return -EINVAL;
		n = utf8_seq((const unsigned char *)c->p, (size_t)(c->end - c->p));
		if (n < 0)
			return -ENODATA;
		if (n == 0)
			return -EINVAL;
		c->p += n;
	}
	*len = (size_t)(c->p - *s);
	c->p++;
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

static bool is_digit(const struct cursor *c)
{
	return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

/* Digits, at least one (@c->p may not be at the end). */
static int skip_digits(struct cursor *c)
{
	if (c->p == c->end)
		return -ENODATA;
	if (!is_digit(c))
		return -EINVAL;
	while (is_digit(c))
		c->p++;
	return 0;
}

/* Any JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(struct cursor *c)
{
	int ret;

	if (c->p < c->end && *c->p == '-')
		c->p++;
	if (c->p < c->end && *c->p == '0')
		c->p++;
	else if ((ret = skip_digits(c)))
		return ret;
	if (c->p < c->end && *c->p == '.') {
		c->p++;
		if ((ret = skip_digits(c)))
			return ret;
	}
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		if ((ret = skip_digits(c)))
			return ret;
	}
	/* More digits may follow. */
	return c->p == c->end ? -ENODATA : 0;
}

/* true, false or null; @c->p is at its first byte. */
static int skip_literal(struct cursor *c)
{
	const char *word = *c->p == 't' ? "true" : *c->p == 'f' ? "false" : "null";
	size_t i;

	for (i = 0; word[i]; i++) {
		if (c->p + i == c->end)
			return -ENODATA;
		if (c->p[i] != word[i])
			return -EINVAL;
	}
	c->p += i;
	return 0;
}

/* A key of a nested object and its colon. */
static int skip_key(struct cursor *c)
{
	const char *s;
	size_t len;
	int ret = scan_string(c, true, &s, &len);

	return ret ? ret : expect(c, ':');
}

/* One scalar: a string, a number or a literal. */
static int skip_scalar(struct cursor *c)
{
	const char *s;
	size_t len;

	if (*c->p == '"')
		return scan_string(c, true, &s, &len);
	if (*c->p == 't' || *c->p == 'f' || *c->p == 'n')
		return skip_literal(c);
	if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))
		return skip_number(c);
	return -EINVAL;
}

/*
 * Any JSON value, without recursion: @open holds one bit per container
 * entered (1 an object, 0 an array), at most DEPTH_MAX of them.
 */
static int skip_value(struct cursor *c)
{
	uint64_t open = 0;
	unsigned depth = 0;
	int ret;

	for (;;) {
		/* A value is due. */
		skip_ws(c);
		if (c->p == c->end)
			return -ENODATA;
		if (*c->p == '{' || *c->p == '[') {
			bool obj = *c->p++ == '{';

			if (depth == DEPTH_MAX)
				return -EINVAL;
			open = open << 1 | obj;
			depth++;
			skip_ws(c);
			if (c->p == c->end)
				return -ENODATA;
			if (*c->p != (obj ? '}' : ']')) {
				if (obj && (ret = skip_key(c)))
					return ret;
				continue;
			}
			c->p++;
			open >>= 1;
			depth--;
		} else if ((ret = skip_scalar(c))) {
			return ret;
		}
		/* After a value: a comma, or the end of one or more containers. */
		for (;;) {
			if (depth == 0)
				return 0;
			skip_ws(c);
			if (c->p == c->end)
				return -ENODATA;
			if (*c->p == ',') {
				c->p++;
				if ((open & 1) && (ret = skip_key(c)))
					return ret;
				break;
			}
			if (*c->p != ((open & 1) ? '}' : ']'))
				return -EINVAL;
			c->p++;
			open >>= 1;
			depth--;
		}
	}
}

/* The index in known_keys of the key @s (@len bytes), or -1 for a key we do not know. */
static int key_index(const char *s, size_t len)
{
	int i;

	for (i = 0; i < K_COUNT; i++)
		if (strlen(known_keys[i]) == len && !memcmp(known_keys[i], s, len))
			return i;
	return -1;
}

/* The region from the values @vals of the keys in @seen (both indexed by K_*). */
static int finish_region(unsigned seen, const uint64_t *vals, struct lazy_map *m)
{
	unsigned need = BIT(K_BASE) | BIT(K_SIZE) | BIT(K_OFFSET);
	bool page = seen & BIT(K_PAGE), kib = seen & BIT(K_PAGE_KIB);

	if ((seen & need) != need || (!page && !kib))
		return -EINVAL;
	/* Both names (Firecracker 1.7 on) must carry the same byte count. */
	if (page && kib && vals[K_PAGE] != vals[K_PAGE_KIB])
		return -EINVAL;
	m->base = vals[K_BASE];
	m->size = vals[K_SIZE];
	m->offset = vals[K_OFFSET];
	m->page_size = page ? vals[K_PAGE] : vals[K_PAGE_KIB];
	return 0;
}

static int parse_object(struct cursor *c, struct lazy_map *m)
{
	uint64_t vals[K_COUNT] = { 0 };
	unsigned seen = 0;
	int ret;

	memset(m, 0, sizeof(*m));
	ret = expect(c, '{');
	if (ret)
		return ret;
	for (;;) {
		const char *key;
		size_t klen;
		int k;
		uint64_t v;

		/* Keys are plain: one with an escape (which could spell a known key) is refused. */
		ret = scan_string(c, false, &key, &klen);
		if (ret)
			return ret;
		ret = expect(c, ':');
		if (ret)
			return ret;
		k = key_index(key, klen);
		if (k < 0) {
			ret = skip_value(c);
			if (ret)
				return ret;
		} else {
			ret = parse_u64(c, &v);
			if (ret)
				return ret;
			if (seen & BIT(k))
				return -EINVAL;
			seen |= BIT(k);
			vals[k] = v;
		}
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
	return finish_region(seen, vals, m);
}

int lazy_parse_regions(const char *buf, size_t len, struct lazy_map *out,
		   size_t max, size_t *n)
{
	struct cursor c = { buf, buf + len };
	struct lazy_map m;
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

/* Append to @buf (@size bytes, @*used of them taken). Returns 0 or -ENOBUFS. */
__attribute__((format(printf, 4, 5)))
static int append(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
	va_list ap;
	int w;

	va_start(ap, fmt);
	w = vsnprintf(buf + *used, size - *used, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= size - *used)
		return -ENOBUFS;
	*used += (size_t)w;
	return 0;
}

int lazy_format_regions(const struct lazy_map *m, size_t n, enum lazy_form form,
		    char *buf, size_t size)
{
	size_t used = 0, i;
	int ret;

	if (size == 0)
		return -ENOBUFS;
	buf[0] = '\0';
	ret = append(buf, size, &used, "[");
	for (i = 0; i < n && !ret; i++) {
		ret = append(buf, size, &used, "%s{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%"
			     PRIu64 ",\"offset\":%" PRIu64, i ? "," : "", m[i].base, m[i].size,
			     m[i].offset);
		if (!ret && form != LAZY_FORM_KIB)
			ret = append(buf, size, &used, ",\"page_size\":%" PRIu64, m[i].page_size);
		/* Firecracker's older name; it carries bytes, not KiB. */
		if (!ret && form != LAZY_FORM_PAGE_SIZE)
			ret = append(buf, size, &used, ",\"page_size_kib\":%" PRIu64, m[i].page_size);
		if (!ret)
			ret = append(buf, size, &used, "}");
	}
	if (!ret)
		ret = append(buf, size, &used, "]");
	if (ret)
		return ret;
	return used > INT32_MAX ? -ENOBUFS : (int)used;
}
