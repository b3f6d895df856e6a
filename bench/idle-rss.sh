#!/usr/bin/env bash
# Memory of the vdc server process (not its instances): VmRSS (resident now)
# and VmHWM (the most it has been resident) from /proc/PID/status,
#   1. idle: `vdc server` with no app, 2 s after it answers;
#   2. with the shop example running, 2 s after `vdc up examples/shop.toml -d`
#      returned;
#   3. after LOAD (default 5s) of wrk through the shop's gateway, then 2 s of
#      rest (skipped without wrk, or with LOAD=0).
# Target: under 30 MiB idle.
#
#   bench/idle-rss.sh
#   VDC=path/to/vdc bench/idle-rss.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGET_MIB=30
LOAD="${LOAD:-5s}"
SETTLE=2

machine
echo

# status_kib PID FIELD: a field of /proc/PID/status in KiB.
status_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

rows="$BENCH_TMP/rows"
: >"$rows"
sample() {
    local label="$1" pid="$2"
    echo "$label $(status_kib "$pid" VmRSS) $(status_kib "$pid" VmHWM) $(status_kib "$pid" RssAnon) $(status_kib "$pid" RssFile) $(awk '$1 == "Threads:" { print $2 }' "/proc/$pid/status")" >>"$rows"
}

addr="127.0.0.1:$(free_port)"
data="$BENCH_TMP/data"
SERVER_ADDRS+=("$addr")
DATA_OF[$addr]="$data"
"$VDC" --addr "$addr" server --data-dir "$data" >"$BENCH_TMP/server.log" 2>&1 &
pid=$!
OWN_PIDS+=("$pid")
for ((i = 0; i < 500; i++)); do
    server_pid "$addr" >/dev/null 2>&1 && break
    running "$pid" || { cat "$BENCH_TMP/server.log" >&2; exit 1; }
    sleep 0.02
done
[[ "$(server_pid "$addr")" == "$pid" ]] || { echo "error: another server answers at $addr" >&2; exit 1; }

sleep "$SETTLE"
sample "idle (no app)" "$pid"

gw_port="$(free_port)"
spec="$(spec_copy "$ROOT/examples/shop.toml" "$gw_port" "$BENCH_TMP/spec")"
vdc_at "$addr" up "$spec" -d >/dev/null 2>"$BENCH_TMP/up.err" || { cat "$BENCH_TMP/up.err" >&2; exit 1; }
sleep "$SETTLE"
sample "shop running" "$pid"

if [[ "$LOAD" != 0 ]] && command -v wrk >/dev/null 2>&1; then
    wrk -t1 -c32 -d"$LOAD" "http://127.0.0.1:$gw_port/" >"$BENCH_TMP/wrk.out"
    sleep "$SETTLE"
    sample "shop, after $LOAD of load" "$pid"
    load_line="$(grep -E 'requests in' "$BENCH_TMP/wrk.out" | sed 's/^ *//')"
fi

echo "vdc server (pid $pid) memory, ${SETTLE}s after each step:"
python3 - "$rows" "$TARGET_MIB" <<'PY'
import sys
rows = [l.strip().rsplit(" ", 5) for l in open(sys.argv[1]) if l.strip()]
target = float(sys.argv[2])
print(f"  {'state':<26} {'VmRSS MiB':>9} {'VmHWM MiB':>9} {'anon MiB':>8} {'file MiB':>8} {'threads':>7}")
for label, rss, hwm, anon, file, threads in rows:
    print(f"  {label:<26} {int(rss) / 1024:>9.1f} {int(hwm) / 1024:>9.1f} {int(anon) / 1024:>8.1f} {int(file) / 1024:>8.1f} {threads:>7}")
idle = int(rows[0][1]) / 1024
verdict = "under" if idle < target else "over"
print(f"idle VmRSS / {target:g} MiB target: {idle / target:.2f}x ({verdict} target)")
PY
[[ -n "${load_line:-}" ]] && echo "load: wrk -t1 -c32 -d$LOAD through the gateway: $load_line"

stop_server "$addr" >/dev/null
wait "$pid" 2>/dev/null || true
OWN_PIDS=()
