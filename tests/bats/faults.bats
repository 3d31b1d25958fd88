#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# faults.bats - how pgckpt fails when the world does: a full file system
# (a small tmpfs mounted here; skipped where mounting is not permitted),
# SIGKILL and SIGINT in the middle of a save, truncated and extended image
# files. What is checked is what docs/failure.md promises: the exit
# status, no image (or target) appearing under its final name, an existing
# image left whole. After SIGKILL an IMAGE.tmp-* directory may remain (no
# code runs to remove it); it never hides or damages the image, and the
# next save works.

load helpers

teardown() {
	common_teardown
	if [ -n "${FS:-}" ]; then
		umount "$FS" 2>/dev/null || umount -l "$FS" 2>/dev/null || true
	fi
}

# mount_small_tmpfs DIR SIZE: mount a tmpfs of SIZE on DIR, or skip.
mount_small_tmpfs() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2" tmpfs "$1" 2>/dev/null || skip "cannot mount a tmpfs here"
	FS=$1
}

# fill_fs DIR KIB: fill DIR's file system until at most KIB KiB are free.
fill_fs() {
	local avail
	avail=$(df -k --output=avail "$1" | tail -n 1)
	if [ "$avail" -gt "$2" ]; then
		head -c $(((avail - $2) * 1024)) /dev/zero >"$1/filler" || true
	fi
}

@test "save onto a nearly full tmpfs exits 2 naming the lack of space; the old image is untouched" {
	mount_small_tmpfs fs 4M
	mkmem a 256K --seed 40
	mkmem big 8M --holes 0 --zero 0 --random 1 --seed 41
	pgckpt save a fs/img
	cp -r fs/img before
	fill_fs fs 512
	# Over the existing image.
	run pgckpt save -c none big fs/img
	assert_failure 2
	assert_output --partial "No space left on device"
	run ls -d fs/img.tmp-*
	assert_failure
	diff -r before fs/img
	pgckpt restore fs/img out
	cmp a out
	# Under a new name.
	run pgckpt save -c none big fs/new
	assert_failure 2
	assert_output --partial "No space left on device"
	assert_no_target fs/new
	# Compressed: the same, only later.
	run pgckpt save big fs/new
	assert_failure 2
	assert_output --partial "No space left on device"
	assert_no_target fs/new
}

@test "restore onto a full tmpfs exits 2 and leaves no target" {
	mount_small_tmpfs fs 4M
	mkmem big 8M --holes 0 --zero 0 --random 1 --seed 42
	pgckpt save big img
	pgckpt save -c none big raw
	run pgckpt restore img fs/out
	assert_failure 2
	assert_output --partial "No space left on device"
	assert_no_target fs/out
	# The mapping placement path (files pwrite cannot fill, e.g.
	# hugetlbfs): MADV_POPULATE_WRITE's failure is an error, never SIGBUS.
	for i in img raw; do
		PGCKPT_LOADER_NO_PWRITE=1 run pgckpt restore "$i" fs/out
		assert_failure 2
		assert_output --partial "No space left on device"
		assert_no_target fs/out
	done
}

@test "SIGKILL during a save over an image: the image restores whole, the next save works" {
	mkmem a 4M --seed 43
	mkmem big 32M --holes 0 --zero 0 --random 0 --seed 44
	pgckpt save a img
	for delay in 0.05 0.2 0.5 1; do
		"$PGCKPT" save -j 1 -c zstd:19 big img 2>/dev/null 3>&- &
		pid=$!
		BG_PIDS+=($pid)
		sleep "$delay"
		kill -KILL "$pid" 2>/dev/null || true
		rc=0
		wait "$pid" || rc=$?
		[ "$rc" -eq 0 ] || [ "$rc" -eq 137 ]
		# Killed before the rename: the old image; after it: the new one. Never a mix.
		pgckpt verify img
		rm -f out
		pgckpt restore img out
		cmp a out || cmp big out
		if cmp -s big out; then
			pgckpt save a img
		fi
	done
	# Leftover temporaries (allowed after SIGKILL) do not get in the way.
	pgckpt save a img
	rm -f out
	pgckpt restore img out
	cmp a out
}

@test "SIGINT during a save removes the temporary; the old image stays" {
	mkmem a 4M --seed 45
	mkmem big 32M --holes 0 --zero 0 --random 0 --seed 46
	pgckpt save a img
	for target in img new; do
		interrupt_save INT "$target"
		[ "$SAVE_RC" -eq 130 ]
		grep -q "interrupted" err
		run ls -d "$target".tmp-*
		assert_failure
	done
	assert_no_target new
	pgckpt verify img
	pgckpt restore img out
	cmp a out
}

@test "pages.img truncated anywhere, extended or missing exits 3" {
	mkmem mem 4M --holes 0.1 --zero 0.1 --random 0.3 --seed 47
	for c in zstd none; do
		rm -rf img
		pgckpt save -c "$c" --block-size 64K mem img
		size=$(stat -c %s img/pages.img)
		for len in 0 1 4096 65536 $((size / 2)) $((size - 1)); do
			[ "$len" -lt "$size" ] || continue
			rm -rf bad
			cp -r img bad
			truncate -s "$len" bad/pages.img
			run pgckpt verify bad
			assert_failure 3
			run pgckpt restore bad out
			assert_failure 3
			assert_no_target out
		done
		rm -rf bad
		cp -r img bad
		printf 'x' >>bad/pages.img
		run pgckpt restore bad out
		assert_failure 3
		assert_no_target out
		rm bad/pages.img
		run pgckpt restore bad out
		assert_failure 3
		assert_no_target out
	done
}

@test "memfile.img truncated at every record boundary exits 3" {
	mkmem mem 4M --holes 0.1 --zero 0.1 --random 0.3 --seed 48
	pgckpt save --block-size 4K mem img
	size=$(stat -c %s img/memfile.img)
	for len in 4 8 12 20 40 $((size - 13)) $((size - 12)) $((size - 8)); do
		rm -rf bad
		cp -r img bad
		truncate -s "$len" bad/memfile.img
		run pgckpt restore bad out
		assert_failure 3
		assert_no_target out
	done
}

@test "bench with a full --dir names --dir, not the file" {
	mkmem mem 8M --random 0.5 --seed 49
	mount_small_tmpfs fs 1M
	run pgckpt bench --runs 1 --dir fs mem
	assert_failure 2
	assert_output "pgckpt: bench: --dir fs: No space left on device"
	[ -z "$(ls fs)" ]
}

@test "a source that shrinks during the save exits 2 with a message and leaves no temporary" {
	mount_small_tmpfs fs 600M
	# A large dense file: zstd:19 on one thread leaves time to cut it.
	head -c 512M /dev/urandom >fs/g1 || skip "no room for the source"
	"$PGCKPT" save -j 1 -c zstd:3 fs/g1 img 2>err 3>&- &
	pid=$!
	BG_PIDS+=($pid)
	sleep 0.3
	truncate -s 4096 fs/g1
	rc=0
	wait "$pid" || rc=$?
	[ "$rc" -ne 0 ] || skip "the save finished before the truncation"
	[ "$rc" -eq 2 ] || { cat err; fail "save exited $rc"; }
	run cat err
	assert_output "pgckpt: save: fs/g1: the file shrank during the save (from 536870912 to 4096 bytes); no image written"
	assert_no_target img
}
