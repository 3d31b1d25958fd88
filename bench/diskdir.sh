#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# bench/diskdir.sh DIR: where bench/lazy.sh's disk rows (REAP's case: the
# image on disk, the page cache dropped before each run) may put the image
# by default: DIR/bench-disk when DIR is on a disk (not tmpfs or ramfs) and
# /proc/sys/vm/drop_caches is writable. Prints that directory and exits 0,
# or prints why there are no disk rows and exits 1. bench/run.sh calls it
# with its build directory. DROP_CACHES overrides the drop_caches path
# (for tests).
set -u
dir=${1:?usage: bench/diskdir.sh DIR}
drop=${DROP_CACHES:-/proc/sys/vm/drop_caches}
fstype=$(stat -f -c %T "$dir" 2>/dev/null) || { echo "no disk rows: $dir does not exist"; exit 1; }
case $fstype in
tmpfs|ramfs) echo "no disk rows: $dir is on $fstype (set DISK_DIR to a directory on a disk)"; exit 1 ;;
esac
[ -w "$drop" ] || { echo "no disk rows: $drop is not writable (needs root)"; exit 1; }
echo "$dir/bench-disk"
