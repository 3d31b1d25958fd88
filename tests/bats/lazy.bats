#!/usr/bin/env bats
# SPDX-License-Identifier: Apache-2.0
#
# lazy.bats - `pgckpt restore --background --listen SOCKET IMAGE`, the page
# server for other processes: examples/lazy_consumer attaches, reads random
# pages then every page, byte-exact against the original memory file; the
# server survives a consumer killed mid-way, garbage, a handoff without a
# uffd, regions outside the image and a silent peer, then still serves a
# good consumer; several consumers at once; --once, --timeout, SIGTERM (the
# socket file is removed; a consumer being served finishes first, unless a
# second signal comes) and usage errors; a working set recorded by one
# server is placed first by the next, and one of another image, truncated,
# damaged or empty is ignored with one warning. Every wait is bounded.

load helpers

CONSUMER="$PGCKPT_BUILD/examples/lazy_consumer"

setup() {
	common_setup
	[ -x "$CONSUMER" ] || fail "lazy_consumer not built: $CONSUMER"
	UNPRIV_DIR=
}

teardown() {
	common_teardown
	[ -z "$UNPRIV_DIR" ] || rm -rf "$UNPRIV_DIR"
}

# start_server IMAGE [OPTION]...: a server on ./s.sock, its stderr in
# server.log; sets SRV_PID and waits (at most 10 s) for the socket.
start_server() {
	local img=$1 i
	shift
	"$PGCKPT" restore --background --listen s.sock "$@" "$img" 2>server.log 3>&- &
	SRV_PID=$!
	BG_PIDS+=("$SRV_PID")
	for i in $(seq 200); do
		[ -S s.sock ] && return 0
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat server.log
	fail "server did not listen"
}

# wait_server: wait (at most 15 s) for the server to exit; sets SRV_STATUS.
wait_server() {
	local i
	for i in $(seq 300); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$SRV_PID" 2>/dev/null; then
		kill -9 "$SRV_PID"
		cat server.log
		fail "server did not exit"
	fi
	SRV_STATUS=0
	wait "$SRV_PID" || SRV_STATUS=$?
}

# server_ok: wait_server, and fail with its log unless it exited 0.
server_ok() {
	wait_server
	[ "$SRV_STATUS" = 0 ] || { cat server.log; fail "server exited $SRV_STATUS"; }
}

# wait_log PATTERN: wait (at most 10 s) for PATTERN (grep -E) in server.log.
wait_log() {
	local i
	for i in $(seq 200); do
		grep -qE "$1" server.log && return 0
		sleep 0.05
	done
	cat server.log
	fail "server never logged: $1"
}

# stopped_consumer OPTION...: the example consumer in the background, output
# in ./out, stopping itself (SIGSTOP) after 20 random pages; sets CONS_PID
# (the consumer's own pid, as the server logged it) and CONS_JOB.
stopped_consumer() {
	local i
	timeout 20 "$CONSUMER" --stop-after 20 "$@" s.sock >out 2>&1 &
	CONS_JOB=$!
	BG_PIDS+=("$CONS_JOB")
	wait_log 'consumer 1 \(pid [0-9]+\): connected'
	CONS_PID=$(sed -n 's/.*consumer 1 (pid \([0-9]*\)): connected.*/\1/p' server.log)
	for i in $(seq 200); do
		[ "$(ps -o stat= -p "$CONS_PID" | cut -c1)" = T ] && return 0
		sleep 0.05
	done
	fail "consumer did not stop"
}

# consumer [OPTION]...: the example consumer on ./s.sock, at most 20 s.
consumer() {
	timeout 20 "$CONSUMER" "$@" s.sock
}

