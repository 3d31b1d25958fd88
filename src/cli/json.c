/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json.c - the one JSON string writer of the command, used by every
 * --json output (inspect, bench). Its output is valid UTF-8 JSON for any
 * bytes: quotes, backslashes and control bytes are escaped, well-formed
 * UTF-8 is copied as is, and each byte that is not part of a well-formed
 * UTF-8 sequence (a file name is any bytes but '/' and NUL) becomes
 * U+FFFD, the replacement character, written "\ufffd".
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "util/utf8.h"

void cli_json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s);

	putc('"', f);
	while (left) {
		int n = utf8_seq(p, left);

		if (n <= 0) {
			fputs("\\ufffd", f);
			n = 1;
		} else if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p);
		} else if (*p == '\n') {
			fputs("\\n", f);
		} else if (*p == '\t') {
			fputs("\\t", f);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p);
		} else {
			fwrite(p, 1, (size_t)n, f);
		}
		p += n;
		left -= (size_t)n;
	}
	putc('"', f);
}
