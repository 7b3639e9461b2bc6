#!/usr/bin/env bash
# bench/push.sh: wall time and HTTP request count of `tinyvm-oci push --all`
# against the same content pushed with oras push (the files, as one
# artifact), crane push --index (the build's OCI layout) and skopeo copy
# (each image of the layout), all to one local docker-registry, in one run.
#
# Usage: bench/push.sh [ROUNDS]   (default 3; prints a markdown table)
# Needs: docker-registry, skopeo, oras, crane, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}

for tool in docker-registry skopeo oras crane python3; do
  command -v "$tool" >/dev/null || { echo "bench/push.sh: $tool not found" >&2; exit 1; }
done

work=$(mktemp -d)
regpid=""
cleanup() { [ -n "$regpid" ] && kill "$regpid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat >"$work/config.yml" <<CFG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $host
CFG
docker-registry serve "$work/config.yml" >"$work/access.log" 2>&1 &
regpid=$!
for _ in $(seq 100); do curl -sf "http://$host/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

go build -o "$work/tinyvm-oci" ./cmd/tinyvm-oci
"$work/tinyvm-oci" build -o "$work/dist" >/dev/null 2>&1
tags=$(python3 -c 'import json,sys; print(" ".join(m["annotations"]["org.opencontainers.image.ref.name"] for m in json.load(open(sys.argv[1]))["manifests"]))' "$work/dist/oci/index.json")

# requests counts the registry's access-log lines for /v2/ requests.
requests() { grep -cE '"(GET|HEAD|POST|PUT|PATCH|DELETE) /v2/' "$work/access.log" || true; }

# measure NAME CMD...: runs CMD, prints "NAME seconds requests".
measure() {
  local name=$1; shift
  local before after t0 t1
  before=$(requests)
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  sleep 0.2 # let the access log catch up
  after=$(requests)
  echo "$name $(python3 -c "print(f'{$t1-$t0:.3f}')") $((after - before))"
}

oras_push() {
  local repo=$1 args=()
  for f in "$work"/dist/512-byte-vm.*; do
    local ext=${f##*.}
    args+=("$(basename "$f"):application/vnd.tinyvm-oci.disk.$ext")
  done
  (cd "$work/dist" && oras push --plain-http --artifact-type application/vnd.tinyvm-oci.disks.v1 "$host/$repo:disks" "${args[@]}")
}
skopeo_all() {
  local repo=$1
  for t in $tags; do
    skopeo copy --all --dest-tls-verify=false "oci:$work/dist/oci:$t" "docker://$host/$repo:$t"
  done
}

{
  for r in $(seq "$rounds"); do
    measure "tinyvm-oci push --all (builds too)" "$work/tinyvm-oci" push --all "$host/tvo$r"
    measure "oras push (artifact only)" oras_push "oras$r"
    measure "crane push --index (layout)" crane push --index "$work/dist/oci" "$host/crane$r:all"
    measure "skopeo copy (layout, per tag)" skopeo_all "skopeo$r"
  done
} >"$work/results"

echo "tags: $tags; $(ls "$work"/dist/512-byte-vm.* | wc -l) disk files; $rounds rounds; go $(go env GOVERSION)"
echo
echo "| client | median wall time (s) | HTTP requests |"
echo "|---|---:|---:|"
python3 - "$work/results" <<'PY'
import sys, statistics, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    *name, secs, reqs = line.split()
    rows.setdefault(" ".join(name), []).append((float(secs), int(reqs)))
for name, v in rows.items():
    print(f"| {name} | {statistics.median(s for s, _ in v):.3f} | {statistics.median(r for _, r in v):.0f} |")
PY
