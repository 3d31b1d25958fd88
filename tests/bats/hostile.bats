#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# hostile.bats - a careless user and an attacker (issue 14): sources and
# image files that are FIFOs or symlinks, a source that shrinks during the
# save, image names that cannot be replaced ('.', a symlink, a directory
# holding other files), a TARGET inside its IMAGE, exports through planted
# symlinks and into other users' files, and the messages and exit statuses
# each must give. Nothing may hang: every command runs under timeout.

load helpers

# A small image "img" of the memory file "mem".
make_image() {
	mkmem mem 4M --holes 0.1 --zero 0.1 --random 0.1 --seed 14
	pgckpt save "$@" mem img
}

@test "help for an unknown command is a usage error" {
	run pgckpt help frob
	assert_failure 1
	assert_line --index 0 "pgckpt: unknown command 'frob'"
	run pgckpt help save
	assert_success
	assert_line --index 0 --partial "Usage: pgckpt save"
}

@test "a bad PGCKPT_AIO is the usage error --aio gives" {
	: >m
	PGCKPT_AIO=bogus run pgckpt save m y
	assert_failure 1
	assert_line --index 0 "pgckpt: save: bad aio backend 'bogus' in PGCKPT_AIO (auto, threads, libaio, uring)"
	[ ! -e y ]
	make_image
	PGCKPT_AIO=bogus run pgckpt restore img out
	assert_failure 1
	assert_line --index 0 --partial "bad aio backend 'bogus' in PGCKPT_AIO"
	PGCKPT_AIO=bogus run pgckpt inspect img
	assert_success
}

@test "an empty socket path is a usage error" {
	make_image
	run pgckpt restore --background --listen '' img
	assert_failure 1
	assert_line --index 0 "pgckpt: restore: empty socket path"
}

@test "a FIFO source is refused without blocking" {
	mkfifo f
	run timeout 10 "$PGCKPT" save f img
	assert_failure 2
	assert_output "pgckpt: save: f: not a regular file or memory file (a FIFO)"
	run timeout 10 "$PGCKPT" bench --runs 1 f
	assert_failure 2
	assert_output "pgckpt: bench: f: not a regular file or memory file (a FIFO)"
	[ ! -e img ]
}

@test "a source over 128 TiB is refused naming the limit" {
	# tmpfs takes a sparse file of any size.
	big=$(mktemp -p /dev/shm pgckpt-bats-big.XXXXXX) || skip "no /dev/shm"
	truncate -s 200T "$big" || { rm -f "$big"; skip "the file system takes no 200 TiB file"; }
	run pgckpt save "$big" img
	rm -f "$big"
	assert_failure 2
	assert_output "pgckpt: save: $big: 219902325555200 bytes: larger than the 128 TiB an image can hold"
	assert_no_target img
}

@test "save into '.', '..' or '/' names the problem" {
	mkmem mem 1M --seed 1
	for d in . .. / ./ sub/..; do
		run pgckpt save mem "$d"
		assert_failure 2
		assert_output "pgckpt: save: $d: an image needs a name of its own (not '.', '..' or '/'), such as DIR/img"
	done
}

@test "save over a symlink to an image says it is a symlink and changes nothing" {
	make_image
	ln -s img L
	run pgckpt save mem L
	assert_failure 2
	assert_output "pgckpt: save: L: is a symbolic link; an image is replaced only under its own name (give the directory it points to)"
	[ -L L ]
	run pgckpt verify img
	assert_success
}

@test "save refuses to replace an image directory holding other files" {
	make_image
	echo notes >img/notes.txt
	run pgckpt save mem img
	assert_failure 2
	assert_output "pgckpt: save: img: holds files that are not part of a pgckpt image; refusing to replace it"
	[ "$(cat img/notes.txt)" = notes ]
	rm img/notes.txt
	mkdir img/sub
	run pgckpt save mem img
	assert_failure 2
	[ -d img/sub ]
	rmdir img/sub
	ln -s /etc/passwd img/pagemap.img.x
	run pgckpt save mem img
	assert_failure 2
	rm img/pagemap.img.x
	run ls -d img.tmp-*
	assert_failure
	# The image alone is replaced as before.
	run pgckpt save mem img
	assert_success
}

@test "restore refuses a TARGET inside its IMAGE" {
	make_image
	run pgckpt restore --force img img/pages.img
	assert_failure 2
	assert_output "pgckpt: restore: img/pages.img: is inside the image img; refusing to write there"
	run pgckpt restore img img/new
	assert_failure 2
	run pgckpt verify img
	assert_success
	[ ! -e img/new ]
}
