#!/usr/bin/env python3
"""Misbehaves on purpose, as HOG says: `memory` allocates and touches memory
until something stops it; `forks` starts as many sleeping children as it can
and prints how many it got."""

import os
import sys
import time

what = os.environ.get("HOG", "memory")
if what == "memory":
    chunks = []
    while True:
        chunks.append(bytearray(16 << 20))  # zero-filled: every page touched
        time.sleep(0.01)
elif what == "forks":
    children = 0
    for _ in range(4000):
        try:
            pid = os.fork()
        except OSError as e:
            print(f"fork failed after {children} children: {e}", flush=True)
            break
        if pid == 0:
            # A small process, so memory does not run out before pids do.
            try:
                os.execv("/bin/sleep", ["sleep", "3600"])
            finally:
                os._exit(1)
        children += 1
    else:
        print(f"started all {children} children", flush=True)
    time.sleep(3600)
