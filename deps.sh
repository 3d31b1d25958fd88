#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# deps.sh - install what pgckpt needs to build, test, fuzz and demo on
# Debian 12 (README's first command; .ci/run calls it too, so this is the
# one list). Packages already installed are left alone, and nothing runs
# when all are there. As root it runs apt-get directly; otherwise through
# sudo. Exit status: 0 ok, 1 cannot install (no root, no sudo, apt failed).
set -eu

pkgs="build-essential pkg-config clang liburing-dev libzstd-dev libaio-dev
libxxhash-dev libprotobuf-c-dev protobuf-c-compiler bats bats-support
bats-assert zstd criu python3"

missing=
for p in $pkgs; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q ' installed$' ||
		missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "deps: all installed"
	exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
	as_root=
elif command -v sudo >/dev/null 2>&1; then
	as_root=sudo
else
	echo "deps: not root and no sudo; as root, run: apt-get install$missing" >&2
	exit 1
fi
echo "deps: installing$missing"
# shellcheck disable=SC2086
if ! $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
	! $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null; then
	echo "deps: apt-get failed" >&2
	exit 1
fi
echo "deps: done"
