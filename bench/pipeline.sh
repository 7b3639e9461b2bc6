#!/usr/bin/env bash
# Time `tinyvm-oci build` (every format, SHA256SUMS, the OCI layout and the
# KubeVirt manifests) against the shell pipeline it replaces, measured in
# the same run: nasm assembles a 512-byte boot sector, qemu-img converts the
# padded raw disk to each format, genisoimage (mkisofs) makes the ISO, tar
# makes the OVA, and sha256sum writes the sums. The pipeline makes no OCI
# layout and no manifests, so the comparison favours it.
#
#   bash bench/pipeline.sh [RUNS]        # default 11 runs
#
# Needs: nasm qemu-utils genisoimage (Debian). Prints medians in ms and the
# ratio ours/pipeline, then where tinyvm-oci's own time goes (a build with
# the layout and manifests switched off, and `version` for process start).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-11}
for tool in nasm qemu-img genisoimage; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found (apt-get install nasm qemu-utils genisoimage)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/tinyvm-oci" ./cmd/tinyvm-oci
bin="$work/tinyvm-oci"

# The oVirt 512-byte VM's shape: print a line on COM1 through the BIOS,
# then power off with APM; the same work as --then poweroff.
cat > "$work/boot.asm" <<'ASM'
bits 16
org 0x7c00
  xor ax, ax
  mov ds, ax
  mov si, msg
  mov ax, 0x00e3
  xor dx, dx
  int 0x14
next:
  lodsb
  test al, al
  jz off
  mov ah, 1
  xor dx, dx
  int 0x14
  jmp next
off:
  mov ax, 0x5301
  xor bx, bx
  int 0x15
  mov ax, 0x5307
  mov bx, 1
  mov cx, 3
  int 0x15
  hlt
msg: db "Hello World!", 13, 10, 0
times 510-($-$$) db 0
dw 0xaa55
ASM

pipeline() {
  local out=$1
  rm -rf "$out" && mkdir -p "$out/iso"
  nasm -f bin -o "$out/boot.bin" "$work/boot.asm"
  cp "$out/boot.bin" "$out/512-byte-vm.raw"
  truncate -s 1M "$out/512-byte-vm.raw"
  qemu-img convert -f raw -O qcow2 "$out/512-byte-vm.raw" "$out/512-byte-vm.qcow2"
  qemu-img convert -f raw -O vmdk "$out/512-byte-vm.raw" "$out/512-byte-vm.vmdk"
  qemu-img convert -f raw -O vdi "$out/512-byte-vm.raw" "$out/512-byte-vm.vdi"
  qemu-img convert -f raw -O vpc "$out/512-byte-vm.raw" "$out/512-byte-vm.vhd"
  qemu-img convert -f raw -O vhdx "$out/512-byte-vm.raw" "$out/512-byte-vm.vhdx"
  cp "$out/boot.bin" "$out/iso/boot.img"
  genisoimage -quiet -no-emul-boot -boot-load-size 1 -b boot.img -o "$out/512-byte-vm.iso" "$out/iso" 2>/dev/null
  tar -C "$out" -cf "$out/512-byte-vm.ova" 512-byte-vm.vmdk
  (cd "$out" && sha256sum 512-byte-vm.* > SHA256SUMS)
}

# measure CMD...: runs it $runs times and prints the median wall time and
# the median CPU time (user+sys, children included) in ms. CPU time is
# what a loaded machine changes least; wall time is what a user waits.
measure() {
  local walls=() cpus=() t
  for _ in $(seq "$runs"); do
    t=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>&1; } 2>&1 )
    walls+=($(awk '{printf "%d", $1*1000000}' <<<"$t"))
    cpus+=($(awk '{printf "%d", ($2+$3)*1000000}' <<<"$t"))
  done
  printf '%s %s\n' \
    "$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}')" \
    "$(printf '%s\n' "${cpus[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}')"
}

read -r ours ours_cpu < <(measure "$bin" build -q -o "$work/ours")
read -r layout layout_cpu < <(measure "$bin" build -q -o "$work/layout" --kubevirt=false)
read -r files files_cpu < <(measure "$bin" build -q -o "$work/files" --oci-layout=false --kubevirt=false)
read -r start start_cpu < <(measure "$bin" version)
read -r peer peer_cpu < <(measure pipeline "$work/peer")
echo "median of $runs runs on $(nproc) CPUs, $(nasm -v), $(qemu-img --version | head -1), $(go env GOVERSION)"
echo
echo "| what | wall (ms) | CPU, user+sys (ms) |"
echo "|---|---:|---:|"
echo "| tinyvm-oci build (every format, SHA256SUMS, OCI layout with the VM artifact, manifests) | $ours | $ours_cpu |"
echo "| tinyvm-oci build --kubevirt=false (every format, SHA256SUMS, OCI layout) | $layout | $layout_cpu |"
echo "| tinyvm-oci build, files and SHA256SUMS only | $files | $files_cpu |"
echo "| tinyvm-oci version (process start) | $start | $start_cpu |"
echo "| nasm + qemu-img + genisoimage + tar + sha256sum pipeline | $peer | $peer_cpu |"
echo
awk -v o="$ours" -v p="$peer" -v f="$files" -v oc="$ours_cpu" -v pc="$peer_cpu" -v fc="$files_cpu" 'BEGIN {
  printf "ratio build/pipeline: %.2f wall, %.2f CPU; files only/pipeline: %.2f wall, %.2f CPU\n", o/p, oc/pc, f/p, fc/pc
}'
awk -v o="$ours" -v l="$layout" -v f="$files" -v oc="$ours_cpu" -v lc="$layout_cpu" -v fc="$files_cpu" 'BEGIN {
  printf "ratio to files only: build %.2f wall, %.2f CPU; with the layout, no manifests: %.2f wall, %.2f CPU\n", o/f, oc/fc, l/f, lc/fc
}'
