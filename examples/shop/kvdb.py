#!/usr/bin/env python3
"""A small key-value database for the shop example.

Speaks a line protocol over TCP on 127.0.0.1:$PORT:
    PING            -> PONG
    GET key         -> VALUE <value> | NONE
    SET key value   -> OK
    INCR key        -> <new integer value>
    KEYS            -> KEYS <k1> <k2> ...
Every write is appended to $VDC_VOLUME_DATA/kv.log before it is
acknowledged, and the log is replayed at start, so data survives restarts.
"""

import os
import socketserver
import sys
import threading

DATA_DIR = os.environ.get("VDC_VOLUME_DATA", ".")
LOG_PATH = os.path.join(DATA_DIR, "kv.log")

store = {}
lock = threading.Lock()


def replay():
    if not os.path.exists(LOG_PATH):
        return 0
    n = 0
    with open(LOG_PATH, "r", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 2)
            if len(parts) == 3 and parts[0] == "SET":
                store[parts[1]] = parts[2]
                n += 1
    return n


log = None


def persist(key, value):
    log.write(f"SET {key} {value}\n")
    log.flush()
    os.fsync(log.fileno())


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            reply = self.execute(line)
            self.wfile.write((reply + "\n").encode("utf-8"))
            self.wfile.flush()

    def execute(self, line):
        parts = line.split(" ", 2)
        cmd = parts[0].upper()
        if cmd == "PING":
            return "PONG"
        if cmd == "GET" and len(parts) == 2:
            with lock:
                value = store.get(parts[1])
            return "NONE" if value is None else "VALUE " + value
        if cmd == "SET" and len(parts) == 3:
            with lock:
                store[parts[1]] = parts[2]
                persist(parts[1], parts[2])
            return "OK"
        if cmd == "INCR" and len(parts) == 2:
            with lock:
                try:
                    value = int(store.get(parts[1], "0")) + 1
                except ValueError:
                    return "ERR value is not an integer"
                store[parts[1]] = str(value)
                persist(parts[1], str(value))
            return str(value)
        if cmd == "KEYS":
            with lock:
                return "KEYS " + " ".join(sorted(store))
        return "ERR unknown command"


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


def main():
    global log
    os.makedirs(DATA_DIR, exist_ok=True)
    n = replay()
    log = open(LOG_PATH, "a", encoding="utf-8")
    port = int(os.environ["PORT"])
    server = Server((os.environ.get("VDC_HOST", "127.0.0.1"), port), Handler)
    print(f"kvdb: {n} records replayed from {LOG_PATH}; listening on port {port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
