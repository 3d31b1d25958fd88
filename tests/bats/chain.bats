#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# chain.bats - incremental images: `pgckpt save --parent`, restores and
# lazy serving of chains of depth 1..5, the refusals (a replaced,
# truncated or missing parent; a child replacing its parent), verify and
# inspect of a chain, flatten, export --criu of a child, and a save killed
# while it runs.

load helpers

CONSUMER="$PGCKPT_BUILD/examples/lazy_consumer"

# mutate SRC DST SEED: DST is SRC with 5% of its pages changed in runs of
# 1..16 pages (a fifth of them zeroed), some zero pages made non-zero,
# and the file grown or shrunk by a few pages.
mutate() {
	python3 - "$@" <<'PY'
import os, random, sys
src, dst, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
d = bytearray(open(src, 'rb').read())
n = len(d) // 4096
changed = 0
while changed < n // 20:
    p = rng.randrange(n)
    for q in range(p, min(n, p + rng.randint(1, 16))):
        z = rng.random() < 0.2
        d[q * 4096:(q + 1) * 4096] = bytes(4096) if z else rng.randbytes(4096)
        changed += 1
for _ in range(5):                     # zero pages becoming non-zero
    q = rng.randrange(n)
    if not any(d[q * 4096:(q + 1) * 4096]):
        d[q * 4096 + rng.randrange(4096)] = 1
g = rng.choice([-7, -1, 0, 3, 11])
if g > 0:
    d += rng.randbytes(4096 * g - rng.randrange(2) * 100)
elif g < 0:
    d = d[:len(d) + 4096 * g]
open(dst, 'wb').write(d)
PY
}

# chain N: mem0 saved as c0, then mem1..memN each saved against the last.
chain() {
	local i
	mkmem mem0 4M --seed 7
	pgckpt save mem0 c0
	for i in $(seq 1 "$1"); do
		mutate "mem$((i - 1))" "mem$i" "$i"
		pgckpt save --parent "c$((i - 1))" "mem$i" "c$i"
	done
}

@test "chain: depth 1..5, eager restores byte for byte, verify and inspect show the chain" {
	chain 5
	for i in 1 2 3 4 5; do
		run pgckpt restore "c$i" "r$i"
		assert_success
		cmp "r$i" "mem$i"
	done
	run pgckpt verify c5
	assert_success
	run pgckpt inspect c5
	assert_success
	assert_output --partial "parent:         c4"
	assert_output --partial "ancestor:       c0"
	run pgckpt inspect --json c2
	assert_output --partial '"parents": ["c1", "c0"]'
}

@test "chain: a child stores only what changed" {
	mkmem mem0 8M --seed 3
	pgckpt save mem0 c0
	mutate mem0 mem1 1
	pgckpt save --parent c0 mem1 c1
	full=$(pgckpt inspect --json c0 | sed 's/.*"mem_bytes": \([0-9]*\).*/\1/')
	child=$(pgckpt inspect --json c1 | sed 's/.*"mem_bytes": \([0-9]*\).*/\1/')
	# 5% of the file's pages changed (a fifth of them to zero): the
	# child stores at most those, not the pages that stayed.
	[ "$child" -le $((8 * 1048576 * 5 / 100)) ] || fail "child $child vs full $full"
	[ $((child * 5)) -lt "$full" ] || fail "child $child vs full $full"
}

@test "chain: raw images, and a parent in another directory moved together" {
	mkmem mem0 2M --seed 5
	mkdir -p a/b
	pgckpt save -c none mem0 a/p
	mutate mem0 mem1 9
	pgckpt save --parent a/p mem1 a/b/c
	mv a moved
	run pgckpt restore moved/b/c r
	assert_success
	cmp r mem1
	run pgckpt save -c zstd --parent moved/p mem1 x
	assert_failure 1
	assert_output --partial "compressed as its parent"
}

@test "chain: replaced, truncated or missing parent: exit 3 naming both, no target" {
	chain 2
	cp -r c0 keep
	pgckpt save mem2 other
	rm -rf c0
	mv other c0
	for cmd in "restore c2 t" "verify c2" "inspect c2" "restore c1 t"; do
		run pgckpt $cmd
		assert_failure 3
		assert_output --partial "c1: its parent c0 is not the image it was saved against"
	done
	[ ! -e t ]
	rm -rf c0
	cp -r keep c0
	truncate -s -1 c0/pages.img
	run pgckpt restore c2 t
	assert_failure 3
	assert_output --partial "its parent c0 is missing or damaged: Image is truncated"
	[ ! -e t ]
	rm -rf c0
	run pgckpt restore c2 t
	assert_failure 3
	assert_output --partial "c1: its parent c0 is missing or damaged"
	[ ! -e t ]
	ls | grep -v tmp- >/dev/null
	run sh -c 'ls -d t.tmp-* 2>/dev/null'
	assert_output ""
}

@test "chain: a child never replaces its parent or an ancestor (no cycle)" {
	chain 2
	cp -r c0 c0.orig
	run pgckpt save --parent c1 mem2 c0
	assert_failure 1
	assert_output --partial "a child never replaces its parent"
	run pgckpt save --parent c2 mem2 c2
	assert_failure 1
	diff -r c0 c0.orig
	run pgckpt restore c2 r2
	assert_success
	cmp r2 mem2
}

