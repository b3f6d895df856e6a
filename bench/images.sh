#!/usr/bin/env bash
# Images: a cold pull of a ~50 MB image from a local registry (Debian's
# docker-registry) by `vdc image pull` vs `skopeo copy` of the same image,
# same run, alternately; and the disk two images sharing a base take on a
# node vs the sum of their sizes. Target: pull <= 1.0x skopeo.
#
#   bench/images.sh             # 5 pulls of each
#   RUNS=3 bench/images.sh
#   VDC=path/to/vdc bench/images.sh
#
# The image is examples/images/build.sh's python base (built from this
# machine's files) plus a layer of 30 MiB of random bytes (which do not
# compress). Each vdc pull runs on a fresh server with an empty store, and
# includes what skopeo does not do: verifying each blob and unpacking the
# layers for overlayfs. Each skopeo copy goes to a fresh OCI layout.
# Container start vs runc (and crun where it runs) is measured by
# `cargo bench -p vdc-sandbox`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need umoci skopeo docker-registry

RUNS="${RUNS:-5}"
machine
echo

# --- the images ------------------------------------------------------------
images="$BENCH_TMP/oci"
"$ROOT/examples/images/build.sh" "$images" >/dev/null
unpacked="$BENCH_TMP/big"
umoci unpack --image "$images:python" "$unpacked" >/dev/null
head -c $((30 << 20)) /dev/urandom >"$unpacked/rootfs/srv/blob"
umoci repack --image "$images:big" "$unpacked" >/dev/null
rm -rf "$unpacked"

# --- a registry ------------------------------------------------------------
port="$(free_port)"
mkdir -p "$BENCH_TMP/registry"
cat >"$BENCH_TMP/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $BENCH_TMP/registry/storage
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$BENCH_TMP/registry/config.yml" >"$BENCH_TMP/registry/log" 2>&1 &
OWN_PIDS+=($!)
wait_listening "127.0.0.1:$port"
registry="127.0.0.1:$port"
for tag in big python shop; do
    skopeo copy --quiet --dest-tls-verify=false "oci:$images:$tag" "docker://$registry/bench/$tag:1"
done
size="$(du -sb "$BENCH_TMP/registry/storage" | cut -f1)"
echo "registry at $registry; image bench/big:1 (python base + 30 MiB random layer)"
echo

# --- cold pulls --------------------------------------------------------------
: >"$BENCH_TMP/vdc"
: >"$BENCH_TMP/fetch"
: >"$BENCH_TMP/skopeo"
for ((i = 1; i <= RUNS; i++)); do
    addr="127.0.0.1:$(free_port)"
    data="$BENCH_TMP/data-$i"
    SERVER_ADDRS+=("$addr")
    DATA_OF[$addr]="$data"
    "$VDC" --addr "$addr" server -d --data-dir "$data" >/dev/null 2>&1
    # The pull through the API, timing its phases from the progress events:
    # until every blob is in (what skopeo copy does), and until unpacked.
    python3 - "$addr" "$(token_of "$addr")" "$registry/bench/big:1" >>"$BENCH_TMP/phases" <<'PY'
import http.client, json, sys, time
addr, token, ref = sys.argv[1:4]
host, port = addr.rsplit(":", 1)
start = time.monotonic()
c = http.client.HTTPConnection(host, int(port), timeout=120)
c.request("POST", "/v1/images/pull", json.dumps({"reference": ref}),
          {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
r = c.getresponse()
fetched = None
event = None
for raw in r:
    line = raw.decode().strip()
    if line.startswith("event:"):
        event = line.split(":", 1)[1].strip()
    elif line.startswith("data:"):
        data = json.loads(line.split(":", 1)[1])
        if event == "progress" and data.get("phase") == "unpacking" and fetched is None:
            fetched = time.monotonic() - start
        elif event == "done":
            print(f"{fetched:.3f} {time.monotonic() - start:.3f}")
            break
        elif event == "error":
            sys.exit(data)
PY
    tail -1 "$BENCH_TMP/phases" | cut -d' ' -f1 >>"$BENCH_TMP/fetch"
    tail -1 "$BENCH_TMP/phases" | cut -d' ' -f2 >>"$BENCH_TMP/vdc"
    stop_server "$addr" >/dev/null 2>&1
    rm -rf "$data"

    start=$(date +%s.%N)
    skopeo copy --quiet --src-tls-verify=false "docker://$registry/bench/big:1" "oci:$BENCH_TMP/skopeo-$i:big"
    end=$(date +%s.%N)
    echo "$end - $start" | bc >>"$BENCH_TMP/skopeo"
    rm -rf "$BENCH_TMP/skopeo-$i"
done
vdc_median="$(median <"$BENCH_TMP/vdc")"
fetch_median="$(median <"$BENCH_TMP/fetch")"
skopeo_median="$(median <"$BENCH_TMP/skopeo")"
printf '%-44s %9s   %s\n' "cold pull of bench/big:1, $RUNS runs" "median s" "runs (s)"
printf '%-44s %9.3f   %s\n' "vdc: every blob fetched and verified" "$fetch_median" "$(tr '\n' ' ' <"$BENCH_TMP/fetch")"
printf '%-44s %9.3f   %s\n' "vdc: and the layers unpacked (ready to run)" "$vdc_median" "$(tr '\n' ' ' <"$BENCH_TMP/vdc")"
printf '%-44s %9.3f   %s\n' "skopeo copy to an OCI layout (no unpacking)" "$skopeo_median" "$(tr '\n' ' ' <"$BENCH_TMP/skopeo")"
printf 'ratio vdc / skopeo: %.2fx fetched (target <= 1.0x), %.2fx with the unpacking\n\n' \
    "$(echo "$fetch_median / $skopeo_median" | bc -l)" "$(echo "$vdc_median / $skopeo_median" | bc -l)"

# --- two images sharing a base ---------------------------------------------
addr="127.0.0.1:$(free_port)"
data="$BENCH_TMP/data-shared"
SERVER_ADDRS+=("$addr")
DATA_OF[$addr]="$data"
"$VDC" --addr "$addr" server -d --data-dir "$data" >/dev/null 2>&1
vdc_at "$addr" image pull "$registry/bench/python:1" >/dev/null 2>&1
vdc_at "$addr" image pull "$registry/bench/shop:1" >/dev/null 2>&1
sum="$(vdc_at "$addr" image list -o json | python3 -c 'import json, sys; print(sum(i["size_bytes"] for i in json.load(sys.stdin)))')"
blobs="$(du -sb "$data/images/blobs" | cut -f1)"
layers="$(du -sb "$data/images/layers" | cut -f1)"
stop_server "$addr" >/dev/null 2>&1
echo "python and shop (shop = python + one layer):"
printf '  sum of the two images'"'"' sizes:  %8.1f MiB\n' "$(echo "$sum / 1048576" | bc -l)"
printf '  blobs stored on the node:      %8.1f MiB (%.2fx the sum)\n' "$(echo "$blobs / 1048576" | bc -l)" "$(echo "$blobs / $sum" | bc -l)"
printf '  layers unpacked on the node:   %8.1f MiB\n' "$(echo "$layers / 1048576" | bc -l)"