# bad_client KIND: a misbehaving consumer written in Python.
bad_client() {
	timeout 10 python3 - "$1" <<'EOF'
import ctypes, json, os, socket, sys, time
kind = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("s.sock")
region = {"base_host_virt_addr": 0x7f0000000000, "size": 1 << 20, "offset": 0, "page_size": 4096}

def userfaultfd():
    import platform
    nr = {"x86_64": 323, "aarch64": 282, "riscv64": 282, "ppc64le": 364,
          "s390x": 355, "i686": 374, "armv7l": 388}.get(platform.machine())
    if nr is None:
        sys.exit("userfaultfd: syscall number unknown on " + platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(nr, os.O_CLOEXEC | os.O_NONBLOCK)      # userfaultfd(2)
    if fd < 0 and ctypes.get_errno() == 1:                   # EPERM: user mode only
        fd = libc.syscall(nr, os.O_CLOEXEC | os.O_NONBLOCK | 1)
    if fd < 0:
        sys.exit("userfaultfd: %s" % os.strerror(ctypes.get_errno()))
    return fd

if kind == "garbage":
    s.sendall(b"\x00\xffnot json at all]]]" * 10)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)                      # wait for the server to close
elif kind == "nofd":
    s.sendall(json.dumps([region]).encode())
    s.recv(1)
elif kind in ("outside", "notuffd", "samebase", "disagree"):
    regions = [region]
    if kind == "outside":
        fd = userfaultfd()
        region["offset"] = 1 << 40
    elif kind == "samebase":
        fd = userfaultfd()
        regions.append(dict(region, offset=1 << 20))         # the same address
    elif kind == "disagree":       # Firecracker 1.7+ form, the two keys disagreeing
        fd = userfaultfd()
        region["page_size_kib"] = 8192
    else:
        fd = os.open("/dev/null", os.O_RDONLY)
    socket.send_fds(s, [json.dumps(regions).encode()], [fd])
    s.recv(1)
elif kind == "silent":
    s.recv(1)                      # the server gives up after the handshake timeout
EOF
}

@test "lazy: consumer reads random pages then all pages, byte-exact" {
	mkmem mem 32M --holes 0.1 --zero 0.1 --random 0.2
	pgckpt save mem img
	start_server img --once --timeout 10
	run consumer -n 500 -r 3 -v mem
	assert_success
	assert_output --regexp 'bytes=33554432 regions=3 .*first_access_ms=.* p50_us=.* p99_us=.* all_ms=.* verified=yes$'
	server_ok
	grep -q 'consumer 1 (pid [0-9]*): connected' server.log
	grep -q 'consumer 1: done: 32.0 MiB in 3 region(s), all placed' server.log
	[ ! -e s.sock ]
}

@test "lazy: each Firecracker handoff form (page_size, page_size_kib, both) is served byte-exact" {
	mkmem mem 8M --seed 11
	pgckpt save mem img
	local form
	# --handoff-form: the example's own handoff code, not pgc_lazy_attach.
	for form in page_size kib both; do
		start_server img --once --timeout 10
		run consumer -n 100 -r 2 --handoff-form "$form" -v mem
		assert_success
		assert_output --regexp 'bytes=8388608 regions=2 .*verified=yes$'
		wait_server
		[ "$SRV_STATUS" = 0 ] || { cat server.log; fail "form $form: server exited $SRV_STATUS"; }
		grep -q 'consumer 1: done: 8.0 MiB in 2 region(s), all placed' server.log
	done
	# Both keys present but disagreeing: refused, and the server goes on.
	start_server img --timeout 10
	run bad_client disagree
	assert_success
	run consumer -n 10 --handoff-form both -v mem
	assert_success
	kill -TERM "$SRV_PID"
	wait_server
	grep -q 'consumer 1: refused: bad handoff: invalid JSON' server.log
	grep -q 'consumer 2: done: 8.0 MiB' server.log
	run "$CONSUMER" --handoff-form kib2 s.sock
	assert_failure 1
	assert_output --partial "bad handoff form 'kib2'"
}

# capture_handoff [OPTION]...: listen on ./s.sock, let the example consumer
# (with OPTION...) hand over, and print what came: the number of fds, then
# each region's keys in order and its size, offset and page-size value(s).
# The consumer, blocked on its first fault, is then killed.
capture_handoff() {
	local i py cpid
	rm -f s.sock
	timeout 20 python3 - >handoff.txt 2>&1 3>&- <<'EOF' &
import array, json, socket
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind("s.sock")
l.listen(1)
c, _ = l.accept()
fds = array.array("i")
data, anc, _, _ = c.recvmsg(1 << 16, socket.CMSG_SPACE(4 * fds.itemsize))
for level, kind, d in anc:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
        fds.frombytes(d[:len(d) - len(d) % fds.itemsize])
while True:                        # until the consumer closes the socket
    more = c.recv(1 << 16)
    if not more:
        break
    data += more
print("fds=%d" % len(fds))
for r in json.loads(data):
    print(",".join(r), r["size"], r["offset"], r.get("page_size"), r.get("page_size_kib"))
EOF
	py=$!
	BG_PIDS+=("$py")
	for i in $(seq 200); do
		[ -S s.sock ] && break
		sleep 0.05
	done
	timeout 20 "$CONSUMER" -s 64K -r 2 -n 1 "$@" s.sock >/dev/null 2>&1 3>&- &
	cpid=$!
	BG_PIDS+=("$cpid")
	wait "$py" || { cat handoff.txt; fail "no handoff captured"; }
	kill -9 "$cpid" 2>/dev/null || true
	wait "$cpid" || true
	cat handoff.txt
}

