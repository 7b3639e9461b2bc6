package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// TestBuildProbesISO: `build --probe id,disks --format iso` writes an ISO
// that SeaBIOS boots as a CD, the probes' lines and the --volume-label
// included; bootcount with the iso, probes with the floppy variant, a bad
// label, and a label without the iso are usage errors that write nothing.
func TestBuildProbesISO(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	code, _, stderr := cli(t, "build", "-q", "-o", dir, "--probe", "id,disks", "--then", "poweroff", "--format", "iso", "--volume-label", "cidata")
	if code != 0 {
		t.Fatalf("build --probe id,disks --format iso: exit %d, %s", code, stderr)
	}
	file := filepath.Join(dir, "512-byte-vm.iso")
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--probe", "bootcount", "--format", "iso"}, "sector: probe bootcount needs a writable disk: iso is read-only; drop bootcount or use a disk format"},
		{[]string{"--probe", "id,bootcount", "--format", "raw,iso"}, "iso is read-only"},
		{[]string{"--probe", "id", "--format", "iso", "--iso-boot", "floppy"}, "the probes' loader cannot read its second stage from an emulated floppy; use --iso-boot noemul"},
		{[]string{"--format", "iso", "--volume-label", "has\ttab"}, `--volume-label: iso: bad volume label "has\ttab": use 1 to 32 printable ASCII characters`},
		{[]string{"--format", "iso", "--volume-label", strings.Repeat("x", 33)}, "iso: bad volume label"},
		{[]string{"--format", "raw", "--volume-label", "cidata"}, "--volume-label applies to iso, which is not built here (raw)"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		code, _, stderr := cli(t, append([]string{"build", "-o", out}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("build %q: exit %d, stderr %q; want exit 2 and a first line with %q", tc.args, code, stderr, tc.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("build %q wrote %s", tc.args, out)
		}
	}

	if testing.Short() {
		return
	}
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	serial := qemu.NewCapture()
	if err := qemu.Run(ctx, qemu.Options{File: file, Bus: "cdrom", Serial: serial}); err != nil {
		t.Fatalf("boot the iso as a CD: %v (serial %q)", err, serial.String())
	}
	for _, want := range []string{"Hello World!\r\n", "tinyvm id ", "tinyvm disks 0\r\n", "tinyvm volume cidata\r\n"} {
		if !strings.Contains(serial.String(), want) {
			t.Errorf("serial %q lacks %q", serial.String(), want)
		}
	}
}
