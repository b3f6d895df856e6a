#!/usr/bin/env python3
"""Delay from a request completing to the per-second sample that counts it
reaching a stream subscriber.

    bench/stream-delay.py API_ADDR APP GATEWAY_URL [SECONDS] [RATE]

Subscribes to /v1/streams/metrics?app=APP&kind=gateway (Server-Sent Events),
sends RATE requests a second to GATEWAY_URL for SECONDS, and for every
request takes (arrival of the sample for the second it completed in) minus
(its completion time). Prints the count and p50/p90/p99/max of that delay."""

import http.client
import json
import os
import sys
import threading
import time
import urllib.request

api, app, url = sys.argv[1], sys.argv[2], sys.argv[3]
seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 20
rate = int(sys.argv[5]) if len(sys.argv) > 5 else 50

completions = {}  # unix second -> list of completion times (wall clock)
lock = threading.Lock()
arrivals = {}  # unix second -> arrival time of the first sample with requests


def subscribe():
    host, port = api.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))
    headers = {"Authorization": "Bearer " + os.environ.get("VDC_TOKEN", "")}
    conn.request("GET", f"/v1/streams/metrics?app={app}&kind=gateway", headers=headers)
    response = conn.getresponse()
    buffer = b""
    while True:
        chunk = response.read1(65536)
        if not chunk:
            return
        now = time.time()
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            for line in block.split(b"\n"):
                if line.startswith(b"data: "):
                    m = json.loads(line[6:])
                    if m.get("type") == "traffic" and m["traffic"]["requests"] > 0:
                        arrivals.setdefault(m["ts"], now)


threading.Thread(target=subscribe, daemon=True).start()
time.sleep(1.5)

interval = 1.0 / rate
next_at = time.time()
end = next_at + seconds
while time.time() < end:
    with urllib.request.urlopen(url, timeout=5) as r:
        r.read()
    done = time.time()
    with lock:
        completions.setdefault(int(done), []).append(done)
    next_at += interval
    pause = next_at - time.time()
    if pause > 0:
        time.sleep(pause)

time.sleep(2.5)
delays = []
missing = 0
for second, times in completions.items():
    if second not in arrivals:
        missing += len(times)
        continue
    delays.extend(arrivals[second] - t for t in times)
delays.sort()


def q(p):
    return delays[min(len(delays) - 1, int(p * len(delays)))] * 1000


print(f"requests {sum(len(v) for v in completions.values())}, measured {len(delays)}, without a sample {missing}")
print(f"delay_ms p50 {q(0.5):.0f} p90 {q(0.9):.0f} p99 {q(0.99):.0f} max {delays[-1] * 1000:.0f}")
