#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# make demo: pgckpt doing its job, in well under a minute.
#
# 1. A live program's memory. examples/kvstore builds a hash table of
#    400,000 records in a memfd and waits. pgckpt saves that memfd through
#    /proc/PID/fd/N while the program runs; then a lazy page server
#    (`pgckpt restore --background --listen`) restores it into
#    examples/lazy_consumer over userfaultfd, which touches random pages
#    and then every page and compares each byte with a copy of the
#    original. Printed: time to first access, time until every page is
#    in, image size against `zstd -1`, the byte-for-byte result; then an
#    eager restore into a file where kvstore looks up every key.
# 2. A synthetic 256 MiB memory file from bench/mkmem (holes, zero pages,
#    random and heap-like pages): save, verify, eager restore, compared
#    byte for byte, with `zstd -1 -T0` / `zstd -d` timed beside it.
#
# Everything lives in $DEMO_DIR (default /dev/shm/pgckpt-demo), removed at
# the end. env: B (build dir), SIZE (256M), RECORDS (400000)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/paths.sh"
kv="$bdir/examples/kvstore"
dir=${DEMO_DIR:-/dev/shm/pgckpt-demo}
size=${SIZE:-256M}
records=${RECORDS:-400000}

for f in "$bin" "$mkmem" "$kv" "$consumer"; do
	[ -x "$f" ] || { echo "demo: $f missing: run make" >&2; exit 2; }
done
command -v zstd >/dev/null || { echo "demo: zstd missing (./deps.sh installs it)" >&2; exit 2; }
rm -rf "$dir"; mkdir -p "$dir"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f s", b-a}'; }
mib() { awk -v n="$1" 'BEGIN{printf "%.1f MiB", n/1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
# field KEY LINE: the value of KEY=VALUE in a lazy_consumer line
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
# wait_for TEST ARG: up to 10 s
wait_for() {
	for _ in $(seq 200); do
		test "$1" "$2" && return 0
		sleep 0.05
	done
	echo "demo: timed out waiting for $2" >&2
	exit 2
}
start=$(now)

echo "== 1. a live program's memory: kvstore, $records records in a memfd"
"$kv" serve -n "$records" >"$dir/kv.line" &
pids+=($!)
wait_for -s "$dir/kv.line"
read -r kv_pid kv_fd kv_bytes _ <"$dir/kv.line"
src="/proc/$kv_pid/fd/$kv_fd"
echo "   kvstore is pid $kv_pid; its heap is $src, $(mib "$kv_bytes")"
t=$(now)
"$bin" save "$src" "$dir/kv.img"
echo "   pgckpt save $src: $(since "$t")"
# The reference copy for the byte-for-byte check, and zstd's size.
cp --sparse=always "$src" "$dir/kv.ref"
zstd -q -1 "$dir/kv.ref" -o "$dir/kv.ref.zst"
img_bytes=$(du -sb "$dir/kv.img" | cut -f1)
zst_bytes=$(stat -c %s "$dir/kv.ref.zst")
echo "   image $(mib "$img_bytes"), zstd -1 $(mib "$zst_bytes") (image/zstd $(ratio "$img_bytes" "$zst_bytes"))"

echo "   lazy restore: pgckpt restore --background --listen SOCK --once IMAGE"
"$bin" restore --background --listen "$dir/s.sock" --once --timeout 30 "$dir/kv.img" \
	2>"$dir/server.log" &
srv=$!
pids+=("$srv")
wait_for -S "$dir/s.sock"
if ! line=$(timeout 60 "$consumer" -n 1000 -v "$dir/kv.ref" "$dir/s.sock"); then
	cat "$dir/server.log" >&2
	echo "demo: the consumer failed" >&2
	exit 1
fi
wait "$srv" || { cat "$dir/server.log" >&2; echo "demo: the page server failed" >&2; exit 1; }
placed=$(sed -n 's/.*all placed after \([0-9.]* [mu]*s\).*/\1/p' "$dir/server.log")
echo "   into lazy_consumer over userfaultfd: first access $(field first_access_ms "$line") ms," \
	"every page in after ${placed:-?}, all read and checked $(field all_ms "$line") ms"
[ "$(field verified "$line")" = yes ] || { echo "demo: pages differ: $line" >&2; exit 1; }
echo "   byte for byte: all $(mib "$(field bytes "$line")") identical to the original"
"$bin" restore "$dir/kv.img" "$dir/kv.restored"
echo "   eager restore into a file, kvstore check: $("$kv" check -n "$records" "$dir/kv.restored")"

echo "== 2. a synthetic $size memory file (bench/mkmem: holes, zeros, random, heap-like pages)"
"$mkmem" "$dir/mem" "$size"
echo "   $(du -h --apparent-size "$dir/mem" | cut -f1) apparent, $(du -h "$dir/mem" | cut -f1) resident"
t=$(now); "$bin" save "$dir/mem" "$dir/img"; s_save=$(since "$t")
t=$(now); "$bin" verify "$dir/img" >/dev/null; s_verify=$(since "$t")
t=$(now); "$bin" restore "$dir/img" "$dir/restored"; s_restore=$(since "$t")
cmp "$dir/mem" "$dir/restored"
echo "   pgckpt: save $s_save, verify $s_verify, restore $s_restore; byte-identical," \
	"$(du -h "$dir/restored" | cut -f1) resident (zero pages stay holes)"
t=$(now); zstd -q -1 -T0 "$dir/mem" -o "$dir/mem.zst"; z_c=$(since "$t")
t=$(now); zstd -q -d "$dir/mem.zst" -o "$dir/unz"; z_d=$(since "$t")
img_bytes=$(du -sb "$dir/img" | cut -f1)
zst_bytes=$(stat -c %s "$dir/mem.zst")
echo "   zstd -1 -T0: compress $z_c, decompress $z_d; image $(mib "$img_bytes")" \
	"vs zstd $(mib "$zst_bytes") (image/zstd $(ratio "$img_bytes" "$zst_bytes"))"
echo "== demo ok in $(since "$start")"
