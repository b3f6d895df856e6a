#!/usr/bin/env python3
"""Appends numbered records 1, 2, 3, ... to the redis list `log` through the
link VDC_LINK_DB, one after the other, each acknowledged before the next.
It reconnects when the database goes away, and resumes after the highest
record the database has."""

import os
import socket
import time

HOST, PORT = os.environ["VDC_LINK_DB"].rsplit(":", 1)


def command(sock, reader, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    return reply(reader)


def reply(reader):
    line = reader.readline()
    if not line:
        raise ConnectionError("closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = reader.read(n + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [reply(reader) for _ in range(int(rest))]
    raise RuntimeError("unexpected reply %r" % line)


while True:
    try:
        sock = socket.create_connection((HOST, int(PORT)), timeout=5)
        reader = sock.makefile("rb")
        last = command(sock, reader, "LINDEX", "log", "-1")
        n = int(last) if last else 0
        while True:
            n += 1
            command(sock, reader, "RPUSH", "log", n)
            time.sleep(0.002)
    except (OSError, ConnectionError, RuntimeError, ValueError):
        time.sleep(0.05)
