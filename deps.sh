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
bats-assert zstd criu python3 libcurl4-openssl-dev curl"
# The single-node Ceph of the S3 tests (tests/s3/ceph.sh), without its
# recommends (ceph-mgr's would pull the dashboard and its Python stack).
bare_pkgs="ceph-mon ceph-mgr ceph-osd radosgw ceph-common"

installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }
missing= bare_missing=
for p in $pkgs; do
	installed "$p" || missing="$missing $p"
done
for p in $bare_pkgs; do
	installed "$p" || bare_missing="$bare_missing $p"
done
if [ -z "$missing$bare_missing" ]; then
	echo "deps: all installed"
	exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
	as_root=
elif command -v sudo >/dev/null 2>&1; then
	as_root=sudo
else
	echo "deps: not root and no sudo; as root, run: apt-get install$missing$bare_missing" >&2
	exit 1
fi
echo "deps: installing$missing$bare_missing"
apt() { $as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
# shellcheck disable=SC2086
if ! apt update -qq ||
	{ [ -n "$missing" ] && ! apt install -y -qq $missing >/dev/null; } ||
	{ [ -n "$bare_missing" ] &&
		! apt install -y -qq --no-install-recommends $bare_missing >/dev/null; }; then
	echo "deps: apt-get failed" >&2
	exit 1
fi
echo "deps: done"
