#!/usr/bin/env bash
# What confining instances costs: the gateway in front of one nginx instance
# (bench/specs/gateway-nginx.toml) with instances in their own namespaces
# (the default as root: the data plane connects into the instance's network
# namespace) and on the shared loopback (`vdc server --shared-loopback`),
# alternating REPS times; prints medians and the added latency.
#
#   bench/isolation.sh
#   REPS=3 DURATION=10s CONNECTIONS=32 bench/isolation.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need wrk nginx
[[ "$(id -u)" == 0 ]] || { echo "error: namespaces need root" >&2; exit 1; }

REPS="${REPS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
DELAY_DONE=1
WRK_PIN=()
SERVER_PIN=()
if command -v taskset >/dev/null 2>&1 && (($(nproc) >= 2)); then
    WRK_PIN=(taskset -c 0)
    SERVER_PIN=(taskset -c 1)
fi

machine
echo "wrk -t1 -c$CONNECTIONS -d$DURATION --latency; median of $REPS runs each; ${WRK_PIN[*]:+wrk on CPU 0, server on CPU 1}"

ns=()
shared=()
for ((i = 1; i <= REPS; i++)); do
    ns+=("$(gateway_once ns)")
    shared+=("$(gateway_once shared --shared-loopback)")
    echo "run $i: namespaces ${ns[-1]} | shared loopback ${shared[-1]}  (rps p50_ms p99_ms)"
done
col() { printf '%s\n' "${@:2}" | awk -v c="$1" '{print $c}' | median; }
python3 - "$(col 1 "${ns[@]}")" "$(col 1 "${shared[@]}")" "$(col 2 "${ns[@]}")" "$(col 2 "${shared[@]}")" "$(col 3 "${ns[@]}")" "$(col 3 "${shared[@]}")" <<'PY'
import sys
ns, sh, ns50, sh50, ns99, sh99 = map(float, sys.argv[1:])
print(f"\nnamespaces     : {ns:10.0f} req/s  p50 {ns50:.3f} ms  p99 {ns99:.3f} ms")
print(f"shared loopback: {sh:10.0f} req/s  p50 {sh50:.3f} ms  p99 {sh99:.3f} ms")
print(f"ratio          : {ns / sh:.3f} of the throughput; added p50 {ns50 - sh50:+.3f} ms, p99 {ns99 - sh99:+.3f} ms")
PY
