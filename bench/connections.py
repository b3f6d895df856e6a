"""Counts the connections a vdc server holds before it refuses more.

    python3 bench/connections.py API_ADDR GATEWAY_ADDR [MAX]

Opens idle connections, as a flood would, and reads what each got a second
later: a 429 (too many from this address) or a 503 (the listener is full),
or nothing (held). Prints, for the API: how many of 1000 connections from
one client address it holds, and of 2000 from 248 addresses (127.0.0.2 and
up); for the gateway: how many of MAX (default 6000) it holds. Every
connection is closed at the end.
"""

import resource
import select
import socket
import sys
import time

api_host, api_port = sys.argv[1].rsplit(":", 1)
gw_host, gw_port = sys.argv[2].rsplit(":", 1)
cap = int(sys.argv[3]) if len(sys.argv) > 3 else 6000

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def flood(host, port, sources, count):
    """Opens `count` connections from `sources` in turn, waits a moment,
    and counts those still held and those answered (refused) at once."""
    conns = []
    for n in range(count):
        conn = socket.socket()
        conn.bind((sources[n % len(sources)], 0))
        try:
            conn.connect((host, int(port)))
        except OSError as e:
            conn.close()
            print(f"  connect {n} failed: {e}")
            break
        conns.append(conn)
    time.sleep(1.0)
    answers = {}
    held = 0
    for conn in conns:
        poller = select.poll()
        poller.register(conn, select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(0):
            held += 1
            continue
        try:
            data = conn.recv(64)
        except OSError:
            data = b"reset"
        line = data.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
        answers[line] = answers.get(line, 0) + 1
    for conn in conns:
        conn.close()
    return held, answers


one, how = flood(api_host, api_port, ["127.0.0.1"], 1000)
print(f"api, 1000 connections from one address: {one} held; refused at once: {how}")
sources = [f"127.0.0.{i}" for i in range(2, 250)]
time.sleep(1)
total, how = flood(api_host, api_port, sources, 2000)
print(f"api, 2000 connections from 248 addresses: {total} held; refused at once: {how}")
time.sleep(1)
gateway, how = flood(gw_host, gw_port, sources, cap)
print(f"gateway, {cap} connections: {gateway} held; refused at once: {how}")
