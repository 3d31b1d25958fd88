#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# hugetlbfs.bats - memory files on hugetlbfs, where pwrite(2) does not work
# and pages come only from the huge page pool: restore into it and save
# from it byte for byte, a memory file that is not a whole number of huge
# pages (the file is rounded up, with a note), and a pool too small gives
# a clean "No space left on device" (never SIGBUS). Needs root: it raises vm.nr_hugepages for the
# test and puts it back; skipped where that or the mount is not possible.

load helpers

setup() {
	common_setup
	[ "$(id -u)" -eq 0 ] || skip "needs root for vm.nr_hugepages"
	grep -qw hugetlbfs /proc/filesystems || skip "no hugetlbfs in this kernel"
	OLD_HP=$(cat /proc/sys/vm/nr_hugepages)
	echo $((OLD_HP + 64)) >/proc/sys/vm/nr_hugepages 2>/dev/null || skip "cannot raise vm.nr_hugepages"
	free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
	[ "$free" -ge 48 ] || skip "only $free free huge pages"
	mkdir -p huge small
	mount -t hugetlbfs none huge 2>/dev/null || skip "cannot mount hugetlbfs"
	mount -t hugetlbfs -o size=8M none small 2>/dev/null || skip "cannot mount hugetlbfs"
}

teardown() {
	rm -f huge/* small/* 2>/dev/null
	umount huge small 2>/dev/null
	[ -z "${OLD_HP:-}" ] || echo "$OLD_HP" >/proc/sys/vm/nr_hugepages
	common_teardown
}

@test "restore into hugetlbfs and save from it, byte for byte (zstd and raw)" {
	mkmem mem 24M
	pgckpt save mem img
	pgckpt save -c none mem raw
	for i in img raw; do
		pgckpt restore "$i" huge/out
		cmp mem huge/out
		pgckpt save huge/out again
		pgckpt restore again back
		cmp mem back
		rm -rf huge/out again back
	done
}

@test "a size that is not whole huge pages: rounded up with a note, bytes intact" {
	head -c 1234567 /dev/urandom >odd
	pgckpt save odd img
	run pgckpt restore img huge/out
	assert_success
	assert_output --partial "huge/out: note: the file system takes whole huge pages only: 2097152 bytes, of which the memory file is the first 1234567"
	[ "$(stat -c %s huge/out)" = 2097152 ]
	cmp -n 1234567 odd huge/out
	cmp -i 1234567:0 -n 862585 huge/out /dev/zero
	# Saved from hugetlbfs and restored elsewhere: the whole 2 MiB file.
	pgckpt save huge/out again
	pgckpt restore again back
	cmp huge/out back
}

@test "a huge page pool too small: exit 2, no space, no target" {
	mkmem big 24M --holes 0 --zero 0 --random 1 --seed 7
	pgckpt save big img
	run pgckpt restore img small/out
	assert_failure 2
	assert_output --partial "No space left on device"
	assert_no_target small/out
}
