#!/usr/bin/env python3
"""A web server whose answers slow down as it gets busier: each request
waits WORK_MS, plus SHARE_MS for every other request in flight when it
arrives, like a server whose capacity is shared among its requests. One
instance holds p99 <= 100 ms up to about 30 requests a second."""

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORK = int(os.environ.get("WORK_MS", "10")) / 1000.0
SHARE = int(os.environ.get("SHARE_MS", "20")) / 1000.0

in_flight = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without this, Nagle's algorithm
    # and delayed ACKs add 40 ms to every keep-alive exchange.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        global in_flight
        if self.path == "/healthz":
            return self.answer(b"ok\n")
        with lock:
            others = in_flight
            in_flight += 1
        try:
            time.sleep(WORK + SHARE * others)
            self.answer(f"{os.environ.get('VDC_INSTANCE', '?')}\n".encode())
        finally:
            with lock:
                in_flight -= 1

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