@test "lazy: the example's own handoff sends each form's keys, and pgc_lazy_attach's form as the library does" {
	local lib
	run capture_handoff
	assert_success
	assert_output "fds=1
base_host_virt_addr,size,offset,page_size 32768 0 4096 None
base_host_virt_addr,size,offset,page_size 32768 32768 4096 None"
	lib=$output
	run capture_handoff --handoff-form page_size
	assert_success
	assert_output "$lib"
	run capture_handoff --handoff-form kib
	assert_success
	assert_output "fds=1
base_host_virt_addr,size,offset,page_size_kib 32768 0 None 4096
base_host_virt_addr,size,offset,page_size_kib 32768 32768 None 4096"
	run capture_handoff --handoff-form both
	assert_success
	assert_output "fds=1
base_host_virt_addr,size,offset,page_size,page_size_kib 32768 0 4096 4096
base_host_virt_addr,size,offset,page_size,page_size_kib 32768 32768 4096 4096"
}

@test "lazy: a consumer without privilege (user-mode-only userfaultfd) is served" {
	[ "$(id -u)" -eq 0 ] || skip "needs root, to run the consumer as another user"
	setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$CONSUMER" ||
		skip "the build directory is not reachable by uid 65534"
	# A directory the unprivileged consumer can reach.
	UNPRIV_DIR=$(mktemp -d /tmp/pgckpt-unpriv.XXXXXX)
	chmod 755 "$UNPRIV_DIR"
	cd "$UNPRIV_DIR"
	mkmem mem 4M --seed 12
	chmod 644 mem
	pgckpt save mem img
	# pgc_lazy_attach, then the example's own handoff (--handoff-form).
	local form
	for form in "" both; do
		start_server img --once --timeout 10 --allow-uid 65534
		chmod 666 s.sock
		run setpriv --reuid=65534 --regid=65534 --clear-groups timeout 20 "$CONSUMER" -n 50 \
			${form:+--handoff-form "$form"} -v mem s.sock
		assert_success
		assert_output --partial 'verified=yes'
		wait_server
		[ "$SRV_STATUS" = 0 ]
	done
}

@test "lazy: size learnt from inspect --json, odd-sized file, raw image" {
	mkmem mem 5M --seed 9
	head -c 1234567 mem >odd
	pgckpt save -c none odd img
	start_server img --once --timeout 10
	PGCKPT="$PGCKPT" run consumer -n 50 -i img
	assert_success
	assert_output --partial 'bytes=1236992 '
	wait_server
	[ "$SRV_STATUS" = 0 ]
	start_server img --once --timeout 10
	run consumer -n 50 -v odd
	assert_success
	assert_output --partial 'verified=yes'
	wait_server
	[ "$SRV_STATUS" = 0 ]
}

