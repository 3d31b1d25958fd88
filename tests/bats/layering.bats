#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# layering.bats - tests/static/layering.sh (run on the real tree by
# tests/run-all.sh) must fail for each kind of forbidden #include: it is
# run here on a copy of src/ (and examples/) with one bad line added.

load helpers

CHECK="$BATS_TEST_DIRNAME/../static/layering.sh"
SRC="$BATS_TEST_DIRNAME/../../src"

# Copy src/, append line $2 to file $1 of the copy, run the check on it.
check_with() {
	cp -r "$SRC" src
	if [ "$1" = NEWDIR ]; then
		mkdir src/newmod && touch src/newmod/a.c
	else
		printf '%s\n' "$2" >>"src/$1"
	fi
	run "$CHECK" "$PWD/src"
}

@test "layering: the allocator may not include the engine" {
	check_with alloc/memfile.c '#include "engine/loader.h"'
	assert_failure
	assert_line 'not ok layering: src/alloc'
	assert_output --partial 'src/alloc may not depend on src/engine'
}

@test "layering: the engine sees the MemoryFile only through memfile_hooks.h" {
	check_with engine/save.c '#include "alloc/memfile.h"'
	assert_failure
	assert_output --partial 'alloc/memfile.h is private to src/alloc'
}

@test "layering: lazy may not reach past src/util, the command past pgckpt.h" {
	check_with lazy/server.c '#include <statefile/statefile.h>'
	assert_failure
	assert_output --partial 'src/lazy may not depend on src/statefile'
	rm -rf src
	check_with cli/main.c '#include "alloc/rangeset.h"'
	assert_failure
	assert_output --partial 'src/cli may not depend on src/alloc'
}

@test "layering: util depends on nothing" {
	check_with util/page.c '#include "aio/aio.h"'
	assert_failure
	assert_output --partial 'src/util may not depend on src/aio'
}

@test "layering: a directory without a rule fails" {
	check_with NEWDIR
	assert_failure
	assert_output --partial 'src/newmod has no layering rule'
}

@test "layering: the command may take only the header-only utf8.h from src/util" {
	check_with cli/main.c '#include "util/util.h"'
	assert_failure
	assert_output --partial 'src/cli may include only pgckpt.h, the header-only util/utf8.h and s3/s3.h'
}

@test "layering: the S3 client stays out of the engine and statefile, and they out of it" {
	check_with s3/s3.c '#include "statefile/statefile.h"'
	assert_failure
	assert_output --partial 'src/s3 may not depend on src/statefile'
	rm -rf src
	check_with statefile/reader.c '#include "s3/s3.h"'
	assert_failure
	assert_output --partial 'src/statefile may not depend on src/s3'
	rm -rf src
	check_with cli/main.c '#include "s3/s3.h"'
	assert_success
}

@test "layering: an example includes pgckpt.h and system headers, no header of src/" {
	cp -r "$SRC" src
	cp -r "$BATS_TEST_DIRNAME/../../examples" examples
	run "$CHECK" "$PWD/src"
	assert_success
	assert_line 'ok layering: examples (pgckpt.h and system headers only)'
	cp examples/kvstore.c kvstore.c
	printf '#include "lazy/lazy.h"\n' >>examples/kvstore.c
	run "$CHECK" "$PWD/src"
	assert_failure
	assert_line 'not ok layering: examples'
	assert_output --partial 'kvstore.c: #include "lazy/lazy.h": a header of src/, not the public API'
	cp kvstore.c examples/kvstore.c
	printf '#include <util/util.h>\n' >>examples/kvstore.c
	run "$CHECK" "$PWD/src" "$PWD/examples"
	assert_failure
	assert_output --partial 'kvstore.c: #include <util/util.h>: a header of src/, not the public API'
	cp kvstore.c examples/kvstore.c
	printf '#include "kv.h"\n' >>examples/kvstore.c
	run "$CHECK" "$PWD/src"
	assert_failure
	assert_output --partial 'kvstore.c: #include "kv.h": quoted, but not pgckpt.h or a header of examples/'
	touch examples/kv.h
	run "$CHECK" "$PWD/src"
	assert_success
}
