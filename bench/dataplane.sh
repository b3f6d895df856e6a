#!/usr/bin/env bash
# The data plane side by side with what a user would otherwise put in front
# of a web server. One nginx backend instance (one worker, keep-alive,
# run by vdc), and in front of it, in turn:
#
#   direct    nothing: the client talks to the backend
#   haproxy   HAProxy, HTTP mode, one thread, connection reuse to the backend
#   nginx     nginx as a reverse proxy, one worker, upstream keep-alive
#   vdc       the vdc gateway (built-in HTTP load balancer), measurements on
#
# Two bodies: 128 bytes (GET /) and 64 KiB (GET /big). For each target:
#
#   - requests/s at saturation: wrk -t1 -cCONNECTIONS -dDURATION, the
#     median of REPS runs (closed loop: right for throughput);
#   - latency at a fixed rate below saturation: vdc-loadgen, open loop
#     (each request's latency counts from when it was due, so a stall is
#     not hidden the way a closed loop hides it), RATE requests/s, by
#     default half of HAProxy's saturation rate for that body;
#   - the proxy's resident memory (VmRSS) after the runs.
#
# TCP: one redis instance, direct, through HAProxy in TCP mode and through
# the vdc gateway (TCP, byte for byte), driven by redis-benchmark (32
# clients, pipelines of 16): SET and GET of 16-byte and of 16 KiB values.
#
# With taskset and 2 CPUs the load generators run on one CPU and the
# proxies and the backend on the other: every cycle a proxy spends is taken
# from the backend, so req/s compares the proxies' cost per request.
#
#   bench/dataplane.sh
#   REPS=3 DURATION=10s CONNECTIONS=32 RATE=8000 bench/dataplane.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need wrk nginx haproxy redis-server redis-benchmark
UP_FLAGS=(--shared-loopback)

REPS="${REPS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
RATE="${RATE:-}"
LOADGEN="${LOADGEN:-$ROOT/target/release/vdc-loadgen}"
if [[ ! -x "$LOADGEN" ]]; then
    echo "building $LOADGEN (cargo build --release -p vdc-loadgen)…" >&2
    (cd "$ROOT" && cargo build --release -p vdc-loadgen) >&2
fi

read -r WRK_CPU SERVER_CPU < <(python3 -c 'import os; c = sorted(os.sched_getaffinity(0)); print(c[0], c[1] if len(c) > 1 else "")')
WRK_PIN=()
SERVER_PIN=()
if command -v taskset >/dev/null 2>&1 && [[ -n "$SERVER_CPU" ]]; then
    WRK_PIN=(taskset -c "$WRK_CPU")
    SERVER_PIN=(taskset -c "$SERVER_CPU")
    pinning="load generators on CPU $WRK_CPU; proxies and the backend on CPU $SERVER_CPU"
else
    pinning="not pinned (taskset missing or a single CPU)"
fi

machine
echo "$pinning"

# --- the backend and the proxies ------------------------------------------

dir="$BENCH_TMP/dataplane"
mkdir -p "$dir"
gw_port="$(free_port)"
addr="127.0.0.1:$(free_port)"
spec="$(spec_copy "$BENCH/specs/gateway-nginx.toml" "$gw_port" "$dir/spec")"
# Started on the proxies' CPU, so the server gives its data plane one
# thread (one per CPU it may use), as HAProxy and nginx are given one
# thread and one worker.
up_detached "$addr" "$dir/data" "$spec" "${SERVER_PIN[@]}" >/dev/null 2>"$dir/up.err" ||
    { cat "$dir/up.err" >&2; exit 1; }
pin_server "$addr"
backend="$(instance_locator "$addr" gwbench nginx http)"
vdc_pid="$(server_pid "$addr")"

hp_port="$(free_port)"
start_haproxy http "$hp_port" "$backend" "$dir"
haproxy_pid="$HAPROXY_PID"

