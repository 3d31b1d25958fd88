# SPDX-License-Identifier: Apache-2.0
#
# helpers.bash - shared set-up for the bats end-to-end tests of the pgckpt
# command. The runner sets PGCKPT_BUILD to the build directory; the binary
# is $PGCKPT_BUILD/pgckpt. Every test runs in its own empty directory
# (BATS_TEST_TMPDIR); memory files come from the project's generator,
# $PGCKPT_BUILD/bench/mkmem (bench/mkmem.c), kept small so the whole suite
# runs in seconds.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

PGCKPT_BUILD=${PGCKPT_BUILD:-$BATS_TEST_DIRNAME/../../build}
PGCKPT="$PGCKPT_BUILD/pgckpt"
MKMEM="$PGCKPT_BUILD/bench/mkmem"

common_setup() {
	[ -x "$PGCKPT" ] || fail "pgckpt not built: $PGCKPT (set PGCKPT_BUILD)"
	cd "$BATS_TEST_TMPDIR" || fail "no test directory"
	BG_PIDS=()
}

common_teardown() {
	local pid
	for pid in "${BG_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
}

setup() {
	common_setup
}

teardown() {
	common_teardown
}

pgckpt() {
	"$PGCKPT" "$@"
}

# mkmem PATH SIZE [mkmem options]
mkmem() {
	[ -x "$MKMEM" ] || fail "mkmem not built: $MKMEM (run make)"
	"$MKMEM" "$@"
}

# Bytes the file system stores for PATH.
allocated_bytes() {
	echo $(($(stat -c %b "$1") * $(stat -c %B "$1")))
}

# The data extents of PATH as "start-end" lines (SEEK_DATA / SEEK_HOLE).
data_extents() {
	python3 - "$1" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
off = 0
while off < size:
    try:
        start = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    end = os.lseek(fd, start, os.SEEK_HOLE)
    print(f"{start}-{end}")
    off = end
EOF
}

# flip_byte PATH OFFSET: invert every bit of one byte in place.
flip_byte() {
	python3 - "$1" "$2" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2])
b = os.pread(fd, 1, off)
os.pwrite(fd, bytes([b[0] ^ 0xff]), off)
EOF
}

# One field of `pgckpt inspect --json IMAGE`.
json_field() {
	pgckpt inspect --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# Assert that nothing named NAME or NAME.tmp-* exists.
assert_no_target() {
	local f
	[ ! -e "$1" ] || fail "$1 exists"
	for f in "$1".tmp-*; do
		[ ! -e "$f" ] || fail "temporary $f left behind"
	done
}

# Start a background process holding a memfd of SIZE bytes of pattern data
# (also written to EXPECTED), mapped shared. Sets MEMFD_PID, MEMFD_FD and
# MEMFD_MAP (its /proc/PID/map_files/START-END entry).
start_memfd_holder() {
	local size=$1 expected=$2 ready="$BATS_TEST_TMPDIR/memfd.ready"
	rm -f "$ready"
	python3 - "$size" "$expected" "$ready" 3>&- <<'EOF' &
import mmap, os, random, sys, time
size, expected, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = random.Random(7)
fd = os.memfd_create("pgckpt-bats")
os.ftruncate(fd, size)
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
data = bytearray(size)
# Pages of text, random bytes and zeroes, with holes left untouched.
for p in range(0, size, 4096):
    k = p // 4096 % 4
    n = min(4096, size - p)
    if k == 0:
        data[p:p + n] = (b"memfd page %08d " % (p // 4096) * 256)[:n]
    elif k == 1:
        data[p:p + n] = rng.randbytes(n)
m[:] = bytes(data)
with open(expected, "wb") as f:
    f.write(data)
start = end = None
with open(f"/proc/{os.getpid()}/maps") as f:
    for line in f:
        if "memfd:pgckpt-bats" in line:
            start, end = line.split()[0].split("-")
            break
with open(ready + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {fd} {start}-{end}\n")
os.rename(ready + ".tmp", ready)
time.sleep(120)
EOF
	BG_PIDS+=($!)
	local i
	for i in $(seq 100); do
		[ -f "$ready" ] && break
		sleep 0.1
	done
	[ -f "$ready" ] || fail "memfd holder did not start"
	read -r MEMFD_PID MEMFD_FD range <"$ready"
	MEMFD_MAP="/proc/$MEMFD_PID/map_files/$range"
}

# interrupt_save SIGNAL TARGET: a slow save of ./big into TARGET, sent
# SIGNAL after 0.5 s, its stderr in ./err; sets SAVE_RC (128 + N when
# interrupted) and skips the test if the save beat the signal.
interrupt_save() {
	local pid
	"$PGCKPT" save -j 1 -c zstd:19 big "$2" 2>err 3>&- &
	pid=$!
	BG_PIDS+=($pid)
	sleep 0.5
	kill -"$1" "$pid"
	SAVE_RC=0
	wait "$pid" || SAVE_RC=$?
	[ "$SAVE_RC" -ne 0 ] || skip "save finished before the signal"
}
