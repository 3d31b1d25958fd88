# SPDX-License-Identifier: Apache-2.0
#
# paths.sh - sourced by the bench scripts after they set $top (the source
# tree): the build directory $B (default build; relative to $top unless
# absolute) as $bdir, and the programs in it that they run.
B=${B:-build}
case $B in /*) bdir=$B ;; *) bdir=$top/$B ;; esac
bin="$bdir/pgckpt"
consumer="$bdir/examples/lazy_consumer"
mkmem="$bdir/bench/mkmem"
