#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# make bench: pgckpt against the tools a user would otherwise reach for,
# measured side by side in one run, best of $RUNS, on memory files made by
# the project's generator bench/mkmem (and one real process's memory):
#
#   save -c zstd          vs  zstd -1 -T0 FILE
#   restore (zstd image)  vs  zstd -d into tmpfs
#   save -c none+restore  vs  cp --sparse=always into tmpfs
#   restore               vs  the machine's limit (memprobe: fresh memfd,
#                             populate + memcpy, best method)
#   image size            vs  zstd -1 output size
#   lazy restore          first access, faults, all placed, working set
#                         (bench/lazy.sh)
#   restore from S3       vs  restore of the same image from a directory;
#                         lazy from S3 (bench/s3.sh, when radosgw is installed)
#
# Ratios are pgckpt time / baseline time (< 1 means pgckpt is faster);
# for the limit, restore throughput / limit throughput (> 0.8 is the aim).
# Everything lives in $BENCH_DIR (default /dev/shm/pgckpt-bench: tmpfs, so
# the figures measure CPU and memory, not the disk). Writes docs/perf.md
# unless PERF_MD=- (print only).
#
# env: B (build dir), RUNS (3), SIZES ("256M 1G"), QUICK=1 (one 64M file),
# INC_RUNS (11: alternated runs, median, of the incremental rows),
# LAZY_RUNS (7) and S3_RUNS (5): runs of bench/lazy.sh and bench/s3.sh
# (a first access is one fault, and varies run to run: 0.6-3.4 ms),
# LAZY=0 (skip bench/lazy.sh), DISK_DIR (lazy.sh's disk runs: by default
# $B/bench-disk when the build dir is on a disk, not tmpfs, and the page
# cache can be dropped; DISK_DIR= for none), S3=0 (skip bench/s3.sh)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/paths.sh"
probe="$bdir/bench/memprobe"
dir=${BENCH_DIR:-/dev/shm/pgckpt-bench}
runs=${RUNS:-3}
inc_runs=${INC_RUNS:-11}
lazy_runs=${LAZY_RUNS:-7}
s3_runs=${S3_RUNS:-5}
out=${PERF_MD:-$top/docs/perf.md}

[ -x "$bin" ] || { echo "bench: $bin missing: run make" >&2; exit 2; }
[ -x "$mkmem" ] || { echo "bench: $mkmem missing: run make" >&2; exit 2; }
command -v zstd >/dev/null || { echo "bench: zstd missing (apt-get install zstd)" >&2; exit 2; }
rm -rf "$dir"; mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

now() { date +%s.%N; }
# best CMD...: best wall time of $runs runs; `pre` (a function name in PRE) runs untimed first
best() {
	local b=999999 t0 t1 t
	for _ in $(seq "$runs"); do
		[ -n "${PRE:-}" ] && $PRE
		sync; t0=$(now); "$@" >/dev/null; t1=$(now)
		t=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')
		b=$(awk -v a="$b" -v t="$t" 'BEGIN{print (t<a)?t:a}')
	done
	echo "$b"
}
# pair PRE_A CMD_A... -- PRE_B CMD_B...: run A and B alternately $inc_runs
# times (each after its untimed PRE, a function name) and print "medA medB":
# both see the same machine, and the median ignores a stray slow run.
pair() {
	local pa=$1 pb i t0 t1 a=() b=() ta=() tb=()
	shift
	while [ "$1" != -- ]; do a+=("$1"); shift; done
	shift; pb=$1; shift; b=("$@")
	for i in $(seq "$inc_runs"); do
		$pa; sync; t0=$(now); "${a[@]}" >/dev/null; t1=$(now)
		ta+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')")
		$pb; sync; t0=$(now); "${b[@]}" >/dev/null; t1=$(now)
		tb+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')")
	done
	echo "$(printf '%s\n' "${ta[@]}" | sort -n | sed -n "$(( (inc_runs + 1) / 2 ))p")" \
		"$(printf '%s\n' "${tb[@]}" | sort -n | sed -n "$(( (inc_runs + 1) / 2 ))p")"
}
div() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) print "n/a"; else printf "%.2f", a/b }'; }
dsize() { du -sb --apparent-size "$1" | cut -f1; }

