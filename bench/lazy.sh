#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/lazy.sh: lazy restore for another process, measured in one run for
# pgckpt's page server and for a naive handler that copies one page per
# fault (the same server with --no-push --fault-bytes 4K). For each run a
# fresh `pgckpt restore --background --listen` starts loading the image;
# as soon as its socket appears, examples/lazy_consumer attaches, reads
# $RANDOM_PAGES random pages, then every page, comparing each byte with the
# original memory file. Reported (median of $RUNS, and the worst run):
#
#   first   first-access latency (handoff sent to first byte read)
#   p50/p99 random-access latency of those first touches
#   all     handoff until the consumer holds and has verified every page
#   placed  handoff until the server has placed every page (its log)
#
# Then the working set (REAP's case): a consumer touches $HOT_PAGES random
# pages of the last $HOT_BYTES, the end the fill reaches last (a fixed seed:
# the same pages every run)
# and `ws` is the time until it has touched them all, with no working set
# (hot) and with one recorded by an earlier server (hot+ws,
# --record-working-set / --working-set). With DISK_DIR set, the hot runs
# are repeated with the image on that (disk) directory, the page cache
# dropped before each run when /proc/sys/vm/drop_caches is writable.
#
# The memory file is a dense heap: bench/mkmem --holes 0.05 --zero 0.05
# --random 0.1 (256 MiB by default), saved with the default zstd:1. The
# image sits in the page cache (tmpfs $BENCH_DIR), so this measures the
# server, not the disk. Targets: all < 1000 ms, first < 20 ms.
#
# The hot and hot+ws runs are cheap and their ratio is what the working
# set is judged by, so they run HOT_RUNS times (3 x RUNS by default),
# each hot run right before its hot+ws one; the ratio is that of their
# medians.
#
# env: B (build dir, default build), RUNS (5), HOT_RUNS (3 x RUNS), SIZE
# (256M), RANDOM_PAGES (1000), HOT_PAGES (400), HOT_BYTES (24M), BENCH_DIR
# (/dev/shm/pgckpt-lazy-bench), DISK_DIR (unset: no disk runs)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/paths.sh"
dir=${BENCH_DIR:-/dev/shm/pgckpt-lazy-bench}
runs=${RUNS:-5}
hot_runs=${HOT_RUNS:-$((3 * runs))}
size=${SIZE:-256M}
nrand=${RANDOM_PAGES:-1000}
hot_pages=${HOT_PAGES:-400}
hot_bytes=${HOT_BYTES:-24M}
disk=${DISK_DIR:-}

[ -x "$bin" ] || { echo "lazy.sh: $bin missing: run make" >&2; exit 2; }
[ -x "$consumer" ] || { echo "lazy.sh: $consumer missing: run make" >&2; exit 2; }
[ -x "$mkmem" ] || { echo "lazy.sh: $mkmem missing: run make" >&2; exit 2; }
rm -rf "$dir"; mkdir -p "$dir"
srv_pid=
cleanup() {
	[ -z "$srv_pid" ] || kill "$srv_pid" 2>/dev/null || true
	rm -rf "$dir"
	[ -z "$disk" ] || rm -rf "$disk/pgckpt-lazy-bench"
}
trap cleanup EXIT

"$mkmem" "$dir/mem" "$size" --holes 0.05 --zero 0.05 --random 0.1 --seed 1
"$bin" save "$dir/mem" "$dir/img"
echo "# $("$bin" inspect --json "$dir/img")"

# run MODE IMAGE CONSUMER_ARGS -- [server options]: one server, one
# consumer; prints the consumer's line and placed_ms (from the server log)
run() {
	local mode=$1 img=$2 sock="$dir/s.sock" line placed i cargs=()
	shift 2
	while [ "$1" != -- ]; do cargs+=("$1"); shift; done
	shift
	rm -f "$sock"
	"$bin" restore --background --listen "$sock" --once --timeout 30 "$@" "$img" \
		2>"$dir/server.log" &
	srv_pid=$!
	for i in $(seq 500); do
		[ -S "$sock" ] && break
		sleep 0.01
	done
	[ -S "$sock" ] || { cat "$dir/server.log" >&2; echo "lazy.sh: no socket" >&2; exit 2; }
	line=$(timeout 120 "$consumer" "${cargs[@]}" -v "$dir/mem" "$sock") || {
		cat "$dir/server.log" >&2
		echo "lazy.sh: consumer failed" >&2
		exit 2
	}
	wait "$srv_pid" || { cat "$dir/server.log" >&2; echo "lazy.sh: server failed" >&2; exit 2; }
	srv_pid=
	placed=$(sed -n 's/.*all placed after \([0-9.]*\) ms.*/\1/p' "$dir/server.log")
	echo "$mode $line placed_ms=${placed:-0}"
}

