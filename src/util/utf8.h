/* SPDX-License-Identifier: Apache-2.0 */
/*
 * utf8.h - one UTF-8 validator for the whole project: the handoff parser
 * (src/lazy/handoff.c) checks the strings another process sends with it,
 * and the command's JSON writer (src/cli/json.c) uses it to keep its
 * output valid UTF-8 whatever bytes a file name holds. Header-only, so
 * both the library and the command can use it without exporting a symbol.
 */
#ifndef PGC_UTF8_H
#define PGC_UTF8_H

#include <stddef.h>

/*
 * utf8_seq - the length of the UTF-8 sequence at @p, of which @avail >= 1
 * bytes are readable. Well-formed means RFC 3629: no overlong forms, no
 * surrogates (U+D800..DFFF), nothing above U+10FFFF.
 * Returns 1..4 for a well-formed sequence; 0 if @p[0] does not start one
 * (the caller treats that one byte as invalid); -1 if the @avail bytes
 * are a well-formed but incomplete prefix of a sequence.
 */
static inline int utf8_seq(const unsigned char *p, size_t avail)
{
	unsigned char lo = 0x80, hi = 0xbf;
	int n, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] < 0xc2)
		return 0;
	if (p[0] < 0xe0) {
		n = 2;
	} else if (p[0] < 0xf0) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] < 0xf5) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((size_t)i == avail)
			return -1;
		if (p[i] < lo || p[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
	}
	return n;
}

#endif /* PGC_UTF8_H */
