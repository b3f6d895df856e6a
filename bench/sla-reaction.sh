#!/usr/bin/env bash
# SLA reaction time: how fast vdc brings p99 back under the objective when a
# load step breaks it. examples/sla.toml (p99 <= 100 ms; each replica holds
# about 30 req/s) runs at LOW req/s until it is back at one replica, then the
# load steps to HIGH req/s; per step the script measures, from the first
# second whose client-side p99 is over the objective:
#   - to the autoscaler's decision (its `scaled` event),
#   - to the new replicas being ready,
#   - to the client-side p99 being back under the objective (and staying
#     there for 3 s).
# Target: under 5 s median to recovery. Kubernetes' HPA evaluates every 15 s
# (its default sync period) before a pod even starts.
#
#   bench/sla-reaction.sh               # 5 steps
#   STEPS=3 HIGH=150 bench/sla-reaction.sh
#   RECORD=FILE bench/sla-reaction.sh   # also record the first step's telemetry
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STEPS="${STEPS:-5}"
LOW="${LOW:-10}"
HIGH="${HIGH:-120}"

machine
echo "measuring: SLA reaction, examples/sla.toml, $LOW → $HIGH req/s, $STEPS steps"
echo

addr="127.0.0.1:$(free_port)"
port="$(free_port)"
spec="$(spec_copy "$ROOT/examples/sla.toml" "$port" "$BENCH_TMP/spec")"
# Give replicas back sooner than the example does, so steps come faster.
sed -i 's/scale_down_after = "20s"/scale_down_after = "10s"/' "$spec"
up_detached "$addr" "$BENCH_TMP/data" "$spec" >/dev/null

python3 "$BENCH/sla-reaction.py" "$addr" "$(token_of "$addr")" "http://127.0.0.1:$port/" \
    "$STEPS" "$LOW" "$HIGH"
