#!/usr/bin/env bash
# bench/push.sh: wall time and HTTP request count of `tinyvm-oci push --all`
# against the same content pushed with oras push (the disk files' directory,
# the disks artifact) plus crane push (every other tag of the build's OCI
# layout, one at a time), and with crane push --index (the whole layout)
# and skopeo copy --all (each tag of the layout), all to one local
# docker-registry, in one run. Every client goes through the same logging
# proxy (bench/reqlog), which counts its requests.
# Then the bytes each shape of the disks artifact stores in the registry
# (one uncompressed layer per file, one gzip directory layer as tinyvm-oci
# and oras push of a directory make it, one compressed layer per file), and
# what the whole push --all stores.
#
# Usage: bench/push.sh [ROUNDS]   (default 3; prints markdown tables)
# Needs: docker-registry, skopeo, oras, crane, python3, gzip, zstd, go.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}

for tool in docker-registry skopeo oras crane python3 gzip zstd go; do
  command -v "$tool" >/dev/null || { echo "bench/push.sh: $tool not found" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
cat >"$work/config.yml" <<CFG
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: $reg
CFG
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://$reg/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

go build -o "$work/tinyvm-oci" ./cmd/tinyvm-oci
go build -o "$work/reqlog" ./bench/reqlog
: >"$work/requests.log"
"$work/reqlog" -target "$reg" -log "$work/requests.log" >"$work/proxy.addr" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/proxy.addr" ] && break; sleep 0.1; done
host=$(head -1 "$work/proxy.addr")
"$work/tinyvm-oci" build -o "$work/dist" >/dev/null 2>&1
tags=$(python3 -c 'import json,sys; print(" ".join(m["annotations"]["org.opencontainers.image.ref.name"] for m in json.load(open(sys.argv[1]))["manifests"]))' "$work/dist/oci/index.json")

# One single-entry layout per tag, sharing the blobs, for crane push of
# one tag (crane push takes a layout with one entry).
for t in $tags; do
  mkdir -p "$work/tag/$t"
  cp "$work/dist/oci/oci-layout" "$work/tag/$t/"
  ln -s "$work/dist/oci/blobs" "$work/tag/$t/blobs"
  python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); i["manifests"]=[m for m in i["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"]==sys.argv[2]]; json.dump(i,open(sys.argv[3],"w"))' \
    "$work/dist/oci/index.json" "$t" "$work/tag/$t/index.json"
done
mkdir -p "$work/orasdir/512-byte-vm"
cp "$work"/dist/512-byte-vm.* "$work/orasdir/512-byte-vm/"

# requests counts the proxy's log lines.
requests() { wc -l <"$work/requests.log"; }

# measure NAME CMD...: runs CMD, prints "NAME seconds requests".
measure() {
  local name=$1; shift
  local before after t0 t1
  before=$(requests)
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  after=$(requests)
  echo "$name|$(python3 -c "print(f'{$t1-$t0:.3f}')")|$((after - before))"
}

