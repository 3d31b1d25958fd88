#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# ceph.sh - a throwaway single-node Ceph with an S3 endpoint, for the S3
# tests (docs/s3.md). From Debian 12's packages (ceph-mon, ceph-mgr,
# ceph-osd, radosgw, ceph-common), without systemd: one mon, one mgr, one
# BlueStore OSD on a sparse file, and radosgw on 127.0.0.1 at a free port,
# with one S3 user. Everything lives under STATE (config, keys, data, logs,
# the PIDs it started) and listens on loopback only.
#
# Usage: tests/s3/ceph.sh start STATE   build and start; prints the env
#        tests/s3/ceph.sh env STATE     print export lines for the S3 user
#        tests/s3/ceph.sh stop STATE    stop what start started, by PID:
#                                       radosgw, OSD, mgr, mon, each TERM
#                                       then KILL after a timeout
# Exit status: 0 ok; 1 failed (start stops what it had started, and the
# daemons' logs are under STATE/log). Env: CEPH_START_TIMEOUT (s, 120).
set -euo pipefail

cmd=${1:-}
state=${2:-}
[ -n "$cmd" ] && [ -n "$state" ] || {
	echo "usage: $0 start|stop|env STATE" >&2; exit 1; }

access_key=PGCKPTTESTACCESSKEY0
secret_key=pgckpt-test-secret-key-not-a-real-one-000

log() { echo "ceph.sh: $*" >&2; }

# A TCP port free on 127.0.0.1 now (the kernel's choice).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Stop the daemon whose PID is in STATE/pid/$1: TERM, wait $2 s, KILL.
stop_one() {
	local f=$state/pid/$1 pid i
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	# Only a process we started: its command line names our config.
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$state/ceph.conf"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < $2 * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$1 (pid $pid) ignored TERM for $2 s: KILL"
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$f"
}

do_stop() {
	[ -d "$state" ] || return 0
	stop_one radosgw 5
	stop_one osd 20
	stop_one mgr 10
	stop_one mon 10
}

do_env() {
	[ -f "$state/port" ] || { log "no cluster in $state"; return 1; }
	echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$state/port")"
	echo "export AWS_ACCESS_KEY_ID=$access_key"
	echo "export AWS_SECRET_ACCESS_KEY=$secret_key"
	echo "export AWS_REGION=us-east-1"
}

# Start "$@" in the background with its output in STATE/log/NAME.out and
# no inherited descriptors beyond 0-2, and record its PID as NAME.
spawn() {
	local name=$1; shift
	"$@" </dev/null >"$state/log/$name.out" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
	echo $! >"$state/pid/$name"
}

ceph_() { timeout 60 ceph -c "$state/ceph.conf" --connect-timeout 30 "$@"; }

write_conf() {
	local fsid=$1 monport=$2
	cat >"$state/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$monport]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $state/\$name.keyring
run dir = $state/run
admin socket = $state/run/\$name.asok
pid file = $state/run/\$name.pid
log file = $state/log/\$name.log
mon cluster log file = $state/log/cluster.log
crash dir = $state/crash
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon allow pool delete = true
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = bluestore
osd data = $state/\$name
mon data = $state/\$name
mgr data = $state/\$name
bluestore block create = true
bluestore block size = 4294967296
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 939524096
osd max object name len = 460
osd max object namespace len = 64
rgw frontends = beast endpoint=127.0.0.1:$3
rgw dns name = 127.0.0.1
rgw enable usage log = false
EOF
}

# Wait until radosgw answers HTTP on its port (any status), $1 seconds.
wait_rgw() {
	local port=$1 limit=$2 t0=$SECONDS
	while ((SECONDS - t0 < limit)); do
		kill -0 "$(cat "$state/pid/radosgw")" 2>/dev/null || {
			log "radosgw exited"; return 1; }
		curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/" && return 0
		sleep 0.3
	done
	log "radosgw did not answer within $limit s"
	return 1
}

do_start() {
	local limit=${CEPH_START_TIMEOUT:-120}
	for b in ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
		command -v "$b" >/dev/null || { log "$b is not installed (./deps.sh)"; return 1; }
	done
	if [ -e "$state" ] && [ -n "$(ls -A "$state" 2>/dev/null)" ]; then
		log "$state exists and is not empty"; return 1
	fi
	mkdir -p "$state"/{run,log,pid,crash,mon.a,mgr.x}
	local fsid monport rgwport osd_uuid osd_key id t0=$SECONDS
	fsid=$(cat /proc/sys/kernel/random/uuid)
	monport=$(free_port)
	rgwport=$(free_port)
	while [ "$rgwport" = "$monport" ]; do rgwport=$(free_port); done
	write_conf "$fsid" "$monport" "$rgwport"
	local conf=$state/ceph.conf

	# mon
	ceph-authtool --create-keyring "$state/mon.a.keyring" --gen-key -n mon. \
		--cap mon 'allow *' >/dev/null
	ceph-authtool --create-keyring "$state/client.admin.keyring" --gen-key \
		-n client.admin --cap mon 'allow *' --cap osd 'allow *' \
		--cap mgr 'allow *' --cap mds 'allow *' >/dev/null
	ceph-authtool "$state/mon.a.keyring" --import-keyring \
		"$state/client.admin.keyring" >/dev/null
	monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$monport]" \
		"$state/monmap" >/dev/null
	ceph-mon -c "$conf" --mkfs -i a --monmap "$state/monmap" \
		--keyring "$state/mon.a.keyring" >"$state/log/mon-mkfs.out" 2>&1
	spawn mon ceph-mon -c "$conf" -i a -f

	# mgr
	ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' \
		mds 'allow *' -o "$state/mgr.x.keyring" >/dev/null
	spawn mgr ceph-mgr -c "$conf" -i x -f

	# osd: a BlueStore on a sparse file (bluestore block create)
	osd_uuid=$(cat /proc/sys/kernel/random/uuid)
	osd_key=$(ceph-authtool --gen-print-key)
	printf '{"cephx_secret": "%s"}\n' "$osd_key" >"$state/osd-secret.json"
	id=$(ceph_ osd new "$osd_uuid" -i "$state/osd-secret.json")
	rm -f "$state/osd-secret.json"
	[ "$id" = 0 ] || { log "unexpected OSD id '$id'"; return 1; }
	mkdir -p "$state/osd.0"
	ceph-authtool --create-keyring "$state/osd.0.keyring" --name osd.0 \
		--add-key "$osd_key" >/dev/null
	ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" \
		>"$state/log/osd-mkfs.out" 2>&1
	spawn osd ceph-osd -c "$conf" -i 0 -f

	# radosgw and its user
	ceph_ auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' \
		mgr 'allow rw' -o "$state/client.rgw.a.keyring" >/dev/null
	spawn radosgw radosgw -c "$conf" -n client.rgw.a -f
	echo "$rgwport" >"$state/port.pending"
	wait_rgw "$rgwport" "$limit"
	timeout 60 radosgw-admin -c "$conf" user create --uid=pgckpt-test \
		--display-name=pgckpt-test --access-key="$access_key" \
		--secret-key="$secret_key" >"$state/log/user.out" 2>&1
	mv "$state/port.pending" "$state/port"
	log "started in $((SECONDS - t0)) s; radosgw on 127.0.0.1:$rgwport"
	do_env
}

case "$cmd" in
start)
	# set -e stops at the first failure; the trap then stops what started.
	trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed; logs in $state/log"; do_stop; fi' EXIT
	do_start ;;
stop) do_stop ;;
env) do_env ;;
*) echo "usage: $0 start|stop|env STATE" >&2; exit 1 ;;
esac
