#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Runs every unit test program in $B/tests, the static checks of the tree
# (tests/check-*.sh, e.g. the layering of src/) and the bats suite, each
# unit program in a temporary directory of its own, and ends with the one
# line CI reads: "N passed, N failed[, N skipped]". A program or check that
# prints its own "N passed, N failed" line contributes those counts; one
# that does not counts as one test (exit 0 pass, 77 skip, anything else
# fail).
# Usage: tests/run-all.sh [--unit|--bats]   (env: B=build dir, TEST_TIMEOUT)
set -u
B=${B:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
timeout=${TEST_TIMEOUT:-900}
passed=0 failed=0 skipped=0
failures=()

# Count the result of test NAME, which exited RC with its output in OUT.
tally() {
	local name=$1 rc=$2 out=$3 line p f
	line=$(grep -E '^([A-Za-z_-]+: )?[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
	if [ "$rc" -eq 77 ]; then
		echo "SKIP  $name: $(tail -n 1 "$out")"
		skipped=$((skipped + 1))
	elif [ -n "$line" ]; then
		p=$(sed -E 's/^([A-Za-z_-]+: )?([0-9]+) passed.*/\2/' <<<"$line")
		f=$(sed -E 's/^([A-Za-z_-]+: )?[0-9]+ passed, ([0-9]+) failed.*/\2/' <<<"$line")
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
		passed=$((passed + p)); failed=$((failed + f))
		if [ "$f" -ne 0 ]; then
			echo "FAIL  $name (exit $rc): $line"; failures+=("$name"); sed 's/^/    /' "$out" | tail -n 40
		else
			echo "ok    $name: $line"
		fi
	elif [ "$rc" -eq 0 ]; then
		echo "ok    $name"; passed=$((passed + 1))
	else
		echo "FAIL  $name (exit $rc)"; failed=$((failed + 1)); failures+=("$name")
		sed 's/^/    /' "$out" | tail -n 40
	fi
}

run_unit() {
	local t name dir out rc
	for t in "$top/$B"/tests/*; do
		[ -f "$t" ] && [ -x "$t" ] || continue
		name=$(basename "$t")
		dir=$(mktemp -d "${TMPDIR:-/tmp}/pgckpt-$name.XXXXXX")
		out="$dir.log"
		(cd "$dir" && PGCKPT_SRC="$top" timeout -k 10 "$timeout" "$t") >"$out" 2>&1
		rc=$?
		tally "unit/$name" "$rc" "$out"
		rm -rf "$dir" "$out"
	done
}

# tests/check-*.sh: checks of the source tree itself (no build needed).
run_checks() {
	local s out rc
	for s in "$top"/tests/check-*.sh; do
		[ -x "$s" ] || continue
		out=$(mktemp)
		(cd "$top" && timeout -k 10 "$timeout" "$s") >"$out" 2>&1
		rc=$?
		tally "check/$(basename "$s" .sh)" "$rc" "$out"
		rm -f "$out"
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
--unit) run_unit; run_checks ;;
--bats) run_bats ;;
*) run_unit; run_checks; [ -d "$top/tests/bats" ] && ls "$top"/tests/bats/*.bats >/dev/null 2>&1 && run_bats ;;
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
