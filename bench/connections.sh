#!/usr/bin/env bash
# How many connections a server holds at its open-file limit before it
# refuses more, and that it refuses at once rather than hanging: the API
# from one client address and from many, and a gateway. Runs the server
# twice: at this shell's limit (`ulimit -n`) and at 1024, the limit a
# systemd service usually gets.
#
#   bench/connections.sh
#   GATEWAY_PROBE=20000 bench/connections.sh   # probe the gateway further
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROBE="${GATEWAY_PROBE:-6000}"
machine
echo "measuring: connections held at the open-file limit; probe of the gateway: $PROBE connections"
for limit in "$(ulimit -n)" 1024; do
    echo
    echo "--- server started with ulimit -n $limit ---"
    dir="$BENCH_TMP/limit-$limit"
    mkdir -p "$dir"
    port="$(free_port)"
    spec="$(spec_copy "$ROOT/examples/shop.toml" "$port" "$dir/spec")"
    addr="127.0.0.1:$(free_port)"
    SERVER_ADDRS+=("$addr")
    DATA_OF[$addr]="$dir/data"
    (ulimit -n "$limit" && exec "$VDC" --addr "$addr" server --data-dir "$dir/data") >"$dir/server.log" 2>&1 &
    for _ in $(seq 200); do api_get "$addr" /v1/health >/dev/null 2>&1 && break; sleep 0.05; done
    grep -o 'open files: .*' "$dir/server.log" || true
    vdc_at "$addr" up "$spec" -d >/dev/null 2>&1
    python3 "$BENCH/connections.py" "$addr" "127.0.0.1:$port" "$PROBE"
    stop_server "$addr" >/dev/null 2>&1
done
