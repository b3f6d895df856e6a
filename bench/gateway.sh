#!/usr/bin/env bash
# Gateway overhead: requests/s and latency with wrk straight to a backend
# instance (its locator) and through vdc's built-in HTTP load balancer
# (the app's gateway), in two cases:
#
#   nginx  bench/specs/gateway-nginx.toml: the gateway in front of ONE nginx
#          instance serving a 128-byte static file. HAProxy 2.x in front of
#          the same instance is measured too, as the reference a user would
#          otherwise pick (skipped when haproxy is not installed).
#   shop   examples/shop.toml: `GET /` on one Python web instance directly vs
#          through the gateway, which balances over all three (each request
#          also increments a counter in the Python key-value database).
#
#   bench/gateway.sh                    # both cases
#   bench/gateway.sh nginx              # one case
#   REPS=3 DURATION=10s CONNECTIONS=32 bench/gateway.sh
#   VDC=path/to/vdc bench/gateway.sh
#
# Each figure is the median of REPS runs of `wrk -t1 -cCONNECTIONS -dDURATION
# --latency`, taken in turn across the targets after a 2 s warm-up of each.
# With taskset and at least 2 CPUs, wrk runs on one CPU (CPU 0) and the vdc
# server, its instances (and HAProxy) on another (CPU 1): the proxy and the
# backend share one core, so every cycle the proxy spends is taken from the
# backend, as on a busy node.
#
# The servers run with --shared-loopback: "direct" and HAProxy reach the
# backend instance on the host's loopback, which an instance in its own
# network namespace does not listen on. bench/isolation.sh measures what
# namespaces cost the gateway (nothing measurable).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need wrk
UP_FLAGS=(--shared-loopback)

