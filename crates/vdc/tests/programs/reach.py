#!/usr/bin/env python3
"""Tries to connect to each target in TARGETS ("name=host:port,...") once,
prints "name ok" or "name failed: why" for each, then idles."""

import os
import socket
import time

for item in filter(None, os.environ.get("TARGETS", "").split(",")):
    name, target = item.split("=", 1)
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        print(f"{name} ok", flush=True)
    except OSError as e:
        print(f"{name} failed: {e}", flush=True)
print("done", flush=True)
time.sleep(3600)