@test "lazy: server survives a killed consumer and bad handoffs, then serves a good one" {
	mkmem mem 32M --seed 3
	pgckpt save mem img
	# Without the push, the killed consumer surely leaves pages unplaced.
	start_server img --timeout 10 --handshake-timeout 0.5 --no-push
	# A consumer that dies (SIGKILL) after 20 random pages.
	run consumer -n 1000 --kill-after 20 -v mem
	[ "$status" -eq 137 ] || fail "consumer exited $status"
	for kind in garbage nofd notuffd outside samebase silent; do
		run bad_client "$kind"
		assert_success
	done
	run consumer -n 300 -v mem
	assert_success
	assert_output --partial 'verified=yes'
	kill -0 "$SRV_PID"
	kill -TERM "$SRV_PID"
	wait_server
	[ "$SRV_STATUS" = 143 ]
	[ ! -e s.sock ]
	grep -q 'consumer 1: done: .*consumer went away' server.log
	grep -q 'consumer 2: refused: bad handoff: invalid JSON' server.log
	grep -q 'consumer 3: refused: bad handoff: no userfaultfd attached' server.log
	grep -q 'consumer 4: refused: bad handoff: no userfaultfd attached' server.log
	grep -q 'consumer 5: refused: bad handoff: .*outside the memory file' server.log
	grep -q 'consumer 6: refused: bad handoff: .*overlapping' server.log
	grep -q 'consumer 7: refused: no complete handoff within 500 ms' server.log
	grep -q 'consumer 8: done: 32.0 MiB in 1 region(s), all placed' server.log
	[ "$(grep -c 'connected$' server.log)" = 8 ]
}

@test "lazy: several consumers at once, each byte-exact" {
	mkmem mem 16M --seed 4
	pgckpt save mem img
	start_server img --timeout 10
	local i pids=()
	for i in 1 2 3; do
		consumer -n 200 -r "$i" --seed "$i" -v mem >"out$i" 2>&1 &
		pids+=($!)
	done
	for i in 0 1 2; do
		wait "${pids[$i]}" || { cat "out$((i + 1))" server.log; fail "consumer $((i + 1)) failed"; }
	done
	grep -q 'verified=yes' out1
	grep -q 'verified=yes' out2
	grep -q 'verified=yes' out3
	kill -INT "$SRV_PID"
	wait_server
	[ "$SRV_STATUS" = 130 ]
	[ "$(grep -c 'done: 16.0 MiB' server.log)" = 3 ]
	[ ! -e s.sock ]
}

@test "lazy: SIGTERM drains: the socket goes, the consumer being served finishes" {
	mkmem mem 16M --seed 6
	pgckpt save mem img
	# Without the push, the session lasts until the consumer has read every page.
	start_server img --no-push
	stopped_consumer -n 100 -v mem
	kill -TERM "$SRV_PID"
	wait_log 'Terminated: finishing 1 session\(s\); again to stop at once'
	sleep 0.2
	kill -0 "$SRV_PID" || fail "server did not wait for the session"
	[ ! -e s.sock ]
	kill -CONT "$CONS_PID"
	wait "$CONS_JOB" || { cat out server.log; fail "consumer failed"; }
	grep -q 'verified=yes' out
	wait_server
	[ "$SRV_STATUS" = 143 ] || { cat server.log; fail "server exited $SRV_STATUS"; }
	grep -q 'consumer 1: done: 16.0 MiB in 1 region(s)' server.log
	grep -q 'pgckpt: interrupted by Terminated' server.log
}

@test "lazy: a second signal stops a draining server at once" {
	mkmem mem 16M --seed 7
	pgckpt save mem img
	start_server img --no-push
	stopped_consumer -n 100 -v mem
	kill -INT "$SRV_PID"
	wait_log 'Interrupt: finishing 1 session'
	kill -INT "$SRV_PID"
	wait_server
	[ "$SRV_STATUS" = 130 ] || { cat server.log; fail "server exited $SRV_STATUS"; }
	[ ! -e s.sock ]
	kill -KILL "$CONS_PID"
	wait "$CONS_JOB" 2>/dev/null || true
}

@test "lazy: naive one-page-per-fault mode serves byte-exact" {
	mkmem mem 8M --seed 5
	pgckpt save mem img
	start_server img --once --timeout 10 --no-push --fault-bytes 4K
	run consumer -n 100 -v mem
	assert_success
	assert_output --partial 'verified=yes'
	wait_server
	[ "$SRV_STATUS" = 0 ]
	grep -q 'consumer 1: done: 8.0 MiB in 1 region(s), .* 0 B pushed' server.log
}

