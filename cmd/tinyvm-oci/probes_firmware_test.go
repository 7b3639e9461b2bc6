package main

import (
	"context"
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
	if testing.Short() {
		t.Skip("boots QEMU three times")
	}
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	tooltest.RequireFile(t, qemu.OVMFCode, tooltest.OVMF)
	tooltest.Require(t, qemu.BinaryARM, tooltest.QemuSystemARM)
	tooltest.RequireFile(t, qemu.AAVMFCode, tooltest.AAVMF)
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
	idRE := regexp.MustCompile(`tinyvm id ([0-9a-f]{8})\r\n`)
	var id string
	for i, fw := range []qemu.Options{
		{Firmware: "bios"},
		{Firmware: "uefi", Machine: "q35", Bus: "virtio"},
		{Arch: "arm64", Bus: "virtio"},
	} {
		fw.File, fw.Driver = file, "raw"
		name := fw.Arch + "/" + fw.Firmware
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
		for _, want := range []string{"tinyvm boot " + string(rune('1'+i)) + "\r\n", "tinyvm disks 1\r\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s (boot %d): serial lacks %q: %q", name, i+1, want, out)
			}
		}
	}
	code, stdout, stderr := cli(t, "inspect", file)
	if code != 0 || !regexp.MustCompile(`boot count:\s+3\b`).MatchString(stdout) {
		t.Errorf("inspect after three boots: exit %d, %q %q; want boot count 3", code, stdout, stderr)
	}
}
