#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# make demo: the main job on a real example. A 256 MiB memory file on
# tmpfs, made by ../shared/bench/mkmem.py (holes, zero pages, random and
# heap-like pages), is saved, inspected, verified, restored eagerly and
# compared byte for byte; the same file goes through `zstd -1 -T0` for
# comparison. Everything lives in $DEMO_DIR (default /dev/shm/pgckpt-demo)
# and is removed at the end.
# env: B (build dir), SIZE (256M)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
bin="$top/$B/pgckpt"
mkmem="$top/../shared/bench/mkmem.py"
dir=${DEMO_DIR:-/dev/shm/pgckpt-demo}
size=${SIZE:-256M}

[ -x "$bin" ] || { echo "demo: $bin missing: run make" >&2; exit 2; }
[ -f "$mkmem" ] || { echo "demo: $mkmem missing (../shared beside the repo)" >&2; exit 2; }
rm -rf "$dir"; mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f s", b-a}'; }

echo "== making a $size memory file ($mkmem)"
python3 "$mkmem" "$dir/mem" "$size"
echo "   $(du -h --apparent-size "$dir/mem" | cut -f1) apparent, $(du -h "$dir/mem" | cut -f1) resident"

echo "== pgckpt save -c zstd"
t=$(now); "$bin" save "$dir/mem" "$dir/img"; echo "   $(took "$t")"
echo "== pgckpt inspect"
"$bin" inspect "$dir/img"
echo "== pgckpt verify"
t=$(now); "$bin" verify "$dir/img"; echo "   $(took "$t")"
echo "== pgckpt restore"
t=$(now); "$bin" restore "$dir/img" "$dir/restored"; echo "   $(took "$t")"
cmp "$dir/mem" "$dir/restored"
echo "   byte-identical; $(du -h "$dir/restored" | cut -f1) resident (zero pages stay holes)"

echo "== for comparison: zstd -1 -T0 and zstd -d"
t=$(now); zstd -q -1 -T0 "$dir/mem" -o "$dir/mem.zst"; echo "   compress   $(took "$t")"
t=$(now); zstd -q -d "$dir/mem.zst" -o "$dir/unz"; echo "   decompress $(took "$t")"
echo "   image $(du -sb "$dir/img" | cut -f1) bytes vs zstd -1 $(stat -c %s "$dir/mem.zst") bytes"
echo "== demo ok"
