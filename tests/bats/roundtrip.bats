#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# roundtrip.bats - `pgckpt save` then `pgckpt restore` gives back the memory
# file byte for byte: zstd and raw images, several block sizes and levels,
# sparse files (holes stay holes), empty files, sizes that are not a page
# multiple, and each kind of source: a plain file, a live process's memfd
# (/proc/PID/fd/N) and its shared mapping (/proc/PID/map_files/START-END).

load helpers

@test "round trip, zstd default" {
	mkmem mem 16M
	run pgckpt save mem img
	assert_success
	assert_output ""
	run pgckpt restore img out
	assert_success
	assert_output ""
	cmp mem out
	[ "$(json_field img compression)" = zstd ]
	[ "$(json_field img level)" = 1 ]
}

@test "round trip, -c none" {
	mkmem mem 8M --seed 2
	run pgckpt save -c none mem img
	assert_success
	[ "$(json_field img compression)" = none ]
	[ "$(json_field img level)" = None ]
	run pgckpt restore img out
	assert_success
	cmp mem out
}

@test "round trip, -c none restored with --direct" {
	mkmem mem 8M --seed 3
	pgckpt save -c none mem img
	run pgckpt restore --direct img out
	assert_success
	cmp mem out
}

@test "round trip, zstd levels and long options" {
	mkmem mem 4M --seed 4
	for c in zstd:3 zstd:19; do
		run pgckpt save --compress "$c" mem "img-$c"
		assert_success
		[ "$(json_field "img-$c" level)" = "${c#zstd:}" ]
		pgckpt restore "img-$c" "out-$c"
		cmp mem "out-$c"
	done
}

@test "round trip, block sizes 4K 64K 1M 4M" {
	mkmem mem 8M --seed 5
	for bs in 4K 64K 1M 4M; do
		run pgckpt save --block-size "$bs" -c zstd mem "img-$bs"
		assert_success
		pgckpt restore "img-$bs" "out-$bs"
		cmp mem "out-$bs"
		pgckpt save --block-size "$bs" -c none mem "raw-$bs"
		pgckpt restore "raw-$bs" "rout-$bs"
		cmp mem "rout-$bs"
	done
	[ "$(json_field img-64K block_size)" = 65536 ]
	[ "$(json_field img-4M block_size)" = 4194304 ]
}

@test "round trip, -j and every aio backend" {
	mkmem mem 8M --seed 6
	for aio in auto threads libaio uring; do
		run pgckpt save -j 1 --aio "$aio" mem "img-$aio"
		assert_success
		run pgckpt restore -j 2 --aio "$aio" "img-$aio" "out-$aio"
		assert_success
		cmp mem "out-$aio"
	done
}

@test "sparse file: holes stay holes, zero pages are not stored" {
	mkmem mem 16M --holes 0.5 --zero 0.2 --seed 8
	pgckpt save mem img
	pgckpt restore img out
	cmp mem out
	mem_bytes=$(json_field img mem_bytes)
	file_size=$(json_field img file_size)
	[ "$file_size" -eq $((16 << 20)) ]
	# Written zero pages of the source are not stored ...
	[ "$mem_bytes" -lt "$(allocated_bytes mem)" ]
	# ... and the restored file stores no more than the non-zero pages.
	[ "$(allocated_bytes out)" -le $((mem_bytes + 256 * 1024)) ]
	# It has holes where the source had holes or zeroes.
	[ "$(data_extents out | wc -l)" -gt 1 ]
}

@test "a file made only of holes restores as one hole" {
	truncate -s 8M mem
	pgckpt save mem img
	[ "$(json_field img mem_bytes)" -eq 0 ]
	pgckpt restore img out
	cmp mem out
	[ "$(stat -c %s out)" -eq $((8 << 20)) ]
	[ "$(allocated_bytes out)" -eq 0 ]
}

