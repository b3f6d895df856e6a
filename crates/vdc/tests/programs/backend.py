#!/usr/bin/env python3
"""A test backend: answers GET / after DELAY_MS milliseconds, GET /fail with
a 503, GET /close by closing its listening socket while the process stays
alive (so new connections are refused), GET /burn by spinning a core for
BURN_SECONDS."""

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELAY = int(os.environ.get("DELAY_MS", "0")) / 1000.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(200, "ok\n")
        if self.path == "/fail":
            return self.reply(503, "failing on purpose\n")
        if self.path == "/close":
            self.reply(200, "closing\n")
            threading.Thread(target=close_listener, daemon=True).start()
            return
        time.sleep(DELAY)
        return self.reply(200, os.environ.get("VDC_INSTANCE", "?") + "\n")


def close_listener():
    time.sleep(0.1)
    server.socket.close()
    time.sleep(3600)


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
try:
    server.serve_forever()
except OSError:
    time.sleep(3600)