@test "lazy: a working set recorded by one server is placed first by the next; bad ones are ignored" {
	mkmem mem 16M --seed 21
	pgckpt save mem img
	mkmem other 16M --seed 22
	pgckpt save other img2
	# No push: every page the consumer reads is demanded, so recorded.
	start_server img --once --timeout 10 --no-push --record-working-set ws
	run consumer -n 50 -v mem
	assert_success
	assert_output --partial 'verified=yes'
	server_ok
	[ -s ws ]
	! grep -q 'working set' server.log
	start_server img --once --timeout 10 --working-set ws
	run consumer -n 50 -v mem
	assert_success
	assert_output --partial 'verified=yes'
	server_ok
	! grep -q 'ignored' server.log
	grep -qE 'pushed \([1-9][0-9.]* [KM]iB from the working set\), [0-9]+ push\(es\) cut short for a fault$' server.log ||
		{ cat server.log; fail "nothing placed from the working set, or no push_yields"; }
	# Another image's, a truncated, a damaged and an empty one: one warning, then served.
	head -c 20 ws >ws.short
	cp ws ws.bad && printf '\xff' | dd of=ws.bad bs=1 seek=$(($(stat -c %s ws) - 14)) conv=notrunc 2>/dev/null
	: >ws.empty
	for w in ws:img2:another ws.short:img:truncated ws.bad:img:damaged ws.empty:img:empty; do
		IFS=: read -r f im why <<<"$w"
		start_server "$im" --once --timeout 10 --working-set "$f" --fault-chunk 64K
		run consumer -n 20 -v "$([ "$im" = img ] && echo mem || echo other)"
		assert_success
		assert_output --partial 'verified=yes'
		wait_server
		[ "$SRV_STATUS" = 0 ] || { cat server.log; fail "server exited $SRV_STATUS ($f)"; }
		[ "$(grep -c "working set ignored" server.log)" = 1 ] || { cat server.log; fail "$f"; }
		grep -qi "$f: working set ignored: .*$why" server.log || { cat server.log; fail "$f: $why"; }
	done
}

@test "lazy: ws-merge merges recordings of one image; another image's or a bad one is refused" {
	mkmem mem 16M --seed 23
	pgckpt save mem img
	mkmem other 16M --seed 24
	pgckpt save other img2
	for i in 1 2; do
		start_server img --once --timeout 10 --no-push --record-working-set "ws$i"
		run consumer -n 30 -v mem --seed "$i"
		assert_success
		wait_server
		[ "$SRV_STATUS" = 0 ] || { cat server.log; fail "server exited $SRV_STATUS"; }
	done
	start_server img2 --once --timeout 10 --no-push --record-working-set wso
	run consumer -n 10 -v other
	assert_success
	wait_server
	run pgckpt ws-merge img merged ws1 ws2
	assert_success
	assert_output ""
	[ "$(stat -c %s merged)" -ge "$(stat -c %s ws1)" ]
	# The merged set is used as any recording is.
	start_server img --once --timeout 10 --working-set merged
	run consumer -n 30 -v mem
	assert_success
	assert_output --partial 'verified=yes'
	server_ok
	! grep -q 'ignored' server.log
	run pgckpt ws-merge img bad ws1 wso
	assert_failure 3
	assert_output "pgckpt: ws-merge: wso: not a working set of img (another image's)"
	: >empty
	run pgckpt ws-merge img bad ws1 empty
	assert_failure 3
	run pgckpt ws-merge img bad ws1 missing
	assert_failure 2
	assert_output --partial "pgckpt: ws-merge: missing:"
	[ ! -e bad ]
	run pgckpt ws-merge img bad
	assert_failure 1
	run pgckpt ws-merge nope bad ws1
	assert_failure 2
}

@test "lazy: --timeout with no consumer exits 2 and removes the socket" {
	mkmem mem 1M
	pgckpt save mem img
	run timeout 10 "$PGCKPT" restore --background --listen s.sock --timeout 0.3 img
	assert_failure 2
	assert_output --partial 'pgckpt: restore: s.sock: no consumer within 0.3 s'
	[ ! -e s.sock ]
}

@test "lazy: usage and image errors" {
	mkmem mem 1M
	pgckpt save mem img
	run pgckpt restore --listen s.sock img
	assert_failure 1
	assert_output --partial '--listen needs --background'
	run pgckpt restore --background img
	assert_failure 1
	assert_output --partial '--background needs --listen SOCKET'
	run pgckpt restore --background --listen s.sock img out
	assert_failure 1
	run pgckpt restore --background --listen s.sock --timeout -1 img
	assert_failure 1
	run pgckpt restore --background --listen s.sock --fault-bytes 3K img
	assert_failure 1
	run pgckpt restore --background --listen s.sock nosuch
	assert_failure 2
	echo junk >plain
	run pgckpt restore --background --listen s.sock plain
	assert_failure 3
	touch notsock
	run timeout 10 "$PGCKPT" restore --background --listen notsock --timeout 1 img
	assert_failure 2
	[ -f notsock ]
	[ ! -e s.sock ]
}

