#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# getenv.sh - checks that the library reads the environment only through
# the tunables table (src/util/options.c, docs/tunables.md): no getenv() or
# secure_getenv() anywhere else under src/ but the command (src/cli). One
# "ok NAME" or "not ok NAME" line, as tests/run-all.sh counts them.
# Usage: tests/static/getenv.sh
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
hits=$(grep -rnE '\b(secure_)?getenv[[:space:]]*\(' --include='*.c' --include='*.h' src |
	grep -v '^src/util/options\.c:' | grep -v '^src/cli/')
if [ -n "$hits" ]; then
	echo "not ok getenv: only src/util/options.c reads the environment"
	sed 's/^/# /' <<<"$hits"
	exit 1
fi
echo "ok getenv: only src/util/options.c reads the environment"
