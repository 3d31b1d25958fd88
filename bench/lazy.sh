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
#
# The memory file is a dense heap: bench/mkmem --holes 0.05 --zero 0.05
# --random 0.1 (256 MiB by default), saved with the default zstd:1. The
# image sits in the page cache (tmpfs $BENCH_DIR), so this measures the
# server, not the disk. Targets: all < 1000 ms, first < 20 ms.
#
# env: B (build dir, default build), RUNS (5), SIZE (256M), RANDOM_PAGES
# (1000), BENCH_DIR (/dev/shm/pgckpt-lazy-bench)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-build}
case $B in /*) bdir=$B ;; *) bdir=$top/$B ;; esac
bin="$bdir/pgckpt"
consumer="$bdir/examples/lazy_consumer"
mkmem="$bdir/bench/mkmem"
dir=${BENCH_DIR:-/dev/shm/pgckpt-lazy-bench}
runs=${RUNS:-5}
size=${SIZE:-256M}
nrand=${RANDOM_PAGES:-1000}

[ -x "$bin" ] || { echo "lazy.sh: $bin missing: run make" >&2; exit 2; }
[ -x "$consumer" ] || { echo "lazy.sh: $consumer missing: run make" >&2; exit 2; }
[ -x "$mkmem" ] || { echo "lazy.sh: $mkmem missing: run make" >&2; exit 2; }
rm -rf "$dir"; mkdir -p "$dir"
srv_pid=
cleanup() {
	[ -z "$srv_pid" ] || kill "$srv_pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

"$mkmem" "$dir/mem" "$size" --holes 0.05 --zero 0.05 --random 0.1 --seed 1
"$bin" save "$dir/mem" "$dir/img"
echo "# $("$bin" inspect --json "$dir/img")"

# run MODE [server options]: one server, one consumer; prints the consumer's line
run() {
	local mode=$1 sock="$dir/s.sock" line i
	shift
	rm -f "$sock"
	"$bin" restore --background --listen "$sock" --once --timeout 30 "$@" "$dir/img" \
		2>"$dir/server.log" &
	srv_pid=$!
	for i in $(seq 500); do
		[ -S "$sock" ] && break
		sleep 0.01
	done
	[ -S "$sock" ] || { cat "$dir/server.log" >&2; echo "lazy.sh: no socket" >&2; exit 2; }
	line=$(timeout 120 "$consumer" -n "$nrand" -v "$dir/mem" "$sock") || {
		cat "$dir/server.log" >&2
		echo "lazy.sh: consumer failed" >&2
		exit 2
	}
	wait "$srv_pid" || { cat "$dir/server.log" >&2; echo "lazy.sh: server failed" >&2; exit 2; }
	srv_pid=
	echo "$mode $line"
}

results="$dir/results"
: >"$results"
for r in $(seq "$runs"); do
	run pgckpt | tee -a "$results"
	run naive --no-push --fault-bytes 4K | tee -a "$results"
done

python3 - "$results" "$size" "$runs" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, *kv = line.split()
    d = dict(x.split("=", 1) for x in kv)
    if d.get("verified") != "yes":
        sys.exit(f"lazy.sh: {mode}: not verified: {line.strip()}")
    rows.setdefault(mode, []).append(d)
print(f"\n{sys.argv[2]} dense heap, {sys.argv[3]} runs: median (worst)\n")
print("| handler | first access | random p50 | random p99 | all verified |")
print("|---|---|---|---|---|")
for mode in ("pgckpt", "naive"):
    rs = rows[mode]
    def col(key, unit):
        v = [float(r[key]) for r in rs]
        return f"{statistics.median(v):.1f} {unit} ({max(v):.1f})"
    print(f"| {mode} | {col('first_access_ms', 'ms')} | {col('p50_us', 'us')} | "
          f"{col('p99_us', 'us')} | {col('all_ms', 'ms')} |")
ok_all = max(float(r["all_ms"]) for r in rows["pgckpt"]) < 1000
ok_first = max(float(r["first_access_ms"]) for r in rows["pgckpt"]) < 20
print(f"\ntargets (every pgckpt run): all < 1000 ms {'met' if ok_all else 'MISSED'}, "
      f"first access < 20 ms {'met' if ok_first else 'MISSED'}")
EOF
