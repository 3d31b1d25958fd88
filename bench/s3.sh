#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/s3.sh: restores from S3 against restores of the same image from a
# local directory, on a single-node Ceph radosgw on loopback that the
# script starts and stops itself (tests/s3/ceph.sh). The memory file is
# bench/mkmem's default mix ($SIZE, 256 MiB by default), saved once
# locally and once to s3://pgckpt-bench/img with the same options
# (zstd:1, and -c none). Reported, best of $RUNS (eager) or median and
# worst of $RUNS (lazy):
#
#   eager   `pgckpt restore s3://... T` vs `pgckpt restore DIR T` (target: <= 2x),
#           and vs the server's floor: one `curl` GET of pages.img to /dev/null
#   lazy    `restore --background --listen` from s3:// with
#           examples/lazy_consumer: first access (target <= 10 ms), random
#           p50/p99, all pages placed (server log), all verified
#
# Prints a markdown table (from the line "| restore"). Exit 2 when a tool
# is missing or a run fails; exit 77 when radosgw is not installed.
# env: B (build dir, default build), RUNS (3), SIZE (256M), RANDOM_PAGES
# (1000), BENCH_DIR (/dev/shm/pgckpt-s3-bench; the cluster's state goes
# under /tmp, BlueStore wants O_DIRECT)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/paths.sh"
runs=${RUNS:-3}
size=${SIZE:-256M}
nrand=${RANDOM_PAGES:-1000}
dir=${BENCH_DIR:-/dev/shm/pgckpt-s3-bench}

command -v radosgw >/dev/null || { echo "s3.sh: radosgw not installed (./deps.sh)" >&2; exit 77; }
for f in "$bin" "$consumer" "$mkmem"; do
	[ -x "$f" ] || { echo "s3.sh: $f missing: run make" >&2; exit 2; }
done
rm -rf "$dir"; mkdir -p "$dir"
state=$(mktemp -d /tmp/pgckpt-s3-bench-ceph.XXXXXX)
srv_pid=
cleanup() {
	[ -z "$srv_pid" ] || kill "$srv_pid" 2>/dev/null || true
	"$top/tests/s3/ceph.sh" stop "$state" >/dev/null 2>&1 || true
	rm -rf "$state" "$dir"
}
trap cleanup EXIT
"$top/tests/s3/ceph.sh" start "$state" >"$dir/ceph.log" 2>&1 ||
	{ cat "$dir/ceph.log" >&2; echo "s3.sh: ceph.sh start failed" >&2; exit 2; }
eval "$("$top/tests/s3/ceph.sh" env "$state")"
curl -sf --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
	-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT "$AWS_ENDPOINT_URL/pgckpt-bench" >/dev/null

now() { date +%s.%N; }
# best CMD...: the best wall time of $runs runs, the target removed before each
best() {
	local b=999999 t0 t1
	for _ in $(seq "$runs"); do
		rm -f "$dir/target"
		t0=$(now); "$@" >/dev/null; t1=$(now)
		b=$(awk -v a="$b" -v t0="$t0" -v t1="$t1" 'BEGIN{t=t1-t0; printf "%.4f", (t<a)?t:a}')
	done
	echo "$b"
}

"$mkmem" "$dir/mem" "$size" --seed 1
rows=()
for c in zstd none; do
	"$bin" save -c "$c" "$dir/mem" "$dir/img-$c"
	"$bin" save -c "$c" "$dir/mem" "s3://pgckpt-bench/img-$c"
	t_local=$(best "$bin" restore "$dir/img-$c" "$dir/target")
	t_s3=$(best "$bin" restore "s3://pgckpt-bench/img-$c" "$dir/target")
	cmp -s "$dir/mem" "$dir/target" || { echo "s3.sh: restore from S3 differs" >&2; exit 2; }
	t_get=$(best curl -sf --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
		--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -o /dev/null \
		"$AWS_ENDPOINT_URL/pgckpt-bench/img-$c/pages.img")
	rows+=("| eager, -c $c | $t_local s | $t_s3 s | $(awk -v a="$t_s3" -v b="$t_local" \
		'BEGIN{printf "%.2f", a/b}') | $t_get s | $(awk -v a="$t_s3" -v b="$t_get" \
		'BEGIN{printf "%.2f", a/b}') |")
done

# One lazy run: the consumer's line and placed_ms.
lazy() {
	local sock="$dir/s.sock" line placed i
	rm -f "$sock"
	"$bin" restore --background --listen "$sock" --once --timeout 60 \
		"s3://pgckpt-bench/img-zstd" 2>"$dir/server.log" &
	srv_pid=$!
	for i in $(seq 1000); do
		[ -S "$sock" ] && break
		sleep 0.01
	done
	[ -S "$sock" ] || { cat "$dir/server.log" >&2; echo "s3.sh: no socket" >&2; exit 2; }
	line=$(timeout 120 "$consumer" -n "$nrand" -v "$dir/mem" "$sock") ||
		{ cat "$dir/server.log" >&2; echo "s3.sh: consumer failed" >&2; exit 2; }
	wait "$srv_pid" || { cat "$dir/server.log" >&2; echo "s3.sh: server failed" >&2; exit 2; }
	srv_pid=
	placed=$(sed -n 's/.*all placed after \([0-9.]*\) ms.*/\1/p' "$dir/server.log")
	echo "$line placed_ms=${placed:-0}"
}
: >"$dir/lazy"
for _ in $(seq "$runs"); do
	lazy >>"$dir/lazy"
done

python3 - "$dir/lazy" "$size" "$runs" "${rows[@]}" <<'EOF'
import statistics, sys
path, size, runs, eager = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rs = []
for line in open(path):
    d = dict(x.split("=", 1) for x in line.split())
    if d.get("verified") != "yes":
        sys.exit(f"s3.sh: lazy: not verified: {line.strip()}")
    rs.append(d)
def col(key, unit, scale=1):
    v = [float(r[key]) / scale for r in rs]
    return f"{statistics.median(v):.1f} {unit} ({max(v):.1f})"
print(f"\n{size} default mix, radosgw on loopback; eager: best of {runs}, lazy: median (worst) of {runs}\n")
print("| restore | local | s3:// | **s3 / local** | one GET of pages.img | s3 / GET |")
print("|---|---|---|---|---|---|")
print("\n".join(eager))
print()
print("| lazy from s3:// (zstd) | first access | random p50 | random p99 | all placed | all verified |")
print("|---|---|---|---|---|---|")
print(f"| pgckpt | {col('first_access_ms', 'ms')} | {col('p50_us', 'us')} | {col('p99_us', 'ms', 1e3)} | "
      f"{col('placed_ms', 'ms')} | {col('all_ms', 'ms')} |")
EOF
