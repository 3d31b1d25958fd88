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

# every_reader IMAGE STATUS: inspect, verify, restore, export and the lazy
# server on IMAGE each exit with STATUS, within 10 s, leaving nothing.
every_reader() {
	local img=$1 want=$2
	run timeout 10 "$PGCKPT" inspect "$img"
	assert_failure "$want"
	run timeout 10 "$PGCKPT" verify "$img"
	assert_failure "$want"
	run timeout 10 "$PGCKPT" restore "$img" out
	assert_failure "$want"
	assert_no_target out
	run timeout 10 "$PGCKPT" export --criu "$img" ex
	assert_failure "$want"
	run timeout 10 "$PGCKPT" restore --background --listen s.sock --timeout 5 "$img"
	assert_failure "$want"
	[ ! -e s.sock ]
}

@test "an image file that is a FIFO is refused at once (exit 3)" {
	make_image
	for f in pages.img memfile.img; do
		rm -rf bad
		cp -r img bad
		rm "bad/$f"
		mkfifo "bad/$f"
		every_reader bad 3
	done
}

@test "an image file that is a symlink is refused (exit 3)" {
	make_image
	mkdir elsewhere
	for f in pages.img memfile.img; do
		rm -rf bad
		cp -r img bad
		mv "bad/$f" "elsewhere/$f"
		ln -s "../elsewhere/$f" "bad/$f"
		every_reader bad 3
		rm "elsewhere/$f"
	done
}

@test "verify checks pagemap.img against the index" {
	make_image
	cp -r img bad
	head -c "$(stat -c %s img/pagemap.img)" /dev/urandom >bad/pagemap.img
	run pgckpt verify bad
	assert_failure 3
	assert_output "pgckpt: verify: bad: Image is corrupt"
	rm bad/pagemap.img
	run pgckpt verify bad
	assert_failure 3
	printf 'x' >>img/pagemap.img
	run pgckpt verify img
	assert_failure 3
	ln -s ../bad/memfile.img bad/pagemap.img
	run pgckpt verify bad
	assert_failure 3
}

@test "export never writes through planted symlinks" {
	make_image
	echo keep1 >prec1
	echo keep2 >prec2
	mkdir ex
	ln -s ../prec1 ex/pages-1.img
	ln -s ../prec2 ex/pagemap.img
	run pgckpt export --criu img ex
	assert_failure 2
	assert_output "pgckpt: export: ex: already holds pagemap.img or pages-1.img (use --force to replace them)"
	[ "$(cat prec1)" = keep1 ]
	[ "$(cat prec2)" = keep2 ]
	[ -L ex/pages-1.img ]
	# --force replaces the links themselves, never their targets.
	run pgckpt export --criu --force img ex
	assert_success
	[ "$(cat prec1)" = keep1 ]
	[ "$(cat prec2)" = keep2 ]
	[ ! -L ex/pages-1.img ] && [ ! -L ex/pagemap.img ]
	[ "$(stat -c %a ex/pages-1.img)" = 600 ]
	[ "$(stat -c %a ex/pagemap.img)" = 600 ]
	[ "$(stat -c %s ex/pages-1.img)" -eq "$(json_field img mem_bytes)" ]
	run ls -A ex
	assert_output "pagemap.img
pages-1.img"
}

@test "export never writes into another user's file" {
	make_image
	mkdir -m 1777 shared
	setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null ||
		skip "cannot run as nobody"
	setpriv --reuid=nobody --regid=nogroup --clear-groups \
		sh -c 'umask 0; echo theirs >shared/pages-1.img; chmod 666 shared/pages-1.img'
	run pgckpt export --criu img shared
	assert_failure 2
	[ "$(cat shared/pages-1.img)" = theirs ]
	[ ! -e shared/pagemap.img ]
	run pgckpt export --criu --force img shared
	assert_success
	# A new file of ours replaced the entry; theirs was never opened for writing.
	[ "$(stat -c '%U %a' shared/pages-1.img)" = "$(id -un) 600" ]
	[ "$(stat -c '%U %a' shared/pagemap.img)" = "$(id -un) 600" ]
}