@test "lazy: a live socket is never replaced, a stale one is" {
	mkmem mem 4M --seed 5
	pgckpt save mem img
	start_server img --timeout 20
	run timeout 10 "$PGCKPT" restore --background --listen s.sock --timeout 5 img
	assert_failure 2
	assert_output "pgckpt: restore: s.sock: a server is listening on this socket; refusing to replace it"
	[ -S s.sock ]
	run consumer -n 50 -v mem
	assert_success
	assert_output --partial 'verified=yes'
	wait_log 'done: 4.0 MiB in 1 region'
	# A server killed outright leaves a stale socket: the next one replaces it.
	kill -9 "$SRV_PID"
	wait "$SRV_PID" || true
	[ -S s.sock ]
	"$PGCKPT" restore --background --listen s.sock --once --timeout 10 img 2>server.log 3>&- &
	SRV_PID=$!
	BG_PIDS+=("$SRV_PID")
	wait_log 'listening on s.sock'
	run consumer -n 50 -v mem
	assert_success
	server_ok
}

# as_nobody COMMAND...: run COMMAND as user nobody (skip where that is impossible).
as_nobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
}

@test "lazy: the socket is 0600 whatever the umask; other users need --allow-uid" {
	as_nobody true 2>/dev/null || skip "cannot run as nobody"
	mkmem mem 4M --seed 6
	chmod 644 mem
	chmod 755 .
	pgckpt save mem img
	umask 000
	start_server img --timeout 20
	umask 022
	[ "$(stat -c %a s.sock)" = 600 ]
	# Even if someone opens the socket up, the peer's uid is checked (the
	# refused consumer waits for pages that never come: cut it short).
	chmod 666 s.sock
	run timeout 3 setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$CONSUMER" -n 10 -v mem s.sock
	assert_failure
	wait_log "consumer 1 \\(pid [0-9]+, uid $(id -u nobody)\\): refused: its uid may not connect"
	kill -TERM "$SRV_PID"
	wait_server
	# Allowed explicitly, nobody is served.
	start_server img --once --timeout 20 --allow-uid "$(id -u nobody)"
	chmod 666 s.sock
	run timeout 20 setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$CONSUMER" -n 10 -v mem s.sock
	assert_success
	assert_output --partial 'verified=yes'
	server_ok
	run pgckpt restore --background --listen s.sock --allow-uid x img
	assert_failure 1
}

@test "lazy: 150 silent clients do not hold up a real consumer" {
	mkmem mem 4M --seed 7
	pgckpt save mem img
	start_server img --timeout 30 --handshake-timeout 20
	# 150 silent connections from one process, then from 150 processes;
	# the children go when the parent does.
	timeout 60 python3 - <<'EOF' 3>&- &
import os, socket, time
socks = []
for i in range(150):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("s.sock")
    socks.append(s)
parent = os.getpid()
r, w = os.pipe()
for i in range(150):
    if os.fork() == 0:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("s.sock")
        os.write(w, b"x")
        while os.getppid() == parent:
            time.sleep(0.1)
        os._exit(0)
n = 0
while n < 150:
    n += len(os.read(r, 150))
open("silent.ready", "w").close()
time.sleep(30)
EOF
	BG_PIDS+=($!)
	for i in $(seq 400); do
		[ -e silent.ready ] && break
		sleep 0.05
	done
	[ -e silent.ready ] || fail "silent clients did not connect"
	t0=$(date +%s%N)
	run consumer -n 10 -v mem
	t1=$(date +%s%N)
	assert_success
	assert_output --partial 'verified=yes'
	ms=$(((t1 - t0) / 1000000))
	[ "$ms" -lt 1000 ] || { tail server.log; fail "the consumer was served after $ms ms"; }
	grep -q 'refused: too many connections from one process (8)' server.log
}
