#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# exports.sh - checks that $B/libpgckpt.so exports exactly the functions
# declared in include/pgckpt.h, all versioned by src/libpgckpt.map, and
# that a program built against the header alone links with the .so and
# runs. One "ok NAME" or "not ok NAME" line per check (what differs
# follows on "# " lines), as tests/run-all.sh counts them.
# Usage: tests/static/exports.sh   (env: B=build dir, CC, LDFLAGS)
set -u
B=${B:-build}
CC=${CC:-cc}
top=$(cd "$(dirname "$0")/../.." && pwd)
so="$top/$B/libpgckpt.so"
map="$top/src/libpgckpt.map"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgckpt-exports.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0

# check NAME FILE: ok when FILE is empty, else not ok with FILE's lines.
check() {
	if [ -s "$2" ]; then
		echo "not ok $1"; sed 's/^/# /' "$2"; status=1
	else
		echo "ok $1"
	fi
}

# Functions the header declares: after the preprocessor (no comments, no
# macros), every pgc_NAME( outside a typedef. Function-pointer members
# and typedefs are "(*name)(", which the pattern does not match.
"$CC" -E -P -D_GNU_SOURCE "$top/include/pgckpt.h" | grep -v '^typedef' |
	grep -oE '\bpgc_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u >"$tmp/header"
# Defined dynamic symbols, minus the version nodes (type A).
nm -D --defined-only "$so" | awk '$2 != "A" { print $3 }' >"$tmp/nm"
sed 's/@.*//' "$tmp/nm" | sort -u >"$tmp/so"
# The map's global: names (the lines "name;" before "local:").
sed -e 's|/\*.*\*/||' "$map" | awk '/local:/ { exit } { print }' |
	grep -oE '^[[:space:]]*[a-z_][a-z0-9_]*;' | tr -d ' \t;' | sort -u >"$tmp/map"

if [ ! -s "$tmp/header" ] || [ ! -s "$tmp/so" ]; then
	echo "not ok exports: no functions found in the header or the .so ($so)"; exit 1
fi
comm -23 "$tmp/header" "$tmp/so" >"$tmp/missing"
check "exports: every function of pgckpt.h is exported ($(wc -l <"$tmp/header") functions)" "$tmp/missing"
comm -13 "$tmp/header" "$tmp/so" >"$tmp/extra"
check "exports: nothing else is exported" "$tmp/extra"
grep -vE '@@?PGCKPT_[0-9]+\.[0-9]+$' "$tmp/nm" >"$tmp/unversioned"
check "exports: every export has a PGCKPT_ version" "$tmp/unversioned"
nm -D --defined-only "$so" | awk '$2 != "A" && $2 != "T" { print }' >"$tmp/notfunc"
check "exports: every export is a function" "$tmp/notfunc"
{ comm -23 "$tmp/header" "$tmp/map" | sed 's/^/not in the map: /'
  comm -13 "$tmp/header" "$tmp/map" | sed 's/^/not in the header: /'; } >"$tmp/mapdiff"
check "exports: src/libpgckpt.map lists exactly the header's functions" "$tmp/mapdiff"

# A program that sees only the header, linked with the .so (under its
# soname), compares the run-time version with the compile-time one.
# Sanitizer builds pass their flags in LDFLAGS.
cat >"$tmp/prog.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "pgckpt.h"
int main(void)
{
	if (pgc_version() != PGC_VERSION_NUMBER ||
	    strcmp(pgc_version_string(), PGC_VERSION_STRING) != 0) {
		printf("library %s (%#x), header %s (%#x)\n", pgc_version_string(),
		       pgc_version(), PGC_VERSION_STRING, PGC_VERSION_NUMBER);
		return 1;
	}
	return pgc_strerror(-PGC_ECORRUPT)[0] ? 0 : 1;
}
C
ln -s "$so" "$tmp/libpgckpt.so.0"
# shellcheck disable=SC2086 # LDFLAGS is a list of flags
if "$CC" -std=c11 -I"$top/include" ${LDFLAGS:-} -o "$tmp/prog" "$tmp/prog.c" "$so" \
	>"$tmp/link" 2>&1 && LD_LIBRARY_PATH="$tmp" "$tmp/prog" >>"$tmp/link" 2>&1; then
	: >"$tmp/link"
else
	echo "link or run failed" >>"$tmp/link"
fi
check "exports: a program built against pgckpt.h links with the .so and runs" "$tmp/link"
exit $status
