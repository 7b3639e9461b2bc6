package pe_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/pe"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/x64"
)

// TestBootSmallest boots the smallest image Write makes on OVMF: 24 bytes
// of code calling ResetSystem(EfiResetShutdown), padded to 336 bytes.
// QEMU exits 0 only if the firmware loaded and ran it.
func TestBootSmallest(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	tooltest.RequireFile(t, qemu.OVMFCode, tooltest.OVMF)
	a := x64.New()
	a.SubImm8(x64.RSP, 0x28)       // shadow space; RSP 16-aligned at the call
	a.Load(x64.RAX, x64.RDX, 0x58) // SystemTable->RuntimeServices
	a.MovImm32(x64.RCX, 2)         // EfiResetShutdown
	a.Xor32(x64.RDX, x64.RDX)
	a.Xor32(x64.R8, x64.R8)
	a.Xor32(x64.R9, x64.R9)
	a.CallMem(x64.RAX, 0x68) // ResetSystem
	code, err := a.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	b, err := pe.Write(pe.AMD64, code)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "EFI", "BOOT", "BOOTX64.EFI")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	serial := qemu.NewCapture()
	err = qemu.Run(ctx, qemu.Options{File: "fat:" + dir, Firmware: "uefi", Machine: "q35", Bus: "virtio", Serial: serial, NoReboot: true})
	if err != nil { // killed at the deadline when the firmware refused the image
		t.Fatalf("%d-byte image: %v; serial: %q", len(b), err, serial.String())
	}
}
