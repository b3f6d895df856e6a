#!/usr/bin/env python3
"""A web server for the shop example.

Serves on 127.0.0.1:$PORT and keeps its data in the database it reaches
through its `db` link ($VDC_LINK_DB, an address that never changes): the
example's kvdb.py, or redis when DB_PROTOCOL=redis.
    GET  /healthz        -> 200 ok
    GET  /               -> {"instance": ..., "hits": <counter in the db>}
    GET  /items/<key>    -> the value, or 404
    PUT  /items/<key>    -> stores the request body
"""

import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INSTANCE = os.environ.get("VDC_INSTANCE", "web")
DB_HOST, DB_PORT = os.environ["VDC_LINK_DB"].rsplit(":", 1)

PROTOCOL = os.environ.get("DB_PROTOCOL", "kvdb")

local = threading.local()


class DbError(Exception):
    pass


def encode(command):
    """One command as the database's protocol wants it."""
    if PROTOCOL != "redis":
        return (command + "\n").encode("utf-8")
    args = command.split(" ", 2)
    out = f"*{len(args)}\r\n"
    for a in args:
        out += f"${len(a.encode('utf-8'))}\r\n{a}\r\n"
    return out.encode("utf-8")


def decode(reader):
    """One reply, in the kvdb protocol's words (VALUE x, NONE, OK, an integer)."""
    line = reader.readline()
    if not line:
        raise OSError("connection closed")
    line = line.decode("utf-8").rstrip("\r\n")
    if PROTOCOL != "redis":
        return line
    kind, rest = line[:1], line[1:]
    if kind in "+:":
        return rest
    if kind == "-":
        raise DbError(rest)
    if kind == "$":
        n = int(rest)
        if n < 0:
            return "NONE"
        data = reader.read(n + 2)[:n]
        return "VALUE " + data.decode("utf-8")
    raise DbError("unexpected reply " + line)


def db(command):
    """Sends one command over this thread's connection, reconnecting once."""
    for attempt in range(2):
        conn = getattr(local, "conn", None)
        try:
            if conn is None:
                sock = socket.create_connection((DB_HOST, int(DB_PORT)), timeout=5)
                conn = local.conn = (sock, sock.makefile("rb"))
            sock, reader = conn
            sock.sendall(encode(command))
            return decode(reader)
        except OSError as e:
            local.conn = None
            if attempt == 1:
                raise DbError(str(e))
    raise DbError("unreachable")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out in separate writes: without this, each response
    # waits for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Instance", INSTANCE)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        try:
            if self.path == "/healthz":
                return self.reply(200, "ok\n", "text/plain")
            if self.path == "/":
                hits = int(db("INCR hits"))
                return self.reply(200, json.dumps({"instance": INSTANCE, "hits": hits}) + "\n")
            if self.path.startswith("/items/"):
                key = self.path[len("/items/"):]
                answer = db("GET " + key)
                if answer == "NONE":
                    return self.reply(404, json.dumps({"error": "no such item"}) + "\n")
                return self.reply(200, json.dumps({"key": key, "value": answer[6:], "instance": INSTANCE}) + "\n")
            return self.reply(404, json.dumps({"error": "not found"}) + "\n")
        except DbError as e:
            return self.reply(503, json.dumps({"error": "database unavailable: " + str(e)}) + "\n")

    def do_PUT(self):
        if not self.path.startswith("/items/"):
            return self.reply(404, json.dumps({"error": "not found"}) + "\n")
        key = self.path[len("/items/"):]
        length = int(self.headers.get("Content-Length", "0"))
        value = self.rfile.read(length).decode("utf-8").replace("\n", " ")
        if not key or " " in key:
            return self.reply(400, json.dumps({"error": "bad key"}) + "\n")
        try:
            db(f"SET {key} {value}")
        except DbError as e:
            return self.reply(503, json.dumps({"error": "database unavailable: " + str(e)}) + "\n")
        return self.reply(200, json.dumps({"key": key, "stored": True, "instance": INSTANCE}) + "\n")

    do_POST = do_PUT


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = int(os.environ["PORT"])
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer((os.environ.get("VDC_HOST", "127.0.0.1"), port), Handler)
    server.daemon_threads = True
    print(f"web {INSTANCE}: listening on port {port}, database at {DB_HOST}:{DB_PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
