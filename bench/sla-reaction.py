#!/usr/bin/env python3
"""Measures how fast vdc restores an SLA after a load step (run by
bench/sla-reaction.sh, which starts the server and the app).

    sla-reaction.py API_ADDR TOKEN GATEWAY_URL STEPS LOW HIGH

The load is open-loop: requests leave on a fixed schedule whatever the
answers do (a thread pool large enough that no request waits for a free
sender), and latency counts from the scheduled time, so a slow server cannot
hide its slowness by slowing the load (no coordinated omission)."""

import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

api, token, url = sys.argv[1], sys.argv[2], sys.argv[3]
steps, low, high = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
APP, COMPONENT, OBJECTIVE_S = "sla", "web", 0.100
target = urlparse(url)
local = threading.local()
failures = []  # what failed requests got, for the report
stale_retries = []  # requests resent after an idle keep-alive connection closed


def api_get(path):
    request = urllib.request.Request(f"http://{api}{path}")
    request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=5) as r:
        return json.loads(r.read())


def scale_view():
    return api_get(f"/v1/apps/{APP}/components/{COMPONENT}/scale")


def send(scheduled, results):
    for attempt in (1, 2):
        conn = getattr(local, "conn", None)
        reused = conn is not None
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        try:
            conn.request("GET", target.path or "/")
            response = conn.getresponse()
            body = response.read()
            ok = response.status == 200
            if not ok:
                failures.append(f"{response.status} {body[:200]!r}")
            break
        except (OSError, http.client.HTTPException) as e:
            local.conn = None
            ok = False
            # A keep-alive connection the server closed while it sat idle
            # (after 30 s without a request): resent once on a new one, as
            # browsers and most HTTP clients do.
            if reused and attempt == 1 and isinstance(
                    e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
                stale_retries.append(repr(e))
                continue
            failures.append(repr(e))
            break
    results.append((scheduled, time.time() - scheduled, ok))


def load(pool, rate, seconds, results):
    """Sends `rate` requests a second for `seconds`; returns when the last
    one is scheduled."""
    start = time.time()
    n = int(rate * seconds)
    for i in range(n):
        at = start + i / rate
        delay = at - time.time()
        if delay > 0:
            time.sleep(delay)
        pool.submit(send, at, results)


def p99(latencies):
    latencies = sorted(latencies)
    return latencies[max(0, int(len(latencies) * 0.99 + 0.999999) - 1)]


BUCKET_S = 0.5


def per_bucket(results, since):
    """Latencies by the half-second their requests were scheduled in."""
    buckets = {}
    for scheduled, latency, ok in results:
        if scheduled >= since:
            buckets.setdefault(int((scheduled - since) / BUCKET_S), []).append(
                latency if ok else float("inf"))
    return buckets


def wait_for_one_replica(pool, results):
    deadline = time.time() + 120
    while time.time() < deadline:
        view = scale_view()
        if view["replicas"] == 1 and view["ready"] == 1:
            return
        load(pool, low, 2, results)
    raise SystemExit("the app did not go back to one replica within 2 minutes")


def record(path, until):
    """Writes what the autoscaler sees, second by second, as JSON lines: the
    gateway's arrivals, each instance's answers (count, errors, latency
    summary), and the replicas set and ready as the API shows them. The
    autoscaler's tests replay such a recording (crates/vdc-autoscaler/tests)."""
    host, port = api.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", f"/v1/streams/metrics?app={APP}",
                 headers={"Authorization": "Bearer " + token})
    response = conn.getresponse()
    seconds, buffer, last = {}, b"", None
    while time.time() < until:
        chunk = response.read1(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            for line in block.split(b"\n"):
                if not line.startswith(b"data: "):
                    continue
                m = json.loads(line[6:])
                if m.get("type") != "traffic":
                    continue
                second = seconds.setdefault(m["ts"], {"ts": m["ts"], "arrivals": 0, "instances": []})
                if m["kind"] == "gateway":
                    second["arrivals"] += m["traffic"]["requests"]
                elif m["kind"] == "instance" and m["tags"].get("target") == "web.http":
                    t = m["traffic"]
                    second["instances"].append({
                        "requests": t["requests"],
                        "errors": t["responses_5xx"] + t["errors_other"],
                        "latency": m.get("latency"),
                    })
                if last is None or m["ts"] > last:
                    if last is not None:
                        view = scale_view()
                        seconds[last]["replicas"] = view["replicas"]
                        seconds[last]["ready"] = view["ready"]
                    last = m["ts"]
    with open(path, "w") as f:
        for ts in sorted(seconds):
            if "replicas" in seconds[ts]:
                f.write(json.dumps(seconds[ts]) + "\n")


def one_step(pool, number):
    results = []
    wait_for_one_replica(pool, results)
    recorder = None
    if number == 1 and os.environ.get("RECORD"):
        recorder = threading.Thread(target=record, args=(os.environ["RECORD"], time.time() + 60))
        recorder.start()
    load(pool, low, 3, results)
    step_at = time.time()
    ready_at = {}

    def watch():
        # When the replica count set by the first decision is ready.
        while time.time() < step_at + 30:
            view = scale_view()
            if view["replicas"] > 1 and view["ready"] >= view["replicas"] and "t" not in ready_at:
                ready_at["t"] = time.time()
                ready_at["replicas"] = view["replicas"]
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    load(pool, high, 25, results)
    time.sleep(2)
    watcher.join()
    if recorder:
        # The load falls back, and the replicas are given back.
        load(pool, low, 30, results)
        recorder.join()

    events = api_get(f"/v1/events?app={APP}&limit=1000")

    def scales_up(reason):
        # "…; 3 → 5 replicas…"
        try:
            before, after = reason.split(" replicas")[0].rsplit(" ", 3)[-3::2]
            return int(after) > int(before)
        except (ValueError, IndexError):
            return False
    ups = sorted((e for e in events if e["kind"] == "scaled" and e["ts_ms"] / 1000 >= step_at
                  and scales_up(e["reason"])), key=lambda e: e["ts_ms"])
    buckets = per_bucket(results, step_at)
    indices = sorted(buckets)
    over = [b for b in indices if p99(buckets[b]) > OBJECTIVE_S]
    if not over:
        print(f"step {number}: p99 never went over the objective at {high:.0f} req/s")
        return None
    breach = step_at + over[0] * BUCKET_S
    recovered = None
    # Back under: the first half-second from which p99 holds for 3 s.
    hold = int(3 / BUCKET_S)
    for b in indices:
        if b <= over[0]:
            continue
        window = [buckets.get(b + k) for k in range(hold)]
        if all(w is not None and p99(w) <= OBJECTIVE_S for w in window):
            recovered = step_at + b * BUCKET_S
            break
    decision = ups[0]["ts_ms"] / 1000 if ups else None
    row = {
        "decision": decision - breach if decision else None,
        "ready": ready_at["t"] - breach if "t" in ready_at else None,
        "recovered": recovered - breach if recovered else None,
        "replicas": ready_at.get("replicas"),
        "reason": ups[0]["reason"] if ups else "no decision",
        "failed": sum(1 for _, _, ok in results if not ok),
    }

    def fmt(v):
        return f"{v:6.2f}" if v is not None else "     -"
    print(f"{number:>4}  {fmt(row['decision'])}  {fmt(row['ready'])}  {fmt(row['recovered'])}"
          f"  {row['replicas'] or '-':>8}  {row['failed']:>6}  {row['reason']}")
    return row


def main():
    print(f"{'step':>4}  {'decide':>6}  {'ready':>6}  {'p99 ok':>6}  {'replicas':>8}  {'failed':>6}  decision")
    print(f"{'':>4}  {'(s)':>6}  {'(s)':>6}  {'(s)':>6}")
    rows = []
    with ThreadPoolExecutor(max_workers=256) as pool:
        for number in range(1, steps + 1):
            row = one_step(pool, number)
            if row:
                rows.append(row)
    print()
    for key, label in [("decision", "to the decision"), ("ready", "to new replicas ready"),
                       ("recovered", "to p99 back under the objective")]:
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            print(f"median time from the first second over the objective {label}: "
                  f"{statistics.median(values):.2f} s (of {len(values)} steps)")
    if failures:
        print(f"{len(failures)} requests failed; the first: {failures[:5]}")
    if stale_retries:
        print(f"{len(stale_retries)} requests were resent because their idle keep-alive "
              f"connection had been closed (as an HTTP client does)")
    recovered = [r["recovered"] for r in rows if r["recovered"] is not None]
    if recovered:
        median = statistics.median(recovered)
        print(f"target: under 5 s — {'met' if median < 5 else 'NOT met'}; "
              f"vs Kubernetes HPA's 15 s evaluation period alone: {median / 15:.2f}×")


main()
