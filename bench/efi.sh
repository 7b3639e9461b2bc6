#!/usr/bin/env bash
# Time boot-to-marker-to-power-off of the x86-64 EFI application on OVMF
# (q35, virtio-blk, TCG) against a bare application that only calls
# ResetSystem, started the same way in the same run.
#
#   bash bench/efi.sh [RUNS]      # default: 9 runs each, interleaved
#
# Both are served from a vvfat directory; each run starts a fresh QEMU, so
# the times are dominated by OVMF's own start. Prints the medians and the
# ratio; the aim is at most 1.2x.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-9}
code=/usr/share/OVMF/OVMF_CODE_4M.fd
vars=/usr/share/OVMF/OVMF_VARS_4M.fd
command -v qemu-system-x86_64 >/dev/null || { echo "bench: qemu-system-x86_64 not found (apt-get install qemu-system-x86)" >&2; exit 1; }
[ -f "$code" ] || { echo "bench: $code not found (apt-get install ovmf)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go run ./bench/efiapps "$work"

# boot_ms DIR: one boot to power-off, in ms; fails if QEMU does not exit 0.
boot_ms() {
  local t0 t1
  t0=$(date +%s%N)
  timeout 300 qemu-system-x86_64 -nodefaults -machine q35 -accel tcg -m 64 -display none \
    -serial "file:$work/serial.txt" -monitor none -no-reboot \
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=$code" \
    -drive "if=pflash,format=raw,unit=1,snapshot=on,file=$vars" \
    -drive "file=fat:$1,format=raw,if=none,id=d0,snapshot=on" -device virtio-blk-pci,drive=d0,bootindex=0
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

vm=() bare=()
for _ in $(seq "$runs"); do
  bare+=("$(boot_ms "$work/bare")")
  vm+=("$(boot_ms "$work/vm")")
  grep -q 'Hello World!' "$work/serial.txt" || { echo "bench: the VM printed no marker" >&2; exit 1; }
done
mb=$(printf '%s\n' "${bare[@]}" | median)
mv=$(printf '%s\n' "${vm[@]}" | median)
echo "| OVMF q35 virtio, TCG, $runs runs | median ms |"
echo "|---|---|"
echo "| bare app (ResetSystem only) | $mb |"
echo "| tinyvm-oci app (banner, marker, power off) | $mv |"
awk -v a="$mv" -v b="$mb" 'BEGIN {printf "| ratio | %.3fx |\n", a/b}'
