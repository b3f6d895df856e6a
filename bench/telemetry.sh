#!/usr/bin/env bash
# What measuring costs, and how fast measurements reach subscribers.
#
#   bench/telemetry.sh
#   REPS=3 DURATION=10s CONNECTIONS=32 bench/telemetry.sh
#
# 1. Gateway throughput with per-request measurements on (the default) and
#    off (`vdc server --no-measurements`: counters only, no latency
#    histograms), same spec (one nginx instance behind the built-in balancer,
#    bench/specs/gateway-nginx.toml), alternating REPS times; prints the
#    medians and the ratio on/off (target >= 0.95).
# 2. Delay from a request completing to the sample of its second reaching a
#    stream subscriber (bench/stream-delay.py; target p99 < 1.5 s).
# The cost of recording one request is a criterion benchmark:
#    cargo bench -p vdc-telemetry --bench record
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need wrk nginx

REPS="${REPS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
WRK_PIN=()
SERVER_PIN=()
if command -v taskset >/dev/null 2>&1 && (($(nproc) >= 2)); then
    WRK_PIN=(taskset -c 0)
    SERVER_PIN=(taskset -c 1)
fi

machine
echo "wrk -t1 -c$CONNECTIONS -d$DURATION --latency; median of $REPS runs each; ${WRK_PIN[*]:+wrk on CPU 0, server on CPU 1}"

# run_once MODE: one gateway run with measurements on or off.
run_once() {
    local flags=()
    [[ "$1" == off ]] && flags=(--no-measurements)
    gateway_once "$1" "${flags[@]}"
}

on=()
off=()
for ((i = 1; i <= REPS; i++)); do
    on+=("$(run_once on)")
    DELAY_DONE=1
    off+=("$(run_once off)")
    echo "run $i: on ${on[-1]} | off ${off[-1]}  (rps p50_ms p99_ms)"
done
on_rps="$(printf '%s\n' "${on[@]}" | awk '{print $1}' | median)"
off_rps="$(printf '%s\n' "${off[@]}" | awk '{print $1}' | median)"
on_p99="$(printf '%s\n' "${on[@]}" | awk '{print $3}' | median)"
off_p99="$(printf '%s\n' "${off[@]}" | awk '{print $3}' | median)"
python3 - "$on_rps" "$off_rps" "$on_p99" "$off_p99" <<'PY'
import sys
on, off, on99, off99 = map(float, sys.argv[1:])
print(f"\nmeasurements on : {on:10.0f} req/s  p99 {on99:.2f} ms")
print(f"measurements off: {off:10.0f} req/s  p99 {off99:.2f} ms")
print(f"ratio on/off    : {on / off:.3f}  (target >= 0.95)")
PY