# A real memory file: the heap of a running python3 that built a large dict
# (pointers, small ints, strings: what servers keep), read from /proc/PID/mem.
make_real() {
	python3 - "$1" <<'EOF'
import os, re, sys, subprocess
child = subprocess.Popen([sys.executable, '-c', '''
import sys, random
random.seed(7)
d = {f"user:{i}": {"id": i, "name": "n%d" % random.randrange(10**6), "tags": [random.randrange(100) for _ in range(8)]} for i in range(600000)}
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.read()
'''], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
child.stdout.readline()
with open(f'/proc/{child.pid}/maps') as m, open(f'/proc/{child.pid}/mem', 'rb') as mem, open(sys.argv[1], 'wb') as out:
    for line in m:
        f = line.split()
        if 'rw' not in f[1] or (len(f) > 5 and f[5].startswith('[v')):
            continue
        a, b = (int(x, 16) for x in f[0].split('-'))
        try:
            mem.seek(a); out.write(mem.read(b - a))
        except OSError:
            pass
    pad = (-out.tell()) % 4096
    out.write(bytes(pad))
child.stdin.close(); child.wait()
EOF
}

files=()
if [ "${QUICK:-0}" = 1 ]; then
	"$mkmem" "$dir/default-64M" 64M; files+=(default-64M)
else
	for s in ${SIZES:-256M 1G}; do
		"$mkmem" "$dir/default-$s" "$s"; files+=("default-$s")
	done
	"$mkmem" "$dir/mostly-zero-256M" 256M --holes 0.45 --zero 0.45 --random 0.02; files+=(mostly-zero-256M)
	"$mkmem" "$dir/mostly-random-256M" 256M --holes 0.05 --zero 0.05 --random 0.8; files+=(mostly-random-256M)
	make_real "$dir/python-heap"; files+=(python-heap)
fi

limit_json=""
rows=()
fail=0
for f in "${files[@]}"; do
	src="$dir/$f"
	size=$(stat -c %s "$src")
	img="$dir/img" raw="$dir/raw" tgt="$dir/target" z="$dir/z.zst"

	rm_img() { rm -rf "$img"; }
	rm_raw() { rm -rf "$raw"; }
	rm_tgt() { rm -f "$tgt"; }
	PRE=rm_img t_save=$(best "$bin" save -c zstd "$src" "$img")
	PRE= t_zstd=$(best zstd -1 -T0 -q -f "$src" -o "$z")
	s_img=$(dsize "$img"); s_zstd=$(dsize "$z")
	PRE=rm_tgt t_rest=$(best "$bin" restore "$img" "$tgt")
	cmp "$src" "$tgt" || { echo "bench: $f: zstd restore differs" >&2; fail=1; }
	PRE=rm_tgt t_unz=$(best zstd -d -q -f "$z" -o "$tgt")
	PRE=rm_raw t_rsave=$(best "$bin" save -c none "$src" "$raw")
	PRE=rm_tgt t_rrest=$(best "$bin" restore "$raw" "$tgt")
	cmp "$src" "$tgt" || { echo "bench: $f: raw restore differs" >&2; fail=1; }
	PRE=rm_tgt t_cp=$(best cp --sparse=always "$src" "$tgt")
	PRE=
	limit_json=$("$probe" "$src" --json --runs "$runs" --dir "$dir")
	t_lim=$(sed -n 's/.*"limit_s":\([0-9.]*\).*/\1/p' <<<"$limit_json")
	# The least any raw save + restore can take: two fresh files filled
	# with the data (pages.img, then the target) at one file's best rate.
	t_floor=$(sed -n 's/.*"file_fill_s":\([0-9.]*\).*/\1/p' <<<"$limit_json" | awk '{printf "%.4f", 2 * $1}')
	rows+=("| $f | $((size >> 20)) | $t_save | $t_zstd | $(div "$t_save" "$t_zstd") | $t_rest | $t_unz | $(div "$t_rest" "$t_unz") | $(awk -v a="$t_rsave" -v b="$t_rrest" 'BEGIN{printf "%.4f", a+b}') | $t_cp | $(div "$(awk -v a="$t_rsave" -v b="$t_rrest" 'BEGIN{print a+b}')" "$t_cp") | $(div "$t_rrest" "$t_cp") | $t_floor | $(div "$t_floor" "$t_cp") | $t_lim | $(div "$t_lim" "$t_rest") | $((s_img >> 10)) | $((s_zstd >> 10)) | $(div "$s_img" "$s_zstd") |")
	rm -rf "$img" "$raw" "$tgt" "$z"
	echo "bench: $f done" >&2
done

# pgckpt's own view of each file (pgckpt bench, in-process): eager load,
# and a background load from the consumer's side — time until pgc_load
# returns, until every page is in, random 4 KiB reads during the load;
# and its lazy restores for a consumer process (medians of the runs).
bg_rows=()
blz_rows=()
for f in "${files[@]}"; do
	json=$("$bin" bench --json --runs "$runs" "$dir/$f")
	bg_rows+=("$(python3 -c '
import json, sys
d = json.loads(sys.argv[2])
name = sys.argv[1]
print("| %s | %.1f | %.2f | %.1f | %d | %d | %.1f | %.1f | %.1f |" % (name, d["restore_s"] * 1e3, d["ready_ms"], d["all_s"] * 1e3, d["accesses"], d["waits"], d["p50_us"], d["p99_us"], d["max_us"]))
' "$f" "$json")")
	blz_rows+=("$(python3 -c '
import json, sys
d = json.loads(sys.argv[2])
name = sys.argv[1]
if "lazy_first_ms" not in d:
    print("| %s | (not measured) | | | | | | | |" % name)
else:
    w, ww = d["ws_without_ms"], d["ws_with_ms"]
    print("| %s | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f |" % (name, d["lazy_first_ms"], d["lazy_p50_us"], d["lazy_p99_us"] / 1e3, d["lazy_placed_ms"], d["lazy_all_ms"], w, ww, ww / w if w else 0))
' "$f" "$json")")
done
bg_table=$(printf '%s\n' "| file | eager load ms | background: ready ms | all loaded ms | reads | waited | p50 us | p99 us | max us |" "|---|---|---|---|---|---|---|---|---|" "${bg_rows[@]}")
echo "$bg_table"
blz_table=$(printf '%s\n' "| file | lazy first access ms | fault p50 us | fault p99 ms | all placed ms | all verified ms | WS touched ms, without | with | with / without |" "|---|---|---|---|---|---|---|---|---|" "${blz_rows[@]}")
echo "$blz_table"

# Incremental images: a 256 MiB dense heap (QUICK: 64 MiB), then 5% of
# its pages changed in runs of 1..16 pages, twice: save --parent against
# a full save of the same file (time, pages.img), and a restore of the
# chain of three against a restore of the flat image of the same memory.
mutate5() {
	python3 - "$1" "$2" "$3" <<'EOF'
import random, sys
src, dst, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
d = bytearray(open(src, 'rb').read())
n = len(d) // 4096
changed = 0
while changed < n // 20:
    p = rng.randrange(n)
    for q in range(p, min(n, p + rng.randint(1, 16))):
        off = q * 4096 + rng.randrange(0, 4096, 8)
        d[off:off + 8] = rng.randbytes(8)      # a heap page: a few words change
        changed += 1
open(dst, 'wb').write(d)
EOF
}
inc_size=256M
[ "${QUICK:-0}" = 1 ] && inc_size=64M
"$mkmem" "$dir/h0" "$inc_size" --holes 0 --zero 0 --random 0
mutate5 "$dir/h0" "$dir/h1" 1
mutate5 "$dir/h1" "$dir/h2" 2
"$bin" save "$dir/h0" "$dir/c0"
"$bin" save --parent "$dir/c0" "$dir/h1" "$dir/c1"
rm_full() { rm -rf "$dir/full"; }
rm_c2() { rm -rf "$dir/c2"; }
read -r t_full t_child < <(pair rm_full "$bin" save "$dir/h2" "$dir/full" -- \
	rm_c2 "$bin" save --parent "$dir/c1" "$dir/h2" "$dir/c2")
s_full=$(dsize "$dir/full/pages.img"); s_child=$(dsize "$dir/c2/pages.img")
rm_tgt() { rm -f "$dir/target"; }
read -r t_flat t_chain < <(pair rm_tgt "$bin" restore "$dir/full" "$dir/target" -- \
	rm_tgt "$bin" restore "$dir/c2" "$dir/target")
rm_tgt; "$bin" restore "$dir/full" "$dir/target"
cmp "$dir/h2" "$dir/target" || { echo "bench: flat restore differs" >&2; fail=1; }
rm_tgt; "$bin" restore "$dir/c2" "$dir/target"
cmp "$dir/h2" "$dir/target" || { echo "bench: chain restore differs" >&2; fail=1; }
inc_table=$(printf '%s\n' \
	"| dense heap | full save s | save --parent s | **time ratio** (target <= 0.4) | full pages.img KiB | child pages.img KiB | **size ratio** (target <= 0.12) | flat restore s | chain-of-3 restore s | **restore ratio** (target <= 1.2) |" \
	"|---|---|---|---|---|---|---|---|---|---|" \
	"| $inc_size | $t_full | $t_child | $(div "$t_child" "$t_full") | $((s_full >> 10)) | $((s_child >> 10)) | $(div "$s_child" "$s_full") | $t_flat | $t_chain | $(div "$t_chain" "$t_flat") |")
echo "$inc_table"
rm -rf "$dir"/h[012] "$dir"/c[012] "$dir/full" "$dir/target"

# Lazy restore for another process (bench/lazy.sh, $lazy_runs runs):
# first access, fault p50/p99, every page placed, and a fixed working set
# touched without and with a recorded one; on disk too if DISK_DIR is set.
# The disk rows are REAP's case (the image on disk, the page cache dropped
# before each run): DISK_DIR, by default a directory in the build dir when
# that is on a disk and /proc/sys/vm/drop_caches is writable.
lazy_table="(not run: LAZY=0)"
disk_note=""
if [ -z "${DISK_DIR+set}" ]; then
	if d=$("$top/bench/diskdir.sh" "$bdir"); then
		DISK_DIR=$d
	else
		disk_note=$d
	fi
elif [ -z "$DISK_DIR" ]; then
	disk_note="no disk rows: DISK_DIR is empty"
fi
if [ "${LAZY:-1}" != 0 ]; then
	lazy_size=256M
	[ "${QUICK:-0}" != 1 ] || lazy_size=64M
	[ -z "$disk_note" ] || echo "bench: lazy: $disk_note" >&2
	[ -z "${DISK_DIR:-}" ] || mkdir -p "$DISK_DIR"
	lazy_table=$(B=$B RUNS=$lazy_runs SIZE=$lazy_size BENCH_DIR="$dir/lazy" DISK_DIR="${DISK_DIR:-}" \
		"$top/bench/lazy.sh" | sed -n '/^| handler/,$p')
	echo "$lazy_table"
	[ -z "$disk_note" ] || lazy_table="$lazy_table

($disk_note.)"
fi

# Restores from S3 (bench/s3.sh starts and stops its own Ceph): eager
# against local, lazy first access and all placed.
s3_table="(not run: S3=0)"
if [ "${S3:-1}" != 0 ]; then
	s3_size=256M
	[ "${QUICK:-0}" != 1 ] || s3_size=64M
	set +e
	s3_out=$(B=$B RUNS=$s3_runs SIZE=$s3_size BENCH_DIR="$dir/s3" "$top/bench/s3.sh")
	s3_rc=$?
	set -e
	case $s3_rc in
	0) s3_table=$(sed -n '/^| restore/,$p' <<<"$s3_out") ;;
	77) s3_table="(not run: radosgw is not installed; ./deps.sh installs Ceph)" ;;
	*) s3_table="(bench/s3.sh failed: exit $s3_rc)"; fail=1 ;;
	esac
	echo "$s3_table"