@test "chain: flatten, then delete the parents: the flat image restores" {
	chain 3
	run pgckpt flatten c3 c2
	assert_failure 1
	run pgckpt flatten c3 flat
	assert_success
	rm -rf c0 c1 c2
	run pgckpt verify flat
	assert_success
	run pgckpt inspect --json flat
	assert_output --partial '"parents": []'
	run pgckpt restore flat r
	assert_success
	cmp r mem3
	run pgckpt restore c3 r3
	assert_failure 3
}

@test "chain: export --criu of a child writes every page of its chain, as for its flat image" {
	chain 3
	run pgckpt export --criu c3 dump
	assert_success
	pgckpt flatten c3 flat
	pgckpt export --criu flat dumpflat
	cmp dump/pagemap.img dumpflat/pagemap.img
	cmp dump/pages-1.img dumpflat/pages-1.img
	# A missing parent: exit 3, nothing written.
	mv c1 c1.away
	run pgckpt export --criu c3 dump2
	assert_failure 3
	[ ! -e dump2/pages-1.img ]
	mv c1.away c1
	# The pages are mem3's non-zero pages, in pagemap order (crit reads it).
	command -v crit >/dev/null || skip "crit not installed"
	crit decode -i dump/pagemap.img -o pagemap.json
	python3 - <<'PY'
import json
d = json.load(open("pagemap.json"))
mem = open("mem3", "rb").read()
mem += bytes(-len(mem) % 4096)
pages = open("dump/pages-1.img", "rb").read()
pos = 0
want = [q for q in range(len(mem) // 4096) if any(mem[q * 4096:(q + 1) * 4096])]
got = []
for e in d["entries"][1:]:
    n = e["nr_pages"] * 4096
    assert pages[pos:pos + n] == mem[e["vaddr"]:e["vaddr"] + n], e
    got += range(e["vaddr"] // 4096, e["vaddr"] // 4096 + e["nr_pages"])
    pos += n
assert pos == len(pages) and got == want, (pos, len(pages), len(got), len(want))
PY
}

@test "chain: SIGKILL during a child save leaves the parent intact" {
	mkmem mem0 64M --seed 11
	pgckpt save -c zstd:19 mem0 c0
	mutate mem0 mem1 4
	cp -r c0 c0.orig
	"$PGCKPT" save -c zstd:19 -j 1 --parent c0 mem1 c1 &
	pid=$!
	# Kill it once its temporary directory exists: mid-save.
	for _ in $(seq 400); do
		compgen -G 'c1.tmp-*' >/dev/null && break
		[ -e c1 ] && break
		sleep 0.025
	done
	kill -9 "$pid"
	wait "$pid" || true
	run diff -r c0 c0.orig
	assert_success
	run pgckpt verify c0
	assert_success
	if [ -e c1 ]; then
		run pgckpt verify c1
		assert_success
	fi
	run pgckpt restore c0 r0
	assert_success
	cmp r0 mem0
}

@test "chain: depth 1..5 served lazily byte for byte" {
	[ -x "$CONSUMER" ] || fail "lazy_consumer not built"
	chain 5
	for i in 1 3 5; do
		"$PGCKPT" restore --background --listen s.sock --once --timeout 10 "c$i" 2>server.log 3>&- &
		srv=$!
		BG_PIDS+=("$srv")
		for _ in $(seq 200); do [ -S s.sock ] && break; sleep 0.05; done
		run timeout 20 "$CONSUMER" -n 100 -v "mem$i" s.sock
		assert_success
		assert_output --partial 'verified=yes'
		wait "$srv"
		rm -f s.sock
	done
}

@test "chain: the version 1 image of the corpus still restores" {
	v1="$BATS_TEST_DIRNAME/../vectors/v1-image"
	run pgckpt inspect "$v1"
	assert_success
	assert_output --partial "format version: 1"
	run pgckpt verify "$v1"
	assert_success
	run pgckpt restore "$v1" r
	assert_success
	cmp r "$v1.mem"
	# A version 1 image can be a parent (it has no hashes: the child stores all).
	cp r r2
	run pgckpt save --parent "$v1" r2 c
	assert_success
	run pgckpt restore c r3
	assert_success
	cmp r3 r2
}

@test "chain: a parent local for an s3:// image, or the reverse, or in another bucket, is refused before any request" {
	mkmem mem 1M
	pgckpt save mem p
	for args in "save --parent p mem s3://bucket/c" "save --parent=p mem s3://bucket/c" \
		    "save --parent s3://bucket/p mem c" "save --parent s3://other/p mem s3://bucket/c"; do
		# shellcheck disable=SC2086
		AWS_ENDPOINT_URL=http://127.0.0.1:9 run pgckpt $args
		assert_failure 1
		assert_output --partial "parent"
	done
	[ ! -e c ]
}

@test "chain: flatten with an s3:// end goes to the server (nothing there: exit 2, no OUT)" {
	mkmem mem 1M
	pgckpt save mem p
	for args in "flatten s3://bucket/c out" "flatten p s3://bucket/out"; do
		# shellcheck disable=SC2086
		AWS_ACCESS_KEY_ID=k AWS_SECRET_ACCESS_KEY=s PGCKPT_S3_RETRIES=0 \
			AWS_ENDPOINT_URL=http://127.0.0.1:9 run pgckpt $args
		assert_failure 2
		assert_output --partial "Couldn't connect to server"
	done
	[ ! -e out ]
}
