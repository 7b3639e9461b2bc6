#!/usr/bin/env bash
# Compare tinyvm-oci's file size and build time with qemu-img convert of the
# same raw disk (and xorriso for the ISO), measured in the same run.
#
#   bash bench/formats.sh [RUNS] [SIZE]      # defaults: 15 runs, 1MiB
#
# Prints a Markdown table: median wall time over RUNS runs of each command
# (process start included on both sides; tinyvm-oci also hashes the file
# for SHA256SUMS, but writes no OCI layout or manifests), and file sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}
size=${2:-1MiB}
for tool in qemu-img xorriso; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found (apt-get install qemu-utils xorriso)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/tinyvm-oci" ./cmd/tinyvm-oci
bin="$work/tinyvm-oci"
"$bin" build -o "$work/src" --format raw --size "$size" --then poweroff 2>/dev/null >/dev/null
src="$work/src/512-byte-vm.raw"
dd if="$src" of="$work/boot.img" bs=512 count=1 status=none

# median_ms CMD...: run CMD $runs times, print the median wall time in ms.
median_ms() {
  local times=() t0 t1
  for _ in $(seq "$runs"); do
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.1f", m/1000}'
}

row() { # name, our flags, our file, peer command (string), peer file
  local name=$1 flags=$2 ours=$3 peer=$4 peerfile=$5
  local ot pt os ps
  ot=$(median_ms "$bin" build -o "$work/out" --oci-layout=false --kubevirt=false --size "$size" --then poweroff $flags)
  pt=$(median_ms bash -c "rm -f $peerfile; $peer")
  os=$(stat -c %s "$work/out/$ours")
  ps=$(stat -c %s "$peerfile")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$os" "$ps" "$ot" "$pt" \
    "$(awk -v a="$os" -v b="$ps" 'BEGIN { printf "%.3f", a / b }')"
}

echo "Virtual size $size, median of $runs runs, $(qemu-img --version | head -1), $(go version | cut -d' ' -f3)."
echo
echo "| format | ours (bytes) | peer (bytes) | ours (ms) | peer (ms) | size ratio |"
echo "|---|---|---|---|---|---|"
q="qemu-img convert -q -f raw $src"
row raw "--format raw" 512-byte-vm.raw "$q -O raw $work/p.raw" "$work/p.raw"
row qcow2 "--format qcow2" 512-byte-vm.qcow2 "$q -O qcow2 $work/p.qcow2" "$work/p.qcow2"
row "qcow2 -c" "--format qcow2 --qcow2-compress" 512-byte-vm.qcow2 "$q -c -O qcow2 $work/p.qcow2" "$work/p.qcow2"
row vmdk "--format vmdk" 512-byte-vm.vmdk "$q -O vmdk $work/p.vmdk" "$work/p.vmdk"
row "vmdk streamOptimized" "--format vmdk --vmdk-subformat streamOptimized" 512-byte-vm.vmdk "$q -O vmdk -o subformat=streamOptimized $work/p.vmdk" "$work/p.vmdk"
row vdi "--format vdi" 512-byte-vm.vdi "$q -O vdi $work/p.vdi" "$work/p.vdi"
row vhd "--format vhd" 512-byte-vm.vhd "$q -O vpc $work/p.vhd" "$work/p.vhd"
row "vhd fixed" "--format vhd --vhd-type fixed" 512-byte-vm.vhd "$q -O vpc -o subformat=fixed,force_size=on $work/p.vhd" "$work/p.vhd"
row vhdx "--format vhdx" 512-byte-vm.vhdx "$q -O vhdx $work/p.vhdx" "$work/p.vhdx"
mkdir -p "$work/isoroot"
cp "$work/boot.img" "$work/isoroot/boot.img"
row "iso (peer: xorriso)" "--format iso" 512-byte-vm.iso \
  "xorriso -as mkisofs -quiet -o $work/p.iso -b boot.img -no-emul-boot -boot-load-size 1 $work/isoroot" "$work/p.iso"