ng_port="$(free_port)"
mkdir -p "$dir/nginx-proxy/tmp"
cat >"$dir/nginx-proxy/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx-proxy/nginx.pid;
error_log stderr warn;
$([ "$(id -u)" = 0 ] && echo "user root root;")
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/nginx-proxy/tmp/body;
    proxy_temp_path $dir/nginx-proxy/tmp/proxy;
    fastcgi_temp_path $dir/nginx-proxy/tmp/fastcgi;
    uwsgi_temp_path $dir/nginx-proxy/tmp/uwsgi;
    scgi_temp_path $dir/nginx-proxy/tmp/scgi;
    upstream backend {
        server $backend;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$ng_port;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }
    }
}
CONF
"${SERVER_PIN[@]}" nginx -p "$dir/nginx-proxy" -c "$dir/nginx-proxy/nginx.conf" >"$dir/nginx-proxy.log" 2>&1 &
nginx_pid=$!
OWN_PIDS+=("$nginx_pid")

wait_listening "127.0.0.1:$ng_port"
wait_listening "127.0.0.1:$gw_port"
echo "backend: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), one worker, at $backend"
echo "haproxy $(haproxy -v | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p'), nbthread 1; nginx proxy, one worker; vdc gateway at 127.0.0.1:$gw_port"
echo "saturation: wrk -t1 -c$CONNECTIONS -d$DURATION, median of $REPS; fixed rate: vdc-loadgen, open loop, ${DURATION}"

TARGETS=(direct haproxy nginx vdc)
url_of() {
    case "$1" in
        direct) echo "http://$backend$2" ;;
        haproxy) echo "http://127.0.0.1:$hp_port$2" ;;
        nginx) echo "http://127.0.0.1:$ng_port$2" ;;
        vdc) echo "http://127.0.0.1:$gw_port$2" ;;
    esac
}

# rss PID...: the sum of their VmRSS in KiB.
rss() {
    local total=0 pid kb
    for pid in "$@"; do
        kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}
# The nginx proxy's master and worker.
nginx_pids() { echo "$nginx_pid" $(pgrep -P "$nginx_pid" || true); }

# --- one body ----------------------------------------------------------------

run_case() {
    local name="$1" path="$2" target url rep rate
    echo
    echo "== $name (GET $path) =="
    for target in "${TARGETS[@]}"; do
        url="$(url_of "$target" "$path")"
        "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d2s "$url" >/dev/null
        : >"$BENCH_TMP/$name.$target.sat"
    done
    for ((rep = 1; rep <= REPS; rep++)); do
        for target in "${TARGETS[@]}"; do
            url="$(url_of "$target" "$path")"
            "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$BENCH_TMP/wrk.out"
            wrk_parse "$BENCH_TMP/wrk.out" >>"$BENCH_TMP/$name.$target.sat"
            printf '  saturation run %d  %-8s %s\n' "$rep" "$target" "$(awk '{print $1 " req/s"}' <"$BENCH_TMP/$name.$target.sat" | tail -1)"
        done
    done
    rate="$RATE"
    if [[ -z "$rate" ]]; then
        rate="$(python3 -c 'import statistics,sys; print(int(statistics.median(float(l.split()[0]) for l in open(sys.argv[1]) if l.strip()) / 2))' "$BENCH_TMP/$name.haproxy.sat")"
    fi
    echo "  fixed rate: $rate req/s"
    for target in "${TARGETS[@]}"; do
        url="$(url_of "$target" "$path")"
        "${WRK_PIN[@]}" "$LOADGEN" --url "$url" --rate "$rate" --duration "$DURATION" \
            --connections 64 --warmup 2s >"$BENCH_TMP/$name.$target.lat"
    done
    {
        echo "vdc $(rss "$vdc_pid")"
        echo "haproxy $(rss "$haproxy_pid")"
        echo "nginx $(rss $(nginx_pids))"
        echo "direct 0"
    } >"$BENCH_TMP/$name.rss"
    python3 - "$BENCH_TMP" "$name" "$rate" "${TARGETS[@]}" <<'PY'
import json, statistics, sys
tmp, name, rate, targets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
sat = {}
for t in targets:
    rows = [list(map(float, l.split())) for l in open(f"{tmp}/{name}.{t}.sat") if l.strip()]
    sat[t] = statistics.median(r[0] for r in rows)
lat = {t: json.load(open(f"{tmp}/{name}.{t}.lat")) for t in targets}
rss = dict(l.split() for l in open(f"{tmp}/{name}.rss"))
hp = sat["haproxy"]
print(f"  {'target':<8} {'req/s':>9} {'vs haproxy':>10}   at {rate} req/s: {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'errors':>6}   {'RSS MiB':>7}")
for t in targets:
    l = lat[t]
    mem = "" if t == "direct" else f"{int(rss[t]) / 1024:.1f}"
    print(f"  {t:<8} {sat[t]:>9.0f} {sat[t] / hp:>9.2f}x   {'':>{len(rate) + 13}}{l['p50_ms']:>7.3f} {l['p99_ms']:>7.3f} {l['p999_ms']:>8.3f} {l['errors']:>6}   {mem:>7}")
d = lat["direct"]
for t in ("haproxy", "nginx", "vdc"):
    l = lat[t]
    print(f"  added by {t:<8}: p50 {l['p50_ms'] - d['p50_ms']:+.3f} ms, p99 {l['p99_ms'] - d['p99_ms']:+.3f} ms, p99.9 {l['p999_ms'] - d['p999_ms']:+.3f} ms")
print(f"  vdc / haproxy: {sat['vdc'] / hp:.2f}x the requests/s; added p99 {lat['vdc']['p99_ms'] - d['p99_ms']:+.3f} ms vs {lat['haproxy']['p99_ms'] - d['p99_ms']:+.3f} ms")
PY
}