fi

header="| file | MiB | save s | zstd -1 s | **save ratio** | restore s | zstd -d s | **restore ratio** | save+restore none s | cp s | **none ratio** | restore none / cp | none floor s | floor / cp | limit s | **restore vs limit** | image KiB | zstd KiB | **size ratio** |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
table=$(printf '%s\n' "$header" "${rows[@]}")
echo "$table"

if [ "$out" != "-" ]; then
	{
		cat <<EOF
# Performance

Measured by \`make bench\` (script: \`bench/run.sh\`) on this project's
machine kind: 2 cores, 24 GiB, Debian 12, kernel $(uname -r). Every file,
image and target lives on tmpfs (\`$dir\`), so the figures measure CPU
and memory rather than a disk. Each time is the best of $runs runs, wall
clock, of the whole command (process start to exit).

Inputs: \`bench/mkmem FILE SIZE\` (bench/mkmem.c) with the default mix (20%
holes, 20% written zeros, 15% random, 45% heap-like), a mostly-zero mix
(\`--holes 0.45 --zero 0.45 --random 0.02\`), a mostly-random mix
(\`--holes 0.05 --zero 0.05 --random 0.8\`), and \`python-heap\`: the
writable mappings of a real python3 process holding a 600,000-entry dict
of small records, read from \`/proc/PID/mem\`.

Baselines, each in the same run:
- **save**: \`pgckpt save -c zstd FILE IMG\` vs \`zstd -1 -T0 FILE\`
- **restore**: \`pgckpt restore IMG TARGET\` vs \`zstd -d FILE.zst -o TARGET\`
- **none**: \`pgckpt save -c none\` + \`pgckpt restore\` vs \`cp --sparse=always FILE TARGET\`
- **limit**: \`build/bench/memprobe FILE\`: fill a fresh memfd of the same size
  with the file's bytes, best of memcpy / populate+memcpy / fallocate+populate+memcpy,
  on one or two threads. "restore vs limit" is limit time / restore time
  (1.0 = at the limit; the aim is >= 0.8).
- **none floor**: twice \`memprobe\`'s one-file fill time: pwrite of the
  file's non-zero pages, from one cache-hot buffer, into a fresh file in
  the bench directory. Writes to one file are serialised by the host (two
  threads, or page faults through a mapping, fill one file no faster), and
  a raw save + restore must fill two (pages.img, then the target) where
  \`cp\` fills one: "floor / cp" is the lowest "none ratio" any
  implementation could reach here.
- **size**: image directory bytes vs \`zstd -1\` output bytes.

Ratios are pgckpt / baseline: below 1.0 pgckpt is faster or smaller.

$table

Machine limit probe for the last file: \`$limit_json\`

## What moved these figures

Found with \`perf record\` on restores and saves of the 256 MiB default mix:

- **Placing pages with pwrite(2), not through the mapping.** Decoding into
  the 1 GiB chunk mappings made \`MADV_POPULATE_WRITE\` (page-table work on
  top of the page allocation) and the final \`munmap\` ~58% of restore CPU.
  Decoding into a per-worker buffer and pwriting into the backing file lets
  the host allocate page-cache pages with no page tables: restore CPU
  -20..30%. (Files pwrite cannot fill, e.g. hugetlbfs, keep the mapping.)
- **No hand-offs in eager loads**: each worker reads (\`pread\`) and decodes
  its own blocks; the aio pool is only used by background loads.
- **Recycled buffers**: a fresh 256 KiB malloc per read was a fresh mmap,
  16k page faults per restore; compressed reads now reuse page-aligned
  buffers, at most 8 MiB in flight. Save recycles its window buffers too.
- **1 MiB blocks by default**: 256 KiB blocks made images 1.16x \`zstd -1\`
  on the default mix; 1 MiB gives 1.02x and -28% save CPU.
- **Writes to one file, one at a time.** A second thread writing to the
  same tmpfs file only spins on its inode lock (\`rwsem_spin_on_owner\`,
  14-20% of the CPU of a raw save or restore). The aio thread pool now runs
  writes to one file in order, one at a time, as io_uring does (save
  \`-c none\`: CPU -10%, wall -5%), and background loads pwrite one block
  at a time (CPU -20%; eager loads keep the kernel's faster hand-off, +3-5%
  wall time otherwise).

## Tried, measured, dropped

On the 256 MiB default mix, 10-12 alternating runs (medians):

- **Reading the source with pread into recycled 4 MiB buffers** instead of
  populating the memory file's mapping (no page tables to fill and tear
  down): \`save -c none\` 127 ms vs 113 ms, CPU 191 vs 142 ms; mostly-zero
  48 vs 39 ms. The buffers are fresh memory, and fresh memory is what
  costs on this VM.
- **Eager loads placing one block at a time** (a user-space lock round
  the pwrite, plus one more worker to use the freed core): CPU -20%, wall
  +3-5% (raw 99 vs 97 ms, zstd 127 vs 117 ms): the kernel's spinning
  hands the inode lock over faster than a futex wake-up.
- **Lower priority for save's encoders** (nice 5 and 19, so the writer
  wins the core): no change.
- **Fewer aio threads for save** (1, 2, 8), libaio, io_uring: within noise
  once writes to one file are serialised.

## Why raw save + restore cannot beat one cp here

Filling a fresh file is the cost: page allocation, memcg charge, page
cache insertion, then the copy. Measured on this machine with 620 MiB
(\`/tmp\` microbenchmarks, best of 3): one thread pwriting a cache-hot
buffer fills one tmpfs file at 2.2-2.3 GB/s; two threads writing halves
of the *same* file, 2.1-2.3 GB/s; two threads populating and copying
through a shared mapping, 2.0-2.4 GB/s; fallocate (0.19 s) and then
pwrite (0.11 s), no faster than pwrite alone (0.28 s); one thread filling
while another copies into the already-allocated part through a mapping,
1.4-2.5 GB/s. Two threads writing two *different* files: 4.2 GB/s. So one
file fills at one thread's rate whatever the method, and SPEC §4 keeps
the pages in one \`pages.img\`.

\`cp\` fills one file (the target); a raw save fills \`pages.img\` and the
restore fills the target: at least twice the one-file fill time. The
"none floor" column measures that in the same run (\`memprobe\`: the
file's data bytes pwritten from a hot buffer into a fresh file, times
two), and "floor / cp" is the lowest "none ratio" any tool could reach.
It is above 1.0 for the 1 GiB, mostly-random and python-heap files: no
raw save + restore can beat \`cp\` there. For the 256 MiB default and
mostly-zero files it is below 1.0 but close to it in most runs: both
steps would have to run at the bare fill rate, with nothing else on the
critical path (process start, the SEEK_DATA walk, reading zero pages,
checksums). Each step alone is near or below one \`cp\` (the "restore
none / cp" column); the save takes about 1.5-2x its floor, the restore
about 1.3x.

Restores of compressed images are CPU-bound where decoding is heavy:
python-heap (7x compression) uses ~0.43 s of CPU for a 0.22 s restore
on two cores (zstd decoding 43%, filling the page cache 54%), which
caps "restore vs limit" there; the limit probe decodes nothing.

## Incremental images

A dense heap (\`mkmem --holes 0 --zero 0 --random 0\`), then 5% of its
pages changed (a few words each) in runs of 1..16 pages, twice:
\`c0\` full, \`c1\` against \`c0\`, \`c2\` against \`c1\`. Compared:
\`save --parent c1\` against a full save of the same file, their
pages.img, and a restore of the chain of three (\`c2\`) against a
restore of the full image. Each pair runs alternately $inc_runs times
(so both meet the same machine) and each time is the median, not the
best: a chain's ratio taken from two best-of-3 figures swung between
1.1 and 1.4 on a shared machine.

$inc_table

Both saves read and hash every page (XXH3-64 per page, the hashes every
image records); the child then compresses and writes only the changed
pages. The chain restore reads each block from the image that stores it:
the same number of pages, spread over three pages.img files. It decodes
about 10% more than the flat restore (an ancestor's block is one zstd
frame, decoded whole even where a newer image replaced some of its
pages) and writes an ancestor's block in pieces around the newer pages,
one block at a time; that extra decoding is most of its extra time.

## Background loads

\`pgckpt bench --json --runs $runs FILE\` for each file, in the same run
(in-process, so no process start or exit is counted): an eager
\`pgc_load\`, then a background one: the time until \`pgc_load\` returns
(the consumer may run), until every page is in, and the latency of random
4 KiB \`pgc_map_internal\` + read accesses made one after another while
the load runs ("waited" of them had to wait for their block; the others
found it loaded). A waiting access decodes its block itself, only as far
as its page, and the fill's decode workers run in the idle class,
SCHED_IDLE (\`\$PGCKPT_FILL_NICE\`; docs/design.md, "Waiting"); the accessing thread
spins through its accesses, so "all loaded" is the fill on what CPU that
thread leaves.

$bg_table

The same \`pgckpt bench\` runs restore each file lazily for a consumer
process it forks (medians of the runs): the first touch after the
handoff, p50 / p99 of \`--accesses\` random first touches, the server's
time to every page placed and the consumer's to every page compared with
the file; then 400 random pages of the last 24 MiB (a quarter of smaller
files) touched without a working set and with one recorded by an earlier
session. Unlike bench/lazy.sh's, this consumer attaches the moment
\`pgc_load\` returns: the fill has no head start (the working set's
blocks are not loaded yet when it asks).

$blz_table

## Lazy restore

\`bench/lazy.sh\` (docs/lazy.md has the method), $lazy_runs runs, median
(worst): a fresh \`pgckpt restore --background --listen\` per run, and
\`examples/lazy_consumer\` attached as soon as the socket appears, while the
image still loads. "all placed" is the server's (handoff to every page
placed); "working set touched" is the time until the consumer has touched
400 random pages of the last 24 MiB, the end the fill reaches last (fixed
seed), without (hot) and with
(hot+ws) a working set recorded by an earlier server (hot and hot+ws run
3 x $lazy_runs times, in pairs). The disk- rows (REAP's case) read the image
from a directory on a disk (\`DISK_DIR\`, by default \`$B/bench-disk\` when
the build directory is on a disk and the page cache can be dropped; else
the rows are left out and the reason printed), the page cache dropped
before each run.

$lazy_table

## Images on S3

\`bench/s3.sh\` (docs/s3.md has the method): a single-node Ceph radosgw on
loopback, started by the script (tests/s3/ceph.sh), sharing this machine's
two cores with pgckpt. The same memory file (the default mix) is saved once
to a directory and once to \`s3://pgckpt-bench/\`; "eager" is the best of
$s3_runs runs of \`pgckpt restore\` from each (target: s3 / local <= 2); the
lazy row is a fresh \`pgckpt restore --background --listen s3://...\` per
run with \`examples/lazy_consumer\` attached ($s3_runs runs, median (worst);
target: first access <= 10 ms).

The ratio is bounded by this machine: radosgw and its OSD run on the same
two cores as pgckpt, and a restore from S3 spends the CPU a local restore
spends (the received bytes replace the pread) plus the server's (about
0.07 s to serve the zstd image's 51 MB; 0.23 s for the raw image's 256
MiB). The raw row cannot reach 2x here: "one GET of pages.img" (curl to
/dev/null, nothing decoded) is the server's floor and is already 2.5-3x
the local raw restore, which is a copy from page cache; a compressed image
moves 5x fewer bytes through the server (docs/s3.md, "Where an eager
restore's time goes" and "Raw images").

$s3_table
EOF
	} >"$out"
	echo "bench: wrote $out" >&2
fi
exit "$fail"
