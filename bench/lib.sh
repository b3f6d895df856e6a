# Shared helpers for the benchmark scripts; sourced, not run.
#
# Provides: $ROOT (the repository), $VDC (the vdc binary, built if missing),
# $BENCH_TMP (a temporary directory removed on exit), free ports, copies of
# app specs on free ports, starting and stopping vdc servers, and reading
# wrk's output. Every server a script starts is stopped on exit.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"

# --- the binary ---------------------------------------------------------

VDC="${VDC:-$ROOT/target/release/vdc}"
case "$VDC" in
    /*) ;;
    */*) VDC="$PWD/$VDC" ;;
    *) VDC="$(command -v "$VDC" || echo "$VDC")" ;;
esac
if [[ ! -x "$VDC" ]]; then
    if [[ "$VDC" == "$ROOT/target/release/vdc" ]]; then
        echo "building $VDC (cargo build --release -p vdc)…" >&2
        (cd "$ROOT" && cargo build --release -p vdc) >&2
    else
        echo "error: VDC=$VDC is not an executable file" >&2
        exit 1
    fi
fi

need() {
    local tool
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "error: this benchmark needs \`$tool\` (on Debian: apt-get install $tool)" >&2
            exit 1
        fi
    done
}
need python3

# --- cleanup ------------------------------------------------------------

BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/vdc-bench.XXXXXX")"
declare -a SERVER_ADDRS=()   # API addresses of servers this script started
declare -a OWN_PIDS=()       # other processes this script started (haproxy…)

