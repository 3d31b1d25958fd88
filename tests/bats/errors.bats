#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# errors.bats - bad inputs and their exact exit statuses and messages:
# usage errors (1), missing or unusable files (2), damaged, truncated,
# foreign and newer-version images (3). A failed restore never leaves a
# TARGET (or its temporary) behind; save never replaces what is not an
# image.

load helpers

# A small image "img" of the memory file "mem".
make_image() {
	mkmem mem 4M --holes 0.1 --zero 0.1 --random 0.1 --seed 30
	pgckpt save "$@" mem img
}

@test "usage errors exit 1" {
	run pgckpt
	assert_failure 1
	assert_line --index 0 "pgckpt: no command given"
	run pgckpt frobnicate
	assert_failure 1
	assert_line --index 0 "pgckpt: unknown command 'frobnicate'"
	run pgckpt --frob
	assert_failure 1
	run pgckpt save only-one-arg
	assert_failure 1
	assert_line --index 0 "pgckpt: save: expected SOURCE and IMAGE"
	assert_line --index 1 "Try 'pgckpt save --help' for more information."
	run pgckpt save --bogus a b
	assert_failure 1
	assert_line --index 0 "pgckpt: save: unknown option '--bogus'"
	run pgckpt save -c
	assert_failure 1
	assert_line --index 0 "pgckpt: save: option '-c' needs an argument"
	run pgckpt restore img
	assert_failure 1
	run pgckpt restore a b c
	assert_failure 1
	run pgckpt inspect
	assert_failure 1
	run pgckpt inspect --yaml img
	assert_failure 1
	run pgckpt verify
	assert_failure 1
	run pgckpt export img dir
	assert_failure 1
	assert_line --index 0 "pgckpt: export: a format is required: --criu"
}

@test "bad option values exit 1" {
	: >mem
	for c in zstd:0 zstd:20 zstd: zstd:x lz4 zstdx; do
		run pgckpt save -c "$c" mem img
		assert_failure 1
		assert_line --index 0 "pgckpt: save: bad compression '$c' (zstd, zstd:1..19 or none)"
	done
	for bs in 0 1000 6K 8M 1X -4K; do
		run pgckpt save --block-size "$bs" mem img
		assert_failure 1
		assert_line --index 0 --partial "pgckpt: save: bad block size '$bs'"
	done
	for j in 0 -1 x 1x; do
		run pgckpt save -j "$j" mem img
		assert_failure 1
		run pgckpt restore -j "$j" img out
		assert_failure 1
	done
	run pgckpt save --aio epoll mem img
	assert_failure 1
	assert_line --index 0 "pgckpt: save: bad aio backend 'epoll' (auto, threads, libaio, uring)"
	run pgckpt restore --aio epoll img out
	assert_failure 1
	[ ! -e img ]
}

@test "missing source exits 2" {
	run pgckpt save nosuch img
	assert_failure 2
	assert_output "pgckpt: save: nosuch: No such file or directory"
	[ ! -e img ]
}

@test "a source that is not a memory file exits 2" {
	mkdir dir
	run pgckpt save dir img
	assert_failure 2
	assert_output "pgckpt: save: dir: not a regular file or memory file (a directory)"
	run pgckpt save /dev/null img
	assert_failure 2
	assert_output "pgckpt: save: /dev/null: not a regular file or memory file (a device)"
	[ ! -e img ]
}

@test "save refuses to replace an unrelated directory or file" {
	mkmem mem 1M --seed 31
	mkdir data
	echo keep >data/file
	run pgckpt save mem data
	assert_failure 2
	assert_output "pgckpt: save: data: exists and is not a pgckpt image; refusing to replace it"
	[ "$(cat data/file)" = keep ]
	echo keep >plain
	run pgckpt save mem plain
	assert_failure 2
	assert_output "pgckpt: save: plain: exists and is not a pgckpt image; refusing to replace it"
	[ "$(cat plain)" = keep ]
	run ls -d data.tmp-* plain.tmp-*
	assert_failure
}

@test "save into an empty directory is allowed" {
	mkmem mem 1M --seed 32
	mkdir img
	run pgckpt save mem img
	assert_success
	pgckpt restore img out
	cmp mem out
}

@test "save into a missing directory exits 2" {
	mkmem mem 1M --seed 33
	run pgckpt save mem nodir/img
	assert_failure 2
	assert_output --regexp "^pgckpt: save: nodir/img: "
}

