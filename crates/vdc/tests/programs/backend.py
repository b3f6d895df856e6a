#!/usr/bin/env python3
"""A test backend: answers GET / after DELAY_MS milliseconds, GET /fail with
a 503, GET /close by closing its listening socket while the process stays
alive (so new connections are refused), GET /burn by spinning a core for
BURN_SECONDS.

Load-dependent latency: with PER_IN_FLIGHT_MS, each request also waits that
long for every other request in flight when it arrives, as a server whose
capacity is shared among its requests. The instance whose VDC_INDEX is
SLOW_INDEX waits SLOW_MS more on every request."""

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELAY = int(os.environ.get("DELAY_MS", "0")) / 1000.0
PER_IN_FLIGHT = int(os.environ.get("PER_IN_FLIGHT_MS", "0")) / 1000.0
if os.environ.get("SLOW_INDEX") == os.environ.get("VDC_INDEX"):
    DELAY += int(os.environ.get("SLOW_MS", "0")) / 1000.0

in_flight = 0
in_flight_lock = threading.Lock()
# Set by GET /close: connections the data plane keeps open are closed too
# at their next request, as a process going away would.
closing = False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's
    # algorithm and delayed ACKs add 40 ms to every keep-alive exchange.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if closing:
            self.close_connection = True
            return
        if self.path == "/healthz":
            return self.reply(200, "ok\n")
        if self.path == "/fail":
            return self.reply(503, "failing on purpose\n")
        if self.path == "/close":
            self.reply(200, "closing\n")
            threading.Thread(target=close_listener, daemon=True).start()
            return
        global in_flight
        with in_flight_lock:
            others = in_flight
            in_flight += 1
        try:
            time.sleep(DELAY + PER_IN_FLIGHT * others)
            return self.reply(200, os.environ.get("VDC_INSTANCE", "?") + "\n")
        finally:
            with in_flight_lock:
                in_flight -= 1


def close_listener():
    global closing
    time.sleep(0.1)
    closing = True
    server.socket.close()
    time.sleep(3600)


class Server(ThreadingHTTPServer):
    request_queue_size = 256


server = Server(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
try:
    server.serve_forever()
except OSError:
    time.sleep(3600)
