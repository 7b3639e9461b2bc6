package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// TestBuildProbesEveryFirmware: `build --probe id,bootcount,disks` makes
// the universal disk by default, and one raw file of it boots with the
// probes on SeaBIOS, OVMF and AAVMF in turn: the same id each time, one
// disk, and a boot counter that the three firmwares share (1, 2, 3), which
// inspect then reads offline.
func TestBuildProbesEveryFirmware(t *testing.T) {
	requireEveryFirmware(t)
	dir := filepath.Join(t.TempDir(), "out")
	code, _, stderr := cli(t, "build", "-q", "-o", dir, "--probe", "id,bootcount,disks", "--then", "poweroff", "--format", "raw")
	if code != 0 {
		t.Fatalf("build --probe id,bootcount,disks: exit %d, %s", code, stderr)
	}
	for _, want := range []string{"EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/BOOTAA64.EFI"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("build with probes did not make the universal disk (no %s): %s", want, stderr)
		}
	}
	file := filepath.Join(dir, "512-byte-vm.raw")
	outs := bootEach(t, file, []qemu.Options{
		{Firmware: "bios"},
		{Firmware: "uefi", Machine: "q35", Bus: "virtio"},
		{Arch: "arm64", Bus: "virtio"},
	})
	for i, out := range outs {
		for _, want := range []string{fmt.Sprintf("tinyvm boot %d\r\n", i+1), "tinyvm disks 1\r\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("boot %d: serial lacks %q: %q", i+1, want, out)
			}
		}
	}
	code, stdout, stderr := cli(t, "inspect", file)
	if code != 0 || !regexp.MustCompile(`boot count:\s+3\b`).MatchString(stdout) {
		t.Errorf("inspect after three boots: exit %d, %q %q; want boot count 3", code, stdout, stderr)
	}
}

// TestBuildProbesISOEveryFirmware: the iso of a probe build boots as a CD
// with the probes on SeaBIOS (the no-emulation entry), OVMF and AAVMF (the
// EFI entry's ESP holds the applications): the same id, and the CD's own
// label from the disks probe.
func TestBuildProbesISOEveryFirmware(t *testing.T) {
	requireEveryFirmware(t)
	dir := filepath.Join(t.TempDir(), "out")
	code, _, stderr := cli(t, "build", "-q", "-o", dir, "--probe", "id,disks", "--then", "poweroff", "--format", "iso", "--volume-label", "cidata")
	if code != 0 {
		t.Fatalf("build --probe id,disks --format iso: exit %d, %s", code, stderr)
	}
	outs := bootEach(t, filepath.Join(dir, "512-byte-vm.iso"), []qemu.Options{
		{Firmware: "bios", Bus: "cdrom"},
		{Firmware: "uefi", Machine: "q35", Bus: "cdrom"},
		{Arch: "arm64", Bus: "cdrom"},
	})
	for i, out := range outs {
		if !strings.Contains(out, "tinyvm volume cidata\r\n") {
			t.Errorf("boot %d: the CD's label is missing: %q", i+1, out)
		}
	}
}

// requireEveryFirmware skips (fails under TINYVM_REQUIRE_TOOLS=1) without
// QEMU for x86_64 and aarch64, OVMF and AAVMF.
func requireEveryFirmware(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU on three firmwares")
	}
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	tooltest.RequireFile(t, qemu.OVMFCode, tooltest.OVMF)
	tooltest.Require(t, qemu.BinaryARM, tooltest.QemuSystemARM)
	tooltest.RequireFile(t, qemu.AAVMFCode, tooltest.AAVMF)
}

// bootEach boots file with each of fws in turn, one after the other (a
// --then poweroff build), and returns each boot's serial output after
// checking that they all print the same id line.
func bootEach(t *testing.T, file string, fws []qemu.Options) []string {
	t.Helper()
	idRE := regexp.MustCompile(`tinyvm id ([0-9a-f]{8})\r\n`)
	var id string
	var outs []string
	for _, fw := range fws {
		fw.File, fw.Driver = file, "raw"
		name := fw.Arch + "/" + fw.Firmware + "/" + fw.Bus
		serial := qemu.NewCapture()
		fw.Serial = serial
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		p, err := qemu.Start(ctx, fw)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", name, err)
		}
		err = p.Wait() // --then poweroff
		cancel()
		out := serial.String()
		if err != nil {
			t.Fatalf("%s: QEMU did not power off cleanly: %v; serial %q", name, err, out)
		}
		m := idRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no id line: %q", name, out)
		}
		if id == "" {
			id = m[1]
		} else if m[1] != id {
			t.Errorf("%s: id %s, want the disk's %s", name, m[1], id)
		}
		outs = append(outs, out)
	}
	return outs
}