oras_push() {
  local repo=$1 args=()
  for f in "$work"/dist/512-byte-vm.*; do
    local ext=${f##*.}
    args+=("$(basename "$f"):application/vnd.tinyvm-oci.disk.$ext")
  done
  (cd "$work/dist" && oras push --plain-http --artifact-type application/vnd.tinyvm-oci.disks.v1 "$host/$repo:disks" "${args[@]}")
}
oras_dir() {
  (cd "$work/orasdir" && oras push --plain-http --artifact-type application/vnd.tinyvm-oci.disks.v1 "$host/$1:disks" 512-byte-vm/)
}
crane_each() {
  local repo=$1
  for t in $tags; do
    [ "$t" = disks ] && continue
    crane push --insecure "$work/tag/$t" "$host/$repo:$t"
  done
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
    measure "oras push (the disks directory)" oras_dir "same$r"
    measure "crane push (every other tag)" crane_each "same$r"
    measure "oras push (one layer per file)" oras_push "oras$r"
    measure "crane push --index (layout)" crane push --insecure --index "$work/dist/oci" "$host/crane$r:all"
    measure "skopeo copy --all (layout, per tag)" skopeo_all "skopeo$r"
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
    name, secs, reqs = line.strip().split("|")
    rows.setdefault(name, []).append((float(secs), int(reqs)))
# oras push of the disks directory plus crane push of every other tag
# publish what push --all does: their sum, round by round.
o, c = rows.get("oras push (the disks directory)"), rows.get("crane push (every other tag)")
if o and c:
    both = [(a[0] + b[0], a[1] + b[1]) for a, b in zip(o, c)]
    items = list(rows.items())
    rows = collections.OrderedDict(items[:3] + [("oras push + crane push (the same content)", both)] + items[3:])
for name, v in rows.items():
    print(f"| {name} | {statistics.median(s for s, _ in v):.3f} | {statistics.median(r for _, r in v):.0f} |")
PY

# stored REPO: bytes of the blobs and manifests REPO links to in the
# registry's filesystem storage, each counted once.
stored() {
  python3 - "$work/storage/docker/registry/v2" "$1" <<'PY'
import os, sys
root, repo = sys.argv[1], sys.argv[2]
digests = set()
for sub in ("_layers/sha256", "_manifests/revisions/sha256"):
    d = os.path.join(root, "repositories", repo, sub)
    if os.path.isdir(d):
        digests.update(os.listdir(d))
print(sum(os.path.getsize(os.path.join(root, "blobs/sha256", h[:2], h, "data")) for h in digests))
PY
}

# The disks artifact in each shape, pushed once each (the sizes do not vary).
files=("$work"/dist/512-byte-vm.*)
mkdir -p "$work/shapes/512-byte-vm" "$work/shapes/gz" "$work/shapes/zst"
cp "${files[@]}" "$work/shapes/512-byte-vm/"
for f in "${files[@]}"; do
  b=$(basename "$f")
  gzip -n -9 -c "$f" >"$work/shapes/gz/$b.gz"
  zstd -q -19 -c "$f" >"$work/shapes/zst/$b.zst"
done
oras_files() { # DIR SUFFIX REPO: one layer per file of DIR
  local dir=$1 repo=$2 args=()
  for f in "$dir"/*; do args+=("$(basename "$f")"); done
  (cd "$dir" && oras push --plain-http --artifact-type application/vnd.tinyvm-oci.disks.v1 "$host/$repo:disks" "${args[@]}") >/dev/null
}
oras_files "$work/dist" shape-files
"$work/tinyvm-oci" push "$host/shape-tvo:disks" >/dev/null 2>&1
(cd "$work/shapes" && oras push --plain-http --artifact-type application/vnd.tinyvm-oci.disks.v1 "$host/shape-orasdir:disks" 512-byte-vm/) >/dev/null
oras_files "$work/shapes/gz" shape-gz
oras_files "$work/shapes/zst" shape-zst
"$work/tinyvm-oci" push --all "$host/shape-all" >/dev/null 2>&1

tarball=$work/shapes/dir.tar
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$tarball" -C "$work/shapes" 512-byte-vm
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --posix --sparse -cf "$tarball.sparse" -C "$work/shapes" 512-byte-vm
echo
echo "| disks artifact shape | stored in the registry (bytes) | oras pull gives the files as they are |"
echo "|---|---:|---|"
echo "| one uncompressed layer per file (before) | $(stored shape-files) | yes |"
echo "| (a) one gzip directory layer, tinyvm-oci push :disks | $(stored shape-tvo) | yes, in 512-byte-vm/ |"
echo "| (a) the same by oras push 512-byte-vm/ (not reproducible: oras stamps the time) | $(stored shape-orasdir) | yes, in 512-byte-vm/ |"
echo "| (b) one gzip -9 layer per file | $(stored shape-gz) | no: .gz files to gunzip |"
echo "| (b) one zstd -19 layer per file | $(stored shape-zst) | no: .zst files to unzstd |"
echo
echo "GNU tar of the directory: plain $(wc -c <"$tarball") bytes (gzip -1 $(gzip -1 -c "$tarball" | wc -c), gzip -9 $(gzip -9 -c "$tarball" | wc -c), zstd -19 $(zstd -q -19 -c "$tarball" | wc -c)); --posix --sparse $(wc -c <"$tarball.sparse") bytes (gzip -9 $(gzip -9 -c "$tarball.sparse" | wc -c))."
echo
echo "tinyvm-oci push --all (every tag: $tags) stores $(stored shape-all) bytes."
