#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# slowproxy.py - a TCP proxy on 127.0.0.1 that waits DELAY seconds after
# accepting each connection before it forwards anything, and with RATE
# forwards at most RATE bytes a second each way, to play a slow S3 server
# in tests/unit/s3.c. Prints its port on the first line of stdout, then
# one line "conn N" per connection accepted and, when one closes, "down B"
# with the bytes it carried from the server; with $SLOWPROXY_REQS set, also
# "req METHOD PATH" for each request line a client sent (the tests count
# GETs and HEADs; few enough lines for the pipe the test reads at the end);
# with $SLOWPROXY_REQ_DELAY, each request is held that many seconds.
# Runs until killed.
# Usage: slowproxy.py DELAY TARGET_PORT [RATE]
import os
import socket
import sys
import threading
import time


out_mu = threading.Lock()


REQ_DELAY = float(os.environ.get("SLOWPROXY_REQ_DELAY") or 0)
METHODS = (b"GET ", b"HEAD ", b"PUT ", b"POST ", b"DELETE ")


def note_requests(b):
    n = 0
    for line in b.split(b"\r\n"):
        if line.startswith(METHODS) and line.endswith(b" HTTP/1.1"):
            n += 1
            with out_mu:
                sys.stdout.write("req %s\n" % line[:-9].decode("latin-1"))
                sys.stdout.flush()
    return n


def pump(src, dst, rate, reqs=False):
    n = 0
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            if reqs and note_requests(b) and REQ_DELAY:
                time.sleep(REQ_DELAY)
            if rate:
                time.sleep(len(b) / rate)
            dst.sendall(b)
            n += len(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return n


def serve(conn, delay, port, rate):
    time.sleep(delay)
    try:
        up = socket.create_connection(("127.0.0.1", port))
    except OSError:
        conn.close()
        return
    reqs = bool(os.environ.get("SLOWPROXY_REQS")) or bool(REQ_DELAY)
    threading.Thread(target=pump, args=(conn, up, rate, reqs), daemon=True).start()
    n = pump(up, conn, rate)
    with out_mu:
        sys.stdout.write("down %d\n" % n)
        sys.stdout.flush()


def main():
    delay, port = float(sys.argv[1]), int(sys.argv[2])
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    print(ls.getsockname()[1], flush=True)
    n = 0
    while True:
        conn, _ = ls.accept()
        n += 1
        with out_mu:
            sys.stdout.write("conn %d\n" % n)
            sys.stdout.flush()
        threading.Thread(target=serve, args=(conn, delay, port, rate), daemon=True).start()


if __name__ == "__main__":
    main()
