#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# mkmem.bats - the project's memory-file generator ($PGCKPT_BUILD/bench/mkmem,
# bench/mkmem.c) that the demo, these tests and the benchmarks use: sizes,
# determinism, each kind of run alone, the default mix, bad arguments.

load helpers

@test "mkmem: SIZE with K/M/G, whole pages, the same bytes for the same seed" {
	mkmem a 3M
	[ "$(stat -c %s a)" = 3145728 ]
	mkmem b 3M
	cmp a b
	mkmem c 3M --seed 2
	! cmp -s a c
	mkmem d 10000
	[ "$(stat -c %s d)" = 8192 ]
	mkmem e 1G --holes 1
	[ "$(stat -c %s e)" = 1073741824 ]
	[ "$(allocated_bytes e)" = 0 ]
	[ -z "$(ls -A | grep tmp-)" ]
}

@test "mkmem: each kind of run alone" {
	mkmem holes 4M --holes 1
	[ "$(allocated_bytes holes)" = 0 ]
	mkmem zeros 4M --holes 0 --zero 1
	cmp zeros <(head -c 4194304 /dev/zero)
	[ "$(allocated_bytes zeros)" -ge 4194304 ]
	mkmem random 4M --holes 0 --zero 0 --random 1
	zstd -q -1 random -o random.zst
	[ "$(stat -c %s random.zst)" -gt 4100000 ]
	mkmem heap 4M --holes 0 --zero 0 --random 0
	zstd -q -1 heap -o heap.zst
	[ "$(stat -c %s heap.zst)" -lt 2000000 ]
	# Heap-like pages end with their page number.
	[ "$(od -An -tu8 -j $((4096 * 7 + 4088)) -N 8 heap | tr -d ' ')" = 7 ]
}

@test "mkmem: the default mix has holes, zeros, random and heap-like pages" {
	mkmem mem 64M
	python3 - <<'EOF2'
import os
fd = os.open("mem", os.O_RDONLY)
size = os.fstat(fd).st_size
kinds = {"hole": 0, "zero": 0, "other": 0}
off = 0
while off < size:
    try:
        data = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        data = size
    kinds["hole"] += (data - off) // 4096
    if data == size:
        break
    end = os.lseek(fd, data, os.SEEK_HOLE)
    for p in range(data, end, 4096):
        page = os.pread(fd, 4096, p)
        kinds["zero" if page.count(0) == 4096 else "other"] += 1
    off = end
n = size // 4096
assert 0.10 < kinds["hole"] / n < 0.30, kinds
assert 0.10 < kinds["zero"] / n < 0.30, kinds
assert 0.45 < kinds["other"] / n < 0.75, kinds
EOF2
}

@test "mkmem: bad arguments exit 1, a bad path exits 2" {
	run "$MKMEM" mem
	assert_failure 1
	run "$MKMEM" mem 1X
	assert_failure 1
	assert_output --partial "bad size '1X'"
	run "$MKMEM" --holes 1.5 mem 1M
	assert_failure 1
	run "$MKMEM" --seed -1 mem 1M
	assert_failure 1
	run "$MKMEM" nosuchdir/mem 1M
	assert_failure 2
	assert_output --partial 'nosuchdir/mem'
	[ ! -e mem ]
}
