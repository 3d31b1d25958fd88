#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs every unit test program in $B/tests, the static checks of the build
# (tests/static/*.sh: exports, tunables) and the bats suite, each unit
# program in a temporary directory of its own, and ends with the one line
# CI reads: "N passed, N failed[, N skipped]". A unit program that prints
# its own "N passed, N failed" line contributes those counts; one that does
# not counts as one test (exit 0 pass, 77 skip, anything else fail). A
# static check prints one "ok NAME" or "not ok NAME" line per test.
# Usage: tests/run-all.sh [--unit|--static|--bats]
# (env: B=build dir, TEST_TIMEOUT; CC and LDFLAGS for tests/static)
set -u
B=${B:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
timeout=${TEST_TIMEOUT:-900}
passed=0 failed=0 skipped=0
failures=()

run_unit() {
	local t name dir out rc line p f
	for t in "$top/$B"/tests/*; do
		[ -f "$t" ] && [ -x "$t" ] || continue
		name=$(basename "$t")
		dir=$(mktemp -d "${TMPDIR:-/tmp}/pgckpt-$name.XXXXXX")
		out="$dir.log"
		(cd "$dir" && PGCKPT_SRC="$top" timeout -k 10 "$timeout" "$t") >"$out" 2>&1
		rc=$?
		line=$(grep -E '^([A-Za-z_-]+: )?[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
		if [ "$rc" -eq 77 ]; then
			echo "SKIP  unit/$name: $(tail -n 1 "$out")"
			skipped=$((skipped + 1))
		elif [ -n "$line" ]; then
			p=$(sed -E 's/^([A-Za-z_-]+: )?([0-9]+) passed.*/\2/' <<<"$line")
			f=$(sed -E 's/^([A-Za-z_-]+: )?[0-9]+ passed, ([0-9]+) failed.*/\2/' <<<"$line")
			if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
			passed=$((passed + p)); failed=$((failed + f))
			if [ "$f" -ne 0 ]; then
				echo "FAIL  unit/$name (exit $rc): $line"; failures+=("unit/$name"); sed 's/^/    /' "$out" | tail -n 40
			else
				echo "ok    unit/$name: $line"
			fi
		elif [ "$rc" -eq 0 ]; then
			echo "ok    unit/$name"; passed=$((passed + 1))
		else
			echo "FAIL  unit/$name (exit $rc)"; failed=$((failed + 1)); failures+=("unit/$name")
			sed 's/^/    /' "$out" | tail -n 40
		fi
		rm -rf "$dir" "$out"
	done
}

run_static() {
	local s out rc line seen
	for s in "$top"/tests/static/*.sh; do
		[ -x "$s" ] || continue
		out=$(B="$B" timeout -k 10 "$timeout" "$s" 2>&1)
		rc=$?
		seen=0
		while IFS= read -r line; do
			case "$line" in
			"ok "*) passed=$((passed + 1)); seen=1; echo "ok    static: ${line#ok }" ;;
			"not ok "*) failed=$((failed + 1)); seen=1; failures+=("static: ${line#not ok }")
				echo "FAIL  static: ${line#not ok }" ;;
			*) echo "    $line" ;;
			esac
		done <<<"$out"
		# A script that dies (or fails without saying which check) fails once more.
		if [ "$seen" -eq 0 ] || { [ "$rc" -ne 0 ] && ! grep -q '^not ok ' <<<"$out"; }; then
			failed=$((failed + 1)); failures+=("static: $(basename "$s")")
			echo "FAIL  static: $(basename "$s") (exit $rc)"
		fi
	done
}

run_bats() {
	local out line
	if ! command -v bats >/dev/null; then
		echo "FAIL  bats is not installed"; failed=$((failed + 1)); return
	fi
	out=$(mktemp)
	PGCKPT_BUILD="$top/$B" timeout -k 10 "$timeout" bats --tap "$top/tests/bats" >"$out" 2>&1
	while IFS= read -r line; do
		case "$line" in
		"ok "*"# skip"*) skipped=$((skipped + 1)); echo "SKIP  bats: ${line#ok }" ;;
		"ok "*) passed=$((passed + 1)); echo "ok    bats: ${line#ok }" ;;
		"not ok "*) failed=$((failed + 1)); failures+=("bats: ${line#not ok }"); echo "FAIL  bats: ${line#not ok }" ;;
		"#"*) echo "    $line" ;;
		esac
	done <"$out"
	rm -f "$out"
}

case "$what" in
--unit) run_unit ;;
--static) run_static ;;
--bats) run_bats ;;
*) run_unit; run_static; [ -d "$top/tests/bats" ] && ls "$top"/tests/bats/*.bats >/dev/null 2>&1 && run_bats ;;
esac

if [ "${#failures[@]}" -gt 0 ]; then
	echo "failed:"; printf '  %s\n' "${failures[@]}"
fi
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
