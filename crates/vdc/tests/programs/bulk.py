#!/usr/bin/env python3
"""A stateful component for move benchmarks: keeps BULK_MIB MiB of data in
its volume (written once), appends a line to a journal every 100 ms, and
accepts TCP connections on PORT (its health check)."""

import os
import socket
import threading
import time

VOLUME = os.environ["VDC_VOLUME_DATA"]
SIZE = int(os.environ.get("BULK_MIB", "100")) * 1024 * 1024
bulk = os.path.join(VOLUME, "bulk")

if not os.path.exists(bulk) or os.path.getsize(bulk) != SIZE:
    block = os.urandom(1024 * 1024)
    with open(bulk + ".tmp", "wb") as f:
        for i in range(SIZE // len(block)):
            # Vary each MiB so chunks do not all deduplicate.
            f.write(i.to_bytes(8, "little") + block[8:])
        f.flush()
        os.fsync(f.fileno())
    os.rename(bulk + ".tmp", bulk)


def journal():
    with open(os.path.join(VOLUME, "journal"), "a") as f:
        while True:
            f.write("%f\n" % time.time())
            f.flush()
            time.sleep(0.1)


threading.Thread(target=journal, daemon=True).start()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(os.environ["PORT"])))
server.listen(16)
while True:
    conn, _ = server.accept()
    conn.close()