@test "missing image exits 2" {
	for c in inspect verify; do
		run pgckpt "$c" nosuch
		assert_failure 2
		assert_output "pgckpt: $c: nosuch: No such file or directory"
	done
	run pgckpt restore nosuch out
	assert_failure 2
	assert_output "pgckpt: restore: nosuch: No such file or directory"
	assert_no_target out
	run pgckpt export --criu nosuch dump
	assert_failure 2
	[ ! -e dump ]
}

@test "restore into a missing directory exits 2" {
	make_image
	run pgckpt restore img nodir/out
	assert_failure 2
	assert_output "pgckpt: restore: nodir/out: No such file or directory"
}

@test "restore onto a directory with --force exits 2" {
	make_image
	mkdir out
	run pgckpt restore --force img out
	assert_failure 2
	assert_output "pgckpt: restore: out: Is a directory"
	[ -d out ]
}

@test "a flipped byte in pages.img: verify and restore exit 3" {
	make_image
	size=$(stat -c %s img/pages.img)
	flip_byte img/pages.img $((size / 2))
	run pgckpt verify img
	assert_failure 3
	assert_output "pgckpt: verify: img: Image checksum mismatch"
	run pgckpt restore img out
	assert_failure 3
	assert_output "pgckpt: restore: img: Image checksum mismatch"
	assert_no_target out
}

@test "a flipped byte in a raw pages.img: verify and restore exit 3" {
	make_image -c none
	size=$(stat -c %s img/pages.img)
	flip_byte img/pages.img $((size / 3))
	run pgckpt verify img
	assert_failure 3
	run pgckpt restore img out
	assert_failure 3
	assert_no_target out
}

@test "a flipped byte anywhere in memfile.img exits 3" {
	make_image
	size=$(stat -c %s img/memfile.img)
	for off in 0 4 9 $((size / 2)) $((size - 1)); do
		cp -r img bad
		flip_byte bad/memfile.img "$off"
		run pgckpt inspect bad
		assert_failure 3
		run pgckpt verify bad
		assert_failure 3
		run pgckpt restore bad out
		assert_failure 3
		assert_no_target out
		rm -rf bad
	done
}

@test "a truncated memfile.img exits 3" {
	make_image
	size=$(stat -c %s img/memfile.img)
	for len in 0 7 16 $((size / 2)) $((size - 1)); do
		cp -r img bad
		truncate -s "$len" bad/memfile.img
		run pgckpt verify bad
		assert_failure 3
		run pgckpt restore bad out
		assert_failure 3
		assert_no_target out
		rm -rf bad
	done
}

@test "a truncated pages.img exits 3" {
	make_image
	size=$(stat -c %s img/pages.img)
	truncate -s $((size - 100)) img/pages.img
	run pgckpt verify img
	assert_failure 3
	run pgckpt restore img out
	assert_failure 3
	assert_no_target out
}

@test "a foreign file exits 3" {
	make_image
	head -c 4096 /dev/urandom >img/memfile.img
	run pgckpt inspect img
	assert_failure 3
	assert_output "pgckpt: inspect: img: Not a pgckpt image"
	run pgckpt restore img out
	assert_failure 3
	assert_no_target out
	# A plain file, or an empty directory, where the image should be.
	cp mem plain
	run pgckpt verify plain
	assert_failure 3
	assert_output "pgckpt: verify: plain: Not a pgckpt image"
	mkdir empty
	run pgckpt restore empty out
	assert_failure 3
	assert_output "pgckpt: restore: empty: Not a pgckpt image"
	assert_no_target out
}

@test "an image of a newer format version exits 3" {
	make_image
	# memfile.img: 8 bytes of magics, u32 length, then the head record
	# whose field 1 (tag 0x08) is the version, 2 here (docs/format.md).
	[ "$(od -An -tx1 -j12 -N2 img/memfile.img | tr -d ' ')" = 0802 ] ||
		fail "memfile.img does not start as docs/format.md says"
	printf '\x03' | dd of=img/memfile.img bs=1 seek=13 conv=notrunc 2>/dev/null
	run pgckpt inspect img
	assert_failure 3
	assert_output "pgckpt: inspect: img: Image written by a newer pgckpt format version"
	run pgckpt restore img out
	assert_failure 3
	assert_no_target out
}

@test "export into a path that is a file exits 2" {
	make_image
	echo x >dump
	run pgckpt export --criu img dump
	assert_failure 2
	assert_output --regexp "^pgckpt: export: dump: "
}
