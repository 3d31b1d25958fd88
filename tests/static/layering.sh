#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Checks the layering of src/ (docs/design.md): every #include of every
# file of src/DIR must name a header of DIR itself, the public pgckpt.h,
# or an interface header of a module DIR may depend on:
#
#   util       nothing                  (interface: util/util.h)
#   alloc      util                     (alloc/memfile_hooks.h, alloc/rangeset.h)
#   aio        util                     (aio/aio.h)
#   statefile  util                     (statefile/statefile.h)
#   engine     util alloc aio statefile (nothing depends on it)
#   lazy       util                     (util/util.h, util/options.h)
#   s3         util                     (s3/s3.h; linked into the command only)
#   cli        pgckpt.h, util's header-only util/utf8.h, and s3/s3.h
#
# So src/alloc includes nothing of the engine, the engine sees the
# MemoryFile only through memfile_hooks.h, the lazy helper uses the public
# API and src/util, and the command uses only the public API (and
# util/utf8.h, which is header-only). A directory without a rule fails.
#
# The examples (examples/*.c and *.h) show how to use the library, so they
# may include pgckpt.h, headers of examples/ and system headers, never a
# header of src/ (the Makefile builds them without -Isrc).
#
# Prints "ok ..." or "not ok ..." per directory, then "N passed, N failed"
# (tests/run-all.sh counts it); exits 1 if any failed.
# Usage: tests/static/layering.sh [SRC_DIR [EXAMPLES_DIR]]
# (default: src and examples of this tree; EXAMPLES_DIR is skipped if absent)
set -u
src=${1:-$(cd "$(dirname "$0")/../.." && pwd)/src}
examples=${2:-$(dirname "$src")/examples}

declare -A deps=(
	[util]=""
	[alloc]="util"
	[aio]="util"
	[statefile]="util"
	[engine]="util alloc aio statefile"
	[lazy]="util"
	[s3]="util"
	[cli]="util s3"
)
iface=" util/util.h util/options.h util/utf8.h alloc/memfile_hooks.h alloc/rangeset.h aio/aio.h statefile/statefile.h s3/s3.h "

# Print why @inc may not be included from module @mod (nothing if it may).
verdict() {
	local mod=$1 inc=$2 dir=$3 top
	[ "$inc" = pgckpt.h ] && return
	case "$inc" in
	*/*) top=${inc%%/*} ;;
	*)
		[ -f "$dir/$inc" ] || echo "$inc is not a header of src/$mod"
		return ;;
	esac
	[ "$top" = "$mod" ] && return
	case " ${deps[$mod]} " in
	*" $top "*) ;;
	*) echo "src/$mod may not depend on src/$top"; return ;;
	esac
	case "$iface" in
	*" $inc "*) ;;
	*) echo "$inc is private to src/$top"; return ;;
	esac
	# The command links the shared library, which exports only pgckpt.h,
	# and src/s3, which it links itself.
	[ "$mod" != cli ] || [ "$inc" = util/utf8.h ] || [ "$inc" = s3/s3.h ] ||
		echo "src/cli may include only pgckpt.h, the header-only util/utf8.h and s3/s3.h"
}

passed=0 failed=0
# report NAME OK_TEXT: one line for NAME, from the array bad (empty: ok).
report() {
	if [ "${#bad[@]}" -eq 0 ]; then
		echo "ok layering: $2"
		passed=$((passed + 1))
	else
		echo "not ok layering: $1"
		printf '    %s\n' "${bad[@]}"
		failed=$((failed + 1))
	fi
}

for dir in "$src"/*/; do
	dir=${dir%/}
	mod=$(basename "$dir")
	if [ -z "${deps[$mod]+set}" ]; then
		echo "not ok layering: src/$mod has no layering rule (tests/static/layering.sh)"
		failed=$((failed + 1))
		continue
	fi
	bad=()
	for f in "$dir"/*.c "$dir"/*.h; do
		[ -f "$f" ] || continue
		# "x.h", and <m/x.h> naming a module of src/.
		while IFS= read -r line; do
			inc=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]([^">]*)[">].*/\1/' <<<"$line")
			case "$line" in
			*'<'*) [ -n "${deps[${inc%%/*}]+set}" ] && [ "${inc#*/}" != "$inc" ] || \
				[ "$inc" = pgckpt.h ] || continue ;;
			esac
			why=$(verdict "$mod" "$inc" "$dir")
			[ -n "$why" ] && bad+=("$(basename "$f"): #include \"$inc\": $why")
		done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]' "$f")
	done
	report "src/$mod" "src/$mod (depends on: ${deps[$mod]:-nothing})"
done
# The #includes of FILE, one a line: "NAME" or <NAME>.
includes() {
	sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*("[^"]*"|<[^>]*>).*/\1/p' "$1"
}

if [ -d "$examples" ]; then
	bad=()
	for f in "$examples"/*.c "$examples"/*.h; do
		[ -f "$f" ] || continue
		while IFS= read -r inc; do
			name=${inc:1:${#inc}-2}
			if [ "$name" = pgckpt.h ]; then
				continue
			elif [ -f "$src/$name" ]; then
				bad+=("$(basename "$f"): #include $inc: a header of src/, not the public API")
			elif [ "${inc:0:1}" = '"' ] && [ ! -f "$examples/$name" ]; then
				bad+=("$(basename "$f"): #include $inc: quoted, but not pgckpt.h or a header of examples/")
			fi
		done < <(includes "$f")
	done
	report examples "examples (pgckpt.h and system headers only)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
