#!/usr/bin/env bash
# Time to launch: how long `vdc up examples/shop.toml -d` takes with no server
# running, from the command until it returns. That includes starting the
# background server, submitting the app, starting the database and three
# Python web servers, and waiting until every instance passes its health
# check. Target: 1 s.
#
#   bench/up.sh                 # 10 runs of each mode
#   RUNS=3 bench/up.sh          # fewer
#   VDC=path/to/vdc bench/up.sh # another binary
#   MODES=confined bench/up.sh  # one mode only
#
# Two modes, run alternately: `confined` (the default of a root node: each
# instance in its own namespaces, view of the filesystem, user and
# system-call filter) and `unconfined` (`--shared-loopback`), so the cost of
# confinement is measured in the same run.
#
# Each run uses a fresh data directory and a free API port, and the example's
# gateway is moved from port 8080 to a free port on 127.0.0.1 (the only change
# to the file). After each run `vdc server stop` stops the server, and the
# script checks that no process the server started is left.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-10}"
MODES="${MODES:-confined unconfined}"
TARGET_S=1.0
SPEC="$ROOT/examples/shop.toml"

machine
echo "measuring: vdc up examples/shop.toml -d, no server running, $RUNS runs of each mode ($MODES)"
echo

times="$BENCH_TMP/times"
stops="$BENCH_TMP/stops"
: >"$times"
: >"$stops"
for mode in $MODES; do : >"$BENCH_TMP/times-$mode"; done
leftovers=0
cgroups_left=0
printf '%4s  %-10s  %9s  %12s  %9s  %8s  %s\n' run mode "total (s)" "ready in (s)" processes "stop (s)" "left after stop"
for ((run = 1; run <= RUNS; run++)); do
for mode in $MODES; do
    case "$mode" in
        confined) UP_FLAGS=() ;;
        unconfined) UP_FLAGS=(--shared-loopback) ;;
        *) echo "error: unknown mode $mode (confined, unconfined)" >&2; exit 1 ;;
    esac
    dir="$BENCH_TMP/run$run-$mode"
    mkdir -p "$dir"
    spec="$(spec_copy "$SPEC" "$(free_port)" "$dir/spec")"
    addr="127.0.0.1:$(free_port)"

    start_ns=$(date +%s%N)
    up_detached "$addr" "$dir/data" "$spec" >"$dir/up.out" 2>"$dir/up.err"
    end_ns=$(date +%s%N)
    total=$(python3 -c "print(f'{($end_ns - $start_ns) / 1e9:.3f}')")
    echo "$total" >>"$times"
    echo "$total" >>"$BENCH_TMP/times-$mode"
    # vdc's own figure: from submitting the app until it is ready.
    ready="$(sed -nE 's/^shop is ready in ([0-9.]+)s$/\1/p' "$dir/up.err")"

    process_tree "$(server_pid "$addr")" >"$dir/tree"
    cgroup_dirs "$dir/tree" >"$dir/cgroups"
    procs=$(wc -l <"$dir/tree")

    # `vdc server stop`, until the server process has exited.
    start_ns=$(date +%s%N)
    stop_server "$addr" >/dev/null
    end_ns=$(date +%s%N)
    stop_s=$(python3 -c "print(f'{($end_ns - $start_ns) / 1e9:.2f}')")
    echo "$stop_s" >>"$stops"

    left="$(still_alive "$dir/tree")"
    left_text=""
    if [[ -n "$left" ]]; then
        leftovers=$((leftovers + 1))
        left_text="$(echo "$left" | tr '\n' ' ')"
        # Give them a moment, then remove what this run started.
        sleep 5
        still="$(still_alive "$dir/tree")"
        if [[ -n "$still" ]]; then
            left_text="$left_text(still there after 5s: killed) "
            echo "$still" | while read -r pid _; do kill -9 "$pid" 2>/dev/null || true; done
        fi
    fi
    cg_left=0
    while read -r cg; do
        [[ -n "$cg" && -d "$cg" ]] && cg_left=$((cg_left + 1))
    done <"$dir/cgroups"
    if ((cg_left > 0)); then
        cgroups_left=$((cgroups_left + 1))
        left_text="$left_text$cg_left of $(wc -l <"$dir/cgroups") cgroup dirs"
    fi
    printf '%4d  %-10s  %9s  %12s  %9s  %8s  %s\n' "$run" "$mode" "$total" "${ready:-?}" "$procs" "$stop_s" "${left_text:-nothing}"
done
done

read -r med min max < <(stats <"$times")
echo
python3 - "$med" "$min" "$max" "$TARGET_S" <<'PY'
import sys
med, lo, hi, target = map(float, sys.argv[1:])
print(f"median {med:.3f}s  min {lo:.3f}s  max {hi:.3f}s")
verdict = "within" if med <= target else "over"
print(f"ratio to the {target:g}s target: {med / target:.2f}x (median, {verdict} target)")
PY
for mode in $MODES; do
    read -r mmed mmin mmax < <(stats <"$BENCH_TMP/times-$mode")
    echo "$mode: median ${mmed}s  min ${mmin}s  max ${mmax}s"
done
if [[ "$MODES" == *confined* && "$MODES" == *unconfined* ]]; then
    read -r cmed _ < <(stats <"$BENCH_TMP/times-confined")
    read -r umed _ < <(stats <"$BENCH_TMP/times-unconfined")
    python3 -c "print(f'confinement costs {float(\"$cmed\") / float(\"$umed\"):.2f}x the unconfined launch (medians, same run)')"
fi
read -r smed smin smax < <(stats <"$stops")
echo "vdc server stop (until the server process exits): median ${smed}s, max ${smax}s"
echo "processes: the server and everything it started (server + db + 3 web)"
if ((leftovers == 0)); then
    echo "processes left after \`vdc server stop\`: none, in all runs"
else
    echo "processes left after \`vdc server stop\`: some, in $leftovers of $RUNS runs (see above)"
fi
if ((cgroups_left == 0)); then
    echo "cgroup directories left after \`vdc server stop\`: none, in all $RUNS runs"
else
    echo "cgroup directories left after \`vdc server stop\`: some, in $cgroups_left of $RUNS runs"
fi
