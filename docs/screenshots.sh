#!/usr/bin/env bash
# Regenerate the README's pictures of the VM's screen: `tinyvm-oci run
# --screenshot` on SeaBIOS, OVMF and AAVMF, the default disk, --then
# poweroff. The pictures are QEMU's own rendering (QMP screendump), so they
# show what the installed firmware prints too. CI runs this after the
# tests; commit the PNGs when they change.
#
#   bash docs/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-system-x86_64 >/dev/null || { echo "screenshots: qemu-system-x86_64 not found (apt-get install qemu-system-x86)" >&2; exit 1; }
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || { echo "screenshots: OVMF not found (apt-get install ovmf)" >&2; exit 1; }
command -v qemu-system-aarch64 >/dev/null || { echo "screenshots: qemu-system-aarch64 not found (apt-get install qemu-system-arm)" >&2; exit 1; }
[ -f /usr/share/AAVMF/AAVMF_CODE.fd ] || { echo "screenshots: AAVMF not found (apt-get install qemu-efi-aarch64)" >&2; exit 1; }

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/tinyvm-oci" ./cmd/tinyvm-oci
"$bin/tinyvm-oci" run --then poweroff --screenshot docs/run-seabios.png </dev/null >/dev/null
"$bin/tinyvm-oci" run --then poweroff --boot uefi --machine q35 --screenshot docs/run-ovmf.png </dev/null >/dev/null
"$bin/tinyvm-oci" run --then poweroff --guest-arch arm64 --screenshot docs/run-aavmf.png </dev/null >/dev/null
# A PNG that does not decode, or that is blank, fails here rather than
# in the README.
for f in docs/run-seabios.png docs/run-ovmf.png docs/run-aavmf.png; do
  [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || { echo "screenshots: $f is not a PNG" >&2; exit 1; }
done
echo "screenshots: wrote docs/run-seabios.png, docs/run-ovmf.png and docs/run-aavmf.png"