drop_caches() {
	sync
	[ -w /proc/sys/vm/drop_caches ] && echo 3 >/proc/sys/vm/drop_caches || true
}
if [ -n "$disk" ] && [ ! -w /proc/sys/vm/drop_caches ]; then
	echo "lazy.sh: /proc/sys/vm/drop_caches is not writable: the disk runs read a warm page cache" >&2
fi

hot=(-n "$hot_pages" --hot "$hot_bytes" --seed 7)
# The working set: one server records what the hot consumer asks for.
run record "$dir/img" "${hot[@]}" -- --record-working-set "$dir/ws" >/dev/null
if [ -n "$disk" ]; then
	mkdir -p "$disk/pgckpt-lazy-bench"
	cp -r "$dir/img" "$disk/pgckpt-lazy-bench/img"
fi

results="$dir/results"
: >"$results"
for r in $(seq "$runs"); do
	run pgckpt "$dir/img" -n "$nrand" -- | tee -a "$results"
	run naive "$dir/img" -n "$nrand" -- --no-push --fault-bytes 4K | tee -a "$results"
done
for r in $(seq "$hot_runs"); do
	run hot "$dir/img" "${hot[@]}" -- | tee -a "$results"
	run hot+ws "$dir/img" "${hot[@]}" -- --working-set "$dir/ws" | tee -a "$results"
done
for r in $(seq "$runs"); do
	if [ -n "$disk" ]; then
		drop_caches
		run disk-hot "$disk/pgckpt-lazy-bench/img" "${hot[@]}" -- | tee -a "$results"
		drop_caches
		run disk-hot+ws "$disk/pgckpt-lazy-bench/img" "${hot[@]}" -- \
			--working-set "$dir/ws" | tee -a "$results"
	fi
done

python3 - "$results" "$size" "$runs" "$hot_runs" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, *kv = line.split()
    d = dict(x.split("=", 1) for x in kv)
    if d.get("verified") != "yes":
        sys.exit(f"lazy.sh: {mode}: not verified: {line.strip()}")
    rows.setdefault(mode, []).append(d)
print(f"\n{sys.argv[2]} dense heap, {sys.argv[3]} runs ({sys.argv[4]} of hot and hot+ws): median (worst)\n")
print("| handler | first access | random p50 | random p99 | all placed | all verified | working set touched |")
print("|---|---|---|---|---|---|---|")
def col(rs, key, unit):
    v = [float(r[key]) for r in rs]
    return f"{statistics.median(v):.1f} {unit} ({max(v):.1f})"
for mode in ("pgckpt", "naive", "hot", "hot+ws", "disk-hot", "disk-hot+ws"):
    rs = rows.get(mode)
    if not rs:
        continue
    ws = col(rs, 'random_ms', 'ms') if mode.startswith(("hot", "disk")) else "-"
    print(f"| {mode} | {col(rs, 'first_access_ms', 'ms')} | {col(rs, 'p50_us', 'us')} | "
          f"{col(rs, 'p99_us', 'us')} | {col(rs, 'placed_ms', 'ms')} | "
          f"{col(rs, 'all_ms', 'ms')} | {ws} |")
med = lambda mode, key: statistics.median(float(r[key]) for r in rows[mode])
print(f"\ntargets (medians): first access <= 2 ms: {med('pgckpt', 'first_access_ms'):.1f} ms; "
      f"random p99 <= 5 ms: {med('pgckpt', 'p99_us') / 1e3:.1f} ms; "
      f"all placed <= 500 ms: {med('pgckpt', 'placed_ms'):.0f} ms; "
      f"working set with/without <= 0.35: {med('hot+ws', 'random_ms') / med('hot', 'random_ms'):.2f}"
      + (f" (disk: {med('disk-hot+ws', 'random_ms') / med('disk-hot', 'random_ms'):.2f})"
         if 'disk-hot' in rows and 'disk-hot+ws' in rows else ""))
EOF