cleanup() {
    local status=$?
    set +e
    local pid addr
    for pid in "${OWN_PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    for addr in "${SERVER_ADDRS[@]}"; do
        stop_server "$addr" >/dev/null 2>&1
    done
    rm -rf "$BENCH_TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- ports and specs ----------------------------------------------------

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# spec_copy SPEC PORT DIR: copies the app spec SPEC into DIR with its gateway
# on 127.0.0.1:PORT instead of the port written in the file, and copies the
# files next to SPEC into DIR so that relative commands still resolve (a
# confined instance sees its working directory, not what a link there
# points to). Prints the path of the copy.
spec_copy() {
    local spec port="$2" dir="$3" entry
    spec="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
    mkdir -p "$dir"
    for entry in "$(dirname "$spec")"/*; do
        [[ "$entry" == "$spec" ]] && continue
        cp -r "$entry" "$dir/$(basename "$entry")"
    done
    local out="$dir/$(basename "$spec")"
    sed -E "s/^gateway = \\{ port = [0-9]+( *,[^}]*)? \\}/gateway = { port = $port, address = \"127.0.0.1\" }/" \
        "$spec" >"$out"
    if ! grep -q "port = $port, address" "$out"; then
        echo "error: no \`gateway = { port = … }\` line to rewrite in $spec" >&2
        exit 1
    fi
    echo "$out"
}

# --- servers ------------------------------------------------------------

# Data directory of each server this script started, by API address: the
# server writes its admin token there, and every call to it needs one.
declare -A DATA_OF=()

# token_of ADDR: the admin token of the server at ADDR (empty if unknown).
token_of() {
    local data="${DATA_OF[$1]:-}"
    [[ -n "$data" && -r "$data/admin.token" ]] && tr -d '[:space:]' <"$data/admin.token"
    return 0
}

# vdc_at ADDR ARGS...: the vdc CLI against the server at ADDR, with its token.
vdc_at() {
    local addr="$1"
    shift
    "$VDC" --addr "$addr" --token "$(token_of "$addr")" "$@"
}

# api_get ADDR PATH: GET http://ADDR/PATH from the vdc API, with the token.
api_get() {
    python3 - "$1" "$2" "$(token_of "$1")" <<'PY'
import sys, urllib.request
request = urllib.request.Request(f"http://{sys.argv[1]}{sys.argv[2]}")
if sys.argv[3]:
    request.add_header("Authorization", "Bearer " + sys.argv[3])
with urllib.request.urlopen(request, timeout=5) as r:
    sys.stdout.write(r.read().decode())
PY
}

# server_pid ADDR: the pid of the vdc server answering at ADDR.
server_pid() {
    api_get "$1" /v1/health | python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])'
}

# up_detached ADDR DATA_DIR SPEC [PIN...]: `vdc up SPEC -d` against ADDR,
# starting a background server there if none answers (with the server flags
# in the UP_FLAGS array, if set). Registers ADDR for cleanup first, so an
# interrupted run leaves nothing behind.
up_detached() {
    local addr="$1" data="$2" spec="$3"
    shift 3
    SERVER_ADDRS+=("$addr")
    DATA_OF[$addr]="$data"
    "$@" "$VDC" --addr "$addr" up "$spec" -d --data-dir "$data" "${UP_FLAGS[@]+"${UP_FLAGS[@]}"}"
}

# running PID: true while PID runs (a zombie, exited but not yet reaped by
# its parent, counts as exited).
running() {
    local state
    state="$(sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}')" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# stop_server ADDR: `vdc server stop`, then wait until the server process has
# exited; if it is still there after 30s, kill it (it is one this script started).
stop_server() {
    local addr="$1" pid=""
    pid="$(server_pid "$addr" 2>/dev/null)" || pid=""
    timeout 90 "$VDC" --addr "$addr" --token "$(token_of "$addr")" server stop || true
    if [[ -n "$pid" ]]; then
        local i
        for ((i = 0; i < 1500; i++)); do
            running "$pid" || break
            sleep 0.02
        done
        if running "$pid"; then
            echo "warning: the vdc server (pid $pid) was still running 30s after \`vdc server stop\`; killing it" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    local kept=()
    local a
    for a in "${SERVER_ADDRS[@]}"; do [[ "$a" != "$addr" ]] && kept+=("$a"); done
    SERVER_ADDRS=("${kept[@]+"${kept[@]}"}")
}

# process_tree PID: PID and all its descendants, one "pid starttime comm"
# per line (the start time tells a live process from a reused pid).
process_tree() {
    python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
children, info = {}, {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open(f"/proc/{d}/stat") as f:
            stat = f.read()
    except OSError:
        continue
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    pid, ppid, start = int(d), int(fields[1]), fields[19]
    children.setdefault(ppid, []).append(pid)
    info[pid] = (start, comm)
todo = [root]
while todo:
    pid = todo.pop()
    if pid in info:
        print(pid, info[pid][0], info[pid][1].replace(" ", "_"))
        todo.extend(children.get(pid, []))
PY
}

# still_alive FILE: the lines of FILE (from process_tree) whose process still
# runs (same pid and start time, not a zombie).
still_alive() {
    local pid start comm now
    while read -r pid start comm; do
        running "$pid" || continue
        now="$(sed -E 's/^.*\) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $20}')" || continue
        [[ "$now" == "$start" ]] && echo "$pid $comm"
    done <"$1"
    return 0
}

# cgroup_dirs TREE_FILE: the vdc cgroup directories (leaf and parent) of the
# processes listed in TREE_FILE other than the first (the server), one a line.
cgroup_dirs() {
    tail -n +2 "$1" | while read -r pid _; do cat "/proc/$pid/cgroup" 2>/dev/null || true; done |
        python3 -c '
import os, sys
dirs = set()
for line in sys.stdin:
    _, controllers, path = line.rstrip("\n").split(":", 2)
    if "/vdc-" not in path:
        continue
    base = "/sys/fs/cgroup" + ("/" + controllers.replace("name=", "") if controllers else "")
    leaf = base + path
    for d in (leaf, os.path.dirname(leaf)):
        if "/vdc-" in d and os.path.isdir(d):
            dirs.add(d)
print("\n".join(sorted(dirs)))'
}

# --- numbers --------------------------------------------------------------

# stats: reads numbers, one a line; prints "median min max".
stats() {
    python3 -c '
import statistics, sys
xs = [float(x) for x in sys.stdin.read().split()]
print(f"{statistics.median(xs):.3f} {min(xs):.3f} {max(xs):.3f}")'
}

# median: reads numbers, one a line; prints their median.
median() {
    python3 -c '
import statistics, sys
print(statistics.median([float(x) for x in sys.stdin.read().split()]))'
}

# wrk_parse FILE: prints "rps p50_ms p99_ms errors timeouts" from wrk
# --latency output. errors counts non-2xx/3xx responses and connect, read and
# write errors; timeouts, requests that got no answer within wrk's 2 s.
wrk_parse() {
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    n, unit = float(m.group(1)), m.group(2)
    return n * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = timeouts = 0
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
if m:
    errors += int(m.group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    errors += int(m.group(1)) + int(m.group(2)) + int(m.group(3))
    timeouts = int(m.group(4))
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {errors} {timeouts}")
PY
}

# listen_overflows: the kernel's count of connections dropped because a
# listen queue was full (all sockets; a dropped SYN is retried after 1 s).
listen_overflows() {
    awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ListenOverflows") c = i; h = 1 } else print $c }' /proc/net/netstat
}

# throttled_ms PID...: total time the CPU controller held back the cgroups
# of these processes (their CPU limit was used up), in milliseconds.
throttled_ms() {
    python3 - "$@" <<'PY'
import sys
total = 0.0
for pid in sys.argv[1:]:
    try:
        lines = open(f"/proc/{pid}/cgroup").read().splitlines()
    except OSError:
        continue
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            stat, key, scale = f"/sys/fs/cgroup{path}/cpu.stat", "throttled_usec", 1e-3
        elif "cpu" in controllers.split(","):
            stat, key, scale = f"/sys/fs/cgroup/{controllers}{path}/cpu.stat", "throttled_time", 1e-6
        else:
            continue
        try:
            for row in open(stat):
                k, v = row.split()
                if k == key:
                    total += int(v) * scale
        except OSError:
            pass
print(f"{total:.0f}")
PY
}

# cpu_busy: how busy the machine's CPUs are over one second, in percent of
# all CPUs, before a benchmark starts.
cpu_busy() {
    python3 -c '
import time
def sample():
    f = open("/proc/stat").readline().split()[1:]
    v = list(map(int, f))
    return sum(v), v[3] + v[4]
t0, i0 = sample(); time.sleep(1); t1, i1 = sample()
print(round(100 * (1 - (i1 - i0) / max(1, t1 - t0))))'
}

machine() {
    local cpu busy
    cpu="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
    echo "machine: $(nproc) CPUs ($cpu), Linux $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "vdc: $VDC ($("$VDC" --version 2>/dev/null || echo unknown version))"
    busy="$(cpu_busy)"
    echo "CPU busy before starting: $busy% (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    if ((busy > 10)); then
        echo "warning: other processes keep the CPUs $busy% busy: expect noisy figures"
    fi
}

# gateway_once TAG [SERVER FLAGS...]: starts a server with the flags, launches
# bench/specs/gateway-nginx.toml on a free port, warms up, runs wrk through
# the gateway, stops the server; prints "rps p50_ms p99_ms". With TAG "on"
# and DELAY_DONE unset it also measures the stream delay (bench/telemetry.sh).
# Uses WRK_PIN, SERVER_PIN, CONNECTIONS and DURATION from the caller.
gateway_once() {
    local tag="$1" addr port data spec
    shift
    addr="127.0.0.1:$(free_port)"
    port="$(free_port)"
    data="$BENCH_TMP/data-$tag-$RANDOM"
    spec="$(spec_copy "$BENCH/specs/gateway-nginx.toml" "$port" "$BENCH_TMP/spec-$tag-$RANDOM")"
    SERVER_ADDRS+=("$addr")
    DATA_OF[$addr]="$data"
    "${SERVER_PIN[@]}" "$VDC" --addr "$addr" server --data-dir "$data" "$@" >"$BENCH_TMP/server-$tag.log" 2>&1 &
    for _ in $(seq 200); do api_get "$addr" /v1/health >/dev/null 2>&1 && break; sleep 0.05; done
    vdc_at "$addr" up "$spec" -d >/dev/null 2>&1
    "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null
    "${WRK_PIN[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port/" >"$BENCH_TMP/wrk-$tag.txt"
    wrk_parse "$BENCH_TMP/wrk-$tag.txt" | awk '{print $1, $2, $3}'
    if [[ "$tag" == on && -z "${DELAY_DONE:-}" ]]; then
        echo "--- stream delay (50 req/s for 20 s) ---" >&2
        VDC_TOKEN="$(token_of "$addr")" python3 "$BENCH/stream-delay.py" "$addr" "$(sed -n 's/^app = "\(.*\)"/\1/p' "$spec")" "http://127.0.0.1:$port/" 20 50 >&2 || true
    fi
    stop_server "$addr" >/dev/null 2>&1
}

# --- instances and pinning (the caller sets SERVER_PIN and SERVER_CPU) ---

# instance_locator ADDR APP COMPONENT INPUT: the first instance's listen address.
instance_locator() {
    vdc_at "$1" ps "$2" -o json | python3 -c '
import json, sys
app, component, terminal = sys.argv[1:]
for s in json.load(sys.stdin):
    if s["id"]["component"] == component and s["state"] == "ready":
        print(s["locators"][terminal])
        break
else:
    sys.exit(f"no ready instance of {app}/{component}")' "$2" "$3" "$4"
}

wait_listening() {
    python3 - "$1" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
deadline = time.time() + 10
while True:
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit(f"nothing listens on {sys.argv[1]} after 10s")
        time.sleep(0.05)
PY
}

# pin_server ADDR: moves the server at ADDR, every process it started and
# all their threads to the servers' CPU. Done once the app is ready, not by
# starting the server under taskset: vdc sizes the node from the CPUs it may
# use, and on one CPU the shop example (1.75 CPU reserved) would not fit.
pin_server() {
    [[ ${#SERVER_PIN[@]} -gt 0 ]] || return 0
    local pid
    process_tree "$(server_pid "$1")" >"$BENCH_TMP/pinned"
    while read -r pid _; do
        taskset -a -cp "$SERVER_CPU" "$pid" >/dev/null
    done <"$BENCH_TMP/pinned"
    echo "pinned to CPU $SERVER_CPU: $(awk '{print $3}' "$BENCH_TMP/pinned" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')"
}

# start_haproxy MODE PORT BACKEND DIR: HAProxy with one thread in MODE (http
# or tcp) on 127.0.0.1:PORT in front of BACKEND (HOST:PORT), pinned like the
# servers, its config and log in DIR; waits until it listens. Sets
# HAPROXY_PID; it is stopped on exit.
start_haproxy() {
    local mode="$1" port="$2" backend="$3" dir="$4" reuse=""
    [[ "$mode" == http ]] && reuse="    http-reuse always"
    cat >"$dir/haproxy.cfg" <<CFG
global
    nbthread 1
    maxconn 4096
defaults
    mode $mode
    timeout connect 5s
    timeout client 30s
    timeout server 30s
$reuse
frontend bench
    bind 127.0.0.1:$port
    default_backend upstream
backend upstream
    server upstream $backend
CFG
    "${SERVER_PIN[@]}" haproxy -f "$dir/haproxy.cfg" -db >"$dir/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    OWN_PIDS+=("$HAPROXY_PID")
    wait_listening "127.0.0.1:$port"
}