@test "an empty file" {
	: >mem
	run pgckpt save mem img
	assert_success
	[ "$(json_field img file_size)" -eq 0 ]
	run pgckpt restore img out
	assert_success
	[ -f out ]
	[ "$(stat -c %s out)" -eq 0 ]
	run pgckpt verify img
	assert_success
}

@test "a size that is not a page multiple" {
	mkmem mem 1M --holes 0 --seed 9
	head -c 12345 /dev/urandom >>mem
	size=$(stat -c %s mem)
	[ $((size % 4096)) -ne 0 ]
	pgckpt save mem img
	[ "$(json_field img file_size)" -eq "$size" ]
	pgckpt restore img out
	[ "$(stat -c %s out)" -eq "$size" ]
	cmp mem out
	head -c 100 /dev/urandom >tiny
	pgckpt save -c none tiny img2
	pgckpt restore img2 out2
	cmp tiny out2
}

@test "a tmpfs file in /dev/shm" {
	[ -d /dev/shm ] && [ -w /dev/shm ] || skip "no writable /dev/shm"
	shm=$(mktemp /dev/shm/pgckpt-bats.XXXXXX)
	mkmem "$shm" 8M --seed 10
	run pgckpt save "$shm" img
	rm -f "$shm.out"
	pgckpt restore img "$shm.out"
	run cmp "$shm" "$shm.out"
	rm -f "$shm" "$shm.out"
	assert_success
}

@test "a live process's memfd through /proc/PID/fd/N" {
	start_memfd_holder $((3 << 20)) expected
	run pgckpt save "/proc/$MEMFD_PID/fd/$MEMFD_FD" img
	assert_success
	pgckpt restore img out
	cmp expected out
}

@test "a live process's shared mapping through /proc/PID/map_files" {
	start_memfd_holder $((2 << 20)) expected
	[ -e "$MEMFD_MAP" ] || skip "no map_files entry (needs CAP_SYS_ADMIN)"
	run pgckpt save "$MEMFD_MAP" img
	assert_success
	pgckpt restore img out
	cmp expected out
}

@test "restore refuses an existing TARGET unless --force" {
	mkmem mem 4M --seed 11
	pgckpt save mem img
	echo precious >out
	run pgckpt restore img out
	assert_failure 2
	assert_output "pgckpt: restore: out: already exists (use --force to replace it)"
	[ "$(cat out)" = precious ]
	run pgckpt restore --force img out
	assert_success
	cmp mem out
	assert_no_target out.tmp
}

@test "save over an existing image replaces it whole" {
	mkmem a 4M --seed 12
	mkmem b 8M --seed 13
	pgckpt save a img
	run pgckpt save b img
	assert_success
	[ "$(json_field img file_size)" -eq $((8 << 20)) ]
	pgckpt verify img
	pgckpt restore img out
	cmp b out
	run ls -d img.tmp-*
	assert_failure
}

@test "save interrupted by SIGTERM leaves the old image and no temporary" {
	mkmem a 4M --seed 14
	mkmem big 32M --holes 0 --zero 0 --random 0 --seed 15
	pgckpt save a img
	interrupt_save TERM img
	[ "$SAVE_RC" -eq 143 ]
	grep -q "interrupted" err
	run ls -d img.tmp-*
	assert_failure
	pgckpt verify img
	pgckpt restore img out
	cmp a out
}

@test "stdout and stderr stay quiet when stderr is not a terminal" {
	mkmem mem 4M --seed 16
	pgckpt save mem img 2>err
	pgckpt restore img out 2>>err
	pgckpt verify img >/dev/null 2>>err
	[ ! -s err ]
}

@test "a progress bar is drawn on a terminal" {
	command -v script >/dev/null || skip "script(1) not installed"
	mkmem mem 8M --seed 17
	script -qec "'$PGCKPT' save mem img" /dev/null >tty.log
	grep -q "save \[" tty.log
	grep -q "100%" tty.log
	pgckpt restore img out
	cmp mem out
}