run_case small /
run_case large /big

# --- TCP ---------------------------------------------------------------------

run_tcp() {
    echo
    echo "== tcp: redis, direct vs HAProxy (mode tcp) vs the vdc gateway =="
    local tdir="$BENCH_TMP/tcp" tgw taddr tspec redis_at thp
    tgw="$(free_port)"
    taddr="127.0.0.1:$(free_port)"
    tspec="$(spec_copy "$BENCH/specs/tcp-redis.toml" "$tgw" "$tdir/spec")"
    up_detached "$taddr" "$tdir/data" "$tspec" "${SERVER_PIN[@]}" >/dev/null 2>"$tdir/up.err" ||
        { cat "$tdir/up.err" >&2; exit 1; }
    pin_server "$taddr"
    redis_at="$(instance_locator "$taddr" tcpbench redis resp)"
    thp="$(free_port)"
    start_haproxy tcp "$thp" "$redis_at" "$tdir"
    wait_listening "127.0.0.1:$tgw"
    local target port size rep
    for size in 16 16384; do
        for target in direct haproxy vdc; do
            case "$target" in
                direct) port="${redis_at##*:}" ;;
                haproxy) port="$thp" ;;
                vdc) port="$tgw" ;;
            esac
            : >"$BENCH_TMP/tcp.$size.$target"
            for ((rep = 1; rep <= REPS; rep++)); do
                "${WRK_PIN[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -c 32 -P 16 \
                    -d "$size" -n "$((size > 1000 ? 100000 : 1000000))" --csv 2>/dev/null |
                    python3 -c '
import csv, sys
rows = {r[0].strip(chr(34)): float(r[1].strip(chr(34))) for r in csv.reader(sys.stdin) if len(r) > 1 and r[0] != "test"}
print(rows.get("SET", 0), rows.get("GET", 0))' >>"$BENCH_TMP/tcp.$size.$target"
            done
        done
    done
    python3 - "$BENCH_TMP" "$REPS" <<'PY'
import statistics, sys
tmp = sys.argv[1]
print(f"  {'value':>7} {'target':<8} {'SET/s':>10} {'GET/s':>10} {'GET MiB/s':>10} {'vs haproxy (GET)':>17}")
for size in (16, 16384):
    med = {}
    for t in ("direct", "haproxy", "vdc"):
        rows = [list(map(float, l.split())) for l in open(f"{tmp}/tcp.{size}.{t}") if l.strip()]
        med[t] = [statistics.median(c) for c in zip(*rows)]
    for t in ("direct", "haproxy", "vdc"):
        s, g = med[t]
        print(f"  {size:>6}B {t:<8} {s:>10.0f} {g:>10.0f} {g * size / 2**20:>10.1f} {g / med['haproxy'][1]:>16.2f}x")
PY
    stop_server "$taddr" >/dev/null
}
run_tcp
echo
echo "CPU busy after (1 s sample): $(cpu_busy)% (load average $(cut -d' ' -f1-3 /proc/loadavg))"