REPS="${REPS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
CASES=("$@")
((${#CASES[@]})) || CASES=(nginx shop)
for c in "${CASES[@]}"; do
    case "$c" in nginx | shop) ;; *) echo "error: unknown case \`$c\` (expected nginx or shop)" >&2; exit 2 ;; esac
done

# The first two CPUs this script may use: wrk on one, the servers on the other.
read -r WRK_CPU SERVER_CPU < <(python3 -c 'import os; c = sorted(os.sched_getaffinity(0)); print(c[0], c[1] if len(c) > 1 else "")')
WRK_PIN=()
SERVER_PIN=()
if command -v taskset >/dev/null 2>&1 && [[ -n "$SERVER_CPU" ]]; then
    WRK_PIN=(taskset -c "$WRK_CPU")
    SERVER_PIN=(taskset -c "$SERVER_CPU")
    pinning="wrk pinned to CPU $WRK_CPU; vdc server, its instances and haproxy pinned to CPU $SERVER_CPU (taskset)"
else
    pinning="not pinned (taskset missing or a single CPU): wrk and the servers share the CPUs"
fi

machine
echo "$pinning"
echo "wrk -t1 -c$CONNECTIONS -d$DURATION --latency; median of $REPS runs each"

# Instances whose CPU throttling is shown with each run (set per case).
WATCH_PIDS=()

# measure CASE LABEL=URL...: warm up, then REPS rounds over the targets.
# Writes "$BENCH_TMP/CASE.LABEL.runs" with "rps p50 p99 errors timeouts" lines.
measure() {
    local case="$1" pair label url rep
    shift
    for pair in "$@"; do
        label="${pair%%=*}" url="${pair#*=}"
        "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d2s "$url" >/dev/null
        : >"$BENCH_TMP/$case.$label.runs"
    done
    for ((rep = 1; rep <= REPS; rep++)); do
        for pair in "$@"; do
            label="${pair%%=*}" url="${pair#*=}"
            local out="$BENCH_TMP/$case.$label.$rep.wrk"
            local before after line throttled=""
            before="$(listen_overflows)"
            ((${#WATCH_PIDS[@]})) && throttled="$(throttled_ms "${WATCH_PIDS[@]}")"
            "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$out"
            after="$(listen_overflows)"
            ((${#WATCH_PIDS[@]})) && throttled="  cpu-throttled $(($(throttled_ms "${WATCH_PIDS[@]}") - throttled)) ms"
            line="$(wrk_parse "$out")"
            echo "$line" >>"$BENCH_TMP/$case.$label.runs"
            read -r rps p50 p99 errors timeouts <<<"$line"
            printf '  run %d  %-8s %9s req/s  p50 %8s ms  p99 %8s ms  errors %s  timeouts %s  listen-queue drops %s%s\n' \
                "$rep" "$label" "$rps" "$p50" "$p99" "$errors" "$timeouts" "$((after - before))" "$throttled"
        done
    done
}

# report CASE BASE LABEL...: a table of medians, and ratios to BASE.
report() {
    local case="$1" base="$2"
    shift 2
    python3 - "$BENCH_TMP" "$case" "$base" "$@" <<'PY'
import statistics, sys
tmp, case, base, labels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
med = {}
for label in labels:
    rows = [list(map(float, l.split())) for l in open(f"{tmp}/{case}.{label}.runs") if l.strip()]
    med[label] = [statistics.median(col) for col in zip(*rows)]
    med[label][3] = sum(r[3] for r in rows)
    med[label][4] = sum(r[4] for r in rows)
b = med[base]
print(f"  {'target':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  {'rps / ' + base:>14} {'p50 added':>10} {'p99 added':>10}  errors/timeouts (all runs)")
for label in labels:
    rps, p50, p99, errors, timeouts = med[label]
    ratio = f"{rps / b[0]:.2f}x" if label != base else "1.00x"
    add50 = f"{p50 - b[1]:+.3f}" if label != base else ""
    add99 = f"{p99 - b[2]:+.3f}" if label != base else ""
    print(f"  {label:<12} {rps:>9.0f} {p50:>8.3f} {p99:>8.3f}  {ratio:>14} {add50:>10} {add99:>10}  {errors:.0f}/{timeouts:.0f}")
if "haproxy" in med and "gateway" in med:
    print(f"  vdc gateway vs haproxy: {med['gateway'][0] / med['haproxy'][0]:.2f}x the requests/s, "
          f"p50 {med['gateway'][1] - med['haproxy'][1]:+.3f} ms, p99 {med['gateway'][2] - med['haproxy'][2]:+.3f} ms")
PY
}

case_nginx() {
    need nginx
    echo
    echo "== nginx: one nginx instance (128-byte static file), direct vs gateway =="
    local dir="$BENCH_TMP/nginx" gw_port addr spec backend
    gw_port="$(free_port)"
    addr="127.0.0.1:$(free_port)"
    spec="$(spec_copy "$BENCH/specs/gateway-nginx.toml" "$gw_port" "$dir/spec")"
    up_detached "$addr" "$dir/data" "$spec" >/dev/null 2>"$dir/up.err" ||
        { cat "$dir/up.err" >&2; exit 1; }
    pin_server "$addr"
    backend="$(instance_locator "$addr" gwbench nginx http)"
    local targets=("direct=http://$backend/" "gateway=http://127.0.0.1:$gw_port/")
    local labels=(direct gateway) haproxy_pid=""
    if command -v haproxy >/dev/null 2>&1; then
        local hp_port
        hp_port="$(free_port)"
        start_haproxy http "$hp_port" "$backend" "$dir"
        haproxy_pid="$HAPROXY_PID"
        targets+=("haproxy=http://127.0.0.1:$hp_port/")
        labels+=(haproxy)
        echo "haproxy $(haproxy -v | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p'): nbthread 1, http-reuse always, same backend"
    else
        echo "haproxy not installed: no reference row"
    fi
    echo "backend $backend, gateway 127.0.0.1:$gw_port"
    measure nginx "${targets[@]}"
    echo
    report nginx direct "${labels[@]}"
    if [[ -n "$haproxy_pid" ]]; then
        kill "$haproxy_pid" 2>/dev/null || true
        wait "$haproxy_pid" 2>/dev/null || true
        OWN_PIDS=()
    fi
    stop_server "$addr" >/dev/null
}

case_shop() {
    echo
    echo "== shop: GET / on one Python web instance vs through the gateway (3 web instances) =="
    local dir="$BENCH_TMP/shop" gw_port addr spec backend
    gw_port="$(free_port)"
    addr="127.0.0.1:$(free_port)"
    spec="$(spec_copy "$ROOT/examples/shop.toml" "$gw_port" "$dir/spec")"
    up_detached "$addr" "$dir/data" "$spec" >/dev/null 2>"$dir/up.err" ||
        { cat "$dir/up.err" >&2; exit 1; }
    pin_server "$addr"
    backend="$(instance_locator "$addr" shop web http)"
    mapfile -t WATCH_PIDS < <(vdc_at "$addr" ps shop -o json |
        python3 -c 'import json, sys; [print(s["pid"]) for s in json.load(sys.stdin) if s["pid"]]')
    echo "one web instance $backend, gateway 127.0.0.1:$gw_port (each web instance is limited to 0.5 CPU by the spec)"
    measure shop "direct=http://$backend/" "gateway=http://127.0.0.1:$gw_port/"
    echo
    report shop direct direct gateway
    WATCH_PIDS=()
    stop_server "$addr" >/dev/null
}

for c in "${CASES[@]}"; do
    "case_$c"
done
echo
echo "CPU busy after (1 s sample, wrk stopped): $(cpu_busy)% (load average $(cut -d' ' -f1-3 /proc/loadavg))"
