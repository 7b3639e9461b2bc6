#!/usr/bin/env bash
# testdata/kubevirt-vm-read.sh: reads KubeVirt's VM artifact
# (application/vnd.kubevirt.virtualmachine.v1) the way KubeVirt's
# hack/oci-import.sh does, up to the point where it would need a cluster:
# copy the reference into an OCI layout with skopeo, take the manifest that
# index.json lists first, check its artifactType and config media type, and
# decompress every application/vnd.kubevirt.disk.raw+zstd layer with zstd.
# Written from the format (docs/oci.md), not copied from KubeVirt.
#
# Usage: kubevirt-vm-read.sh REF OUTDIR [ARCH]
#   REF     docker://HOST/REPO:TAG, or oci:LAYOUT:TAG
#   OUTDIR  gets vm.json (the config blob) and NAME.raw per disk layer,
#           and disks.txt with one "NAME SIZE" line per disk layer
#   ARCH    the platform to pick from the index (skopeo --override-arch)
# Needs: skopeo, jq, zstd. Plain HTTP is allowed (test registries on loopback).
set -euo pipefail
ref=$1 out=$2 arch=${3:-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
oci=$work/oci

global=() copyargs=()
if [ -n "$arch" ]; then global+=(--override-arch "$arch" --override-os linux); fi
case $ref in docker://*) copyargs+=(--src-tls-verify=false) ;; esac
skopeo "${global[@]}" copy "${copyargs[@]}" "$ref" "oci:$oci" >/dev/null

[ -f "$oci/oci-layout" ] && [ -f "$oci/index.json" ] || { echo "not an OCI image layout" >&2; exit 1; }
blob() { echo "$oci/blobs/${1/://}"; }

manifest=$(blob "$(jq -r '.manifests[0].digest' "$oci/index.json")")
at=$(jq -r '.artifactType // empty' "$manifest")
[ "$at" = application/vnd.kubevirt.virtualmachine.v1 ] || { echo "artifactType ${at:-<none>}" >&2; exit 1; }
cmt=$(jq -r '.config.mediaType // empty' "$manifest")
[ "$cmt" = application/vnd.kubevirt.virtualmachine.config.v1+json ] || { echo "config mediaType ${cmt:-<none>}" >&2; exit 1; }

mkdir -p "$out"
cp "$(blob "$(jq -r '.config.digest' "$manifest")")" "$out/vm.json"
: >"$out/disks.txt"
jq -c '.layers[] | select(.mediaType == "application/vnd.kubevirt.disk.raw+zstd")
  | {digest, name: .annotations["io.kubevirt.disk.name"], size: .annotations["io.kubevirt.disk.size"]}' "$manifest" |
while IFS= read -r layer; do
  name=$(jq -r .name <<<"$layer")
  case $name in ''|null|*/*|.|..) echo "bad disk name $name" >&2; exit 1 ;; esac
  zstd -q -d "$(blob "$(jq -r .digest <<<"$layer")")" -o "$out/$name.raw"
  echo "$name $(jq -r .size <<<"$layer")" >>"$out/disks.txt"
done
[ -s "$out/disks.txt" ] || { echo "no disk layer" >&2; exit 1; }
