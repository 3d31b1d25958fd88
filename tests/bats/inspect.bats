#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# inspect.bats - the read-only subcommands: `pgckpt inspect` (table and
# --json, whose keys are documented in docs/cli.md), `pgckpt verify`,
# `pgckpt export --criu` read back by CRIU's crit, and --help / --version.

load helpers

@test "inspect prints a table" {
	mkmem mem 8M --seed 20
	pgckpt save -c zstd:3 --block-size 128K mem img
	run pgckpt inspect img
	assert_success
	assert_line --regexp '^format version: +2$'
	assert_line --regexp '^memory file: +8\.0 MiB \(8388608 bytes\)$'
	assert_line --regexp '^stored memory: +.* bytes\)$'
	assert_line --regexp '^pages\.img: +.* bytes\)$'
	assert_line --regexp '^ratio: +[0-9]+\.[0-9]+$'
	# One adopted allocation, split by whether its pages are stored.
	assert_line --regexp '^segments: +[1-9][0-9]*$'
	assert_line --regexp '^blocks: +[0-9]+$'
	assert_line --regexp '^block size: +128\.0 KiB$'
	assert_line --regexp '^compression: +zstd \(level 3\)$'
}

@test "inspect --json is one object with the documented keys" {
	mkmem mem 8M --seed 21
	pgckpt save mem img
	pgckpt inspect --json img >out.json
	[ "$(wc -l <out.json)" -eq 1 ]
	python3 - "$(stat -c %s img/pages.img)" <<'EOF'
import json, sys
d = json.load(open("out.json"))
keys = ["image", "version", "file_size", "mem_bytes", "pages_bytes", "ratio",
        "segments", "blocks", "block_size", "compression", "level", "parents"]
assert list(d) == keys, list(d)
assert d["image"] == "img"
assert d["version"] == 2
assert d["parents"] == []
assert d["file_size"] == 8 << 20
assert 0 < d["mem_bytes"] <= d["file_size"]
assert d["pages_bytes"] == int(sys.argv[1]), (d["pages_bytes"], sys.argv[1])
assert abs(d["ratio"] - d["mem_bytes"] / d["pages_bytes"]) < 0.01
assert d["segments"] >= 1   # split by whether the pages are stored
assert d["blocks"] >= d["mem_bytes"] // d["block_size"]
assert d["block_size"] == 1024 * 1024
assert d["compression"] == "zstd" and d["level"] == 1
EOF
}

@test "inspect --json escapes the image path" {
	mkmem mem 1M --seed 22
	pgckpt save mem 'we"ird\img'
	run python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["image"])' \
		< <(pgckpt inspect --json 'we"ird\img')
	assert_output 'we"ird\img'
}

# json_name FILE: the "image" or "file" string of the JSON object in FILE,
# parsed by Python's strict decoder, printed as Python's ascii() of it.
json_name() {
	python3 -c 'import json,sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
print(ascii(d.get("image", d.get("file"))))' "$1"
}

@test "inspect and bench --json stay valid UTF-8 JSON for a name that is not UTF-8" {
	mkmem mem 1M --seed 23
	# Invalid bytes (\xff\xfe, a lone continuation byte, a cut sequence) each
	# become U+FFFD; valid UTF-8 stays; control bytes and DEL are escaped.
	local name=$'bad\xff\xfe-\x80-\xc3\xa9-\x01\x1f\x7f-\xe2\x82'
	pgckpt save mem "$name"
	pgckpt inspect --json "$name" >out.json
	python3 -c 'import json,sys; json.load(sys.stdin)' <out.json
	run json_name out.json
	assert_output "'bad\\ufffd\\ufffd-\\ufffd-\\xe9-\\x01\\x1f\\x7f-\\ufffd\\ufffd'"
	grep -q '"bad\\ufffd\\ufffd-\\ufffd-' out.json
	grep -q '\\u0001\\u001f\\u007f' out.json
	cp mem "$name.mem"
	pgckpt bench --json --runs 1 --accesses 10 --dir "$PWD" "$name.mem" >bench.json
	run json_name bench.json
	assert_output --partial "'bad\\ufffd\\ufffd-"
}

@test "inspect --json of an image of holes has a null ratio" {
	truncate -s 1M mem
	pgckpt save mem img
	run pgckpt inspect --json img
	assert_success
	assert_output --partial '"ratio": null'
	assert_output --partial '"mem_bytes": 0'
}

@test "verify prints IMAGE: ok" {
	mkmem mem 8M --seed 23
	pgckpt save mem img
	run pgckpt verify img
	assert_success
	assert_output "img: ok"
	pgckpt save -c none mem raw
	run pgckpt verify raw
	assert_success
	assert_output "raw: ok"
}

@test "export --criu writes a pagemap crit can decode" {
	mkmem mem 8M --seed 24
	pgckpt save mem img
	run pgckpt export --criu img dump
	assert_success
	[ -f dump/pagemap.img ]
	[ -f dump/pages-1.img ]
	# pages-1.img holds exactly the non-zero pages.
	[ "$(stat -c %s dump/pages-1.img)" -eq "$(json_field img mem_bytes)" ]
	command -v crit >/dev/null || skip "crit not installed"
	crit decode -i dump/pagemap.img -o pagemap.json
	python3 - "$(json_field img mem_bytes)" <<'EOF'
import json, sys
d = json.load(open("pagemap.json"))
assert d["magic"] == "PAGEMAP", d["magic"]
head, entries = d["entries"][0], d["entries"][1:]
assert "pages_id" in head
total = sum(e["nr_pages"] for e in entries) * 4096
assert total == int(sys.argv[1]), (total, sys.argv[1])
offs = [e["vaddr"] for e in entries]
assert offs == sorted(offs)
EOF
	# The pages are those of the memory file, in pagemap order.
	python3 - <<'EOF'
import json
d = json.load(open("pagemap.json"))
mem = open("mem", "rb").read()
pages = open("dump/pages-1.img", "rb").read()
pos = 0
for e in d["entries"][1:]:
    n = e["nr_pages"] * 4096
    assert pages[pos:pos + n] == mem[e["vaddr"]:e["vaddr"] + n], e
    pos += n
assert pos == len(pages)
EOF
}

@test "--version and --help" {
	run pgckpt --version
	assert_success
	assert_output --regexp '^pgckpt [0-9]+\.[0-9]+\.[0-9]+$'
	run pgckpt --help
	assert_success
	assert_output --partial "Usage: pgckpt COMMAND"
	for c in save restore inspect verify export; do
		run pgckpt "$c" --help
		assert_success
		assert_line --index 0 --partial "Usage: pgckpt $c"
	done
}
