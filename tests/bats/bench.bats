#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# bench.bats - `pgckpt bench`: the table, the JSON object and its keys,
# usage errors, and no temporary image left behind.

load helpers

@test "bench prints a table and cleans up after itself" {
	mkmem mem 8M
	run pgckpt bench --runs 1 --accesses 50 --dir "$PWD" mem
	assert_success
	assert_output --partial "save"
	assert_output --partial "restore (eager)"
	assert_output --partial "restore (background) ready"
	assert_output --partial "lazy (a consumer process, median of 1): first access"
	assert_output --partial "lazy working set touched"
	run ls -d "$PWD"/pgckpt-bench.*
	assert_failure
}

@test "bench --json is one object with the documented keys" {
	mkmem mem 8M
	pgckpt bench --json --runs 2 --accesses 100 -c zstd:3 --block-size 256K --dir "$PWD" mem >out.json
	python3 - <<'PY'
import json, os
d = json.load(open("out.json"))
keys = {"file", "size", "mem_bytes", "image_bytes", "compress", "level", "block_size",
        "runs", "save_s", "restore_s", "ready_ms", "all_s", "accesses", "waits",
        "p50_us", "p99_us", "max_us", "lazy_first_ms", "lazy_p50_us", "lazy_p99_us",
        "lazy_placed_ms", "lazy_all_ms", "ws_without_ms", "ws_with_ms"}
assert set(d) == keys, set(d) ^ keys
assert 0 < d["lazy_first_ms"] and 0 < d["lazy_p50_us"] <= d["lazy_p99_us"]
assert 0 < d["lazy_placed_ms"] and 0 < d["lazy_all_ms"]
assert 0 < d["ws_without_ms"] and 0 < d["ws_with_ms"]
assert d["size"] == os.path.getsize("mem")
assert d["compress"] == "zstd" and d["level"] == 3 and d["block_size"] == 256 * 1024
assert d["runs"] == 2 and 0 < d["image_bytes"] < d["mem_bytes"] <= d["size"]
assert d["save_s"] > 0 and d["restore_s"] > 0 and d["all_s"] > 0
assert 0 <= d["p50_us"] <= d["p99_us"] <= d["max_us"]
PY
}

@test "bench --no-lazy leaves the lazy keys out" {
	mkmem mem 4M
	pgckpt bench --json --runs 1 --accesses 20 --no-lazy --dir "$PWD" mem >out.json
	python3 -c 'import json; d = json.load(open("out.json")); assert not [k for k in d if k.startswith(("lazy_", "ws_"))], d'
}

@test "bench measures lazy restores with a --dir too deep for a socket's name" {
	mkmem mem 4M
	deep="$PWD/$(printf 'd%.0s' $(seq 100))"
	mkdir "$deep"
	pgckpt bench --json --runs 1 --accesses 20 --dir "$deep" mem >out.json
	python3 -c 'import json; d = json.load(open("out.json")); assert d["lazy_first_ms"] > 0, d'
	run ls -A "$deep"
	assert_output ""
}

@test "bench with raw images and usage errors" {
	mkmem mem 4M
	run pgckpt bench --json --runs 1 -c none --dir "$PWD" mem
	assert_success
	assert_output --partial '"compress":"none"'
	run pgckpt bench
	assert_failure 1
	run pgckpt bench --runs 0 mem
	assert_failure 1
	run pgckpt bench --block-size 3K mem
	assert_failure 1
	run pgckpt bench --dir "$PWD" missing
	assert_failure 2
}

@test "bench/diskdir.sh: disk rows by default on a disk, a reason on tmpfs or without drop_caches" {
	top="$BATS_TEST_DIRNAME/../.."
	mkdir disk
	if [ "$(stat -f -c %T disk)" = tmpfs ]; then
		skip "the test directory is on tmpfs"
	fi
	touch drop
	DROP_CACHES="$PWD/drop" run "$top/bench/diskdir.sh" "$PWD/disk"
	assert_success
	assert_output "$PWD/disk/bench-disk"
	DROP_CACHES="$PWD/missing" run "$top/bench/diskdir.sh" "$PWD/disk"
	assert_failure 1
	assert_output "no disk rows: $PWD/missing is not writable (needs root)"
	DROP_CACHES="$PWD/drop" run "$top/bench/diskdir.sh" /dev/shm
	assert_failure 1
	assert_output "no disk rows: /dev/shm is on tmpfs (set DISK_DIR to a directory on a disk)"
}

@test "bench/lazy.sh with DISK_DIR: disk rows, verified, and the disk ratio" {
	top="$BATS_TEST_DIRNAME/../.."
	mkdir disk
	B="$PGCKPT_BUILD" RUNS=1 HOT_RUNS=1 SIZE=8M HOT_BYTES=2M HOT_PAGES=50 RANDOM_PAGES=50 \
		BENCH_DIR="$PWD/shm" DISK_DIR="$PWD/disk" run "$top/bench/lazy.sh"
	assert_success
	assert_output --partial "| disk-hot |"
	assert_output --partial "| disk-hot+ws |"
	assert_output --regexp "working set with/without <= 0.35: [0-9.]+ \(disk: [0-9.]+\)"
	run ls disk
	assert_output ""
}
