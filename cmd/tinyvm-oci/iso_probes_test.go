package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/probetest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// TestBuildProbesISO: `build --probe id,disks,heartbeat,echo --format
// iso` writes an ISO that SeaBIOS boots as a CD with the probes' lines, the
// --volume-label included, and that echoes COM1 and powers off on
// "poweroff"; bootcount with the iso, probes with the floppy variant, a bad
// label, and a label without the iso are usage errors that write nothing.
func TestBuildProbesISO(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	code, _, stderr := cli(t, "build", "-q", "-o", dir, "--probe", "id,disks,heartbeat=200ms,echo", "--format", "iso", "--volume-label", "cidata")
	if code != 0 {
		t.Fatalf("build --probe id,disks,heartbeat,echo --format iso: exit %d, %s", code, stderr)
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	console, typed, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer typed.Close()
	defer console.Close()
	serial := qemu.NewCapture()
	p, err := qemu.Start(ctx, qemu.Options{File: file, Bus: "cdrom", Serial: serial, Console: console})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	// Generous waits for TCG under load, never asserted as durations.
	const wait = 90 * time.Second
	for _, step := range []struct {
		typed string
		want  *regexp.Regexp
	}{
		{"", regexp.MustCompile(`tinyvm heartbeat 2\r\n`)},
		// A heartbeat may come due mid-line: it ends the typed part first.
		{"hello\r", probetest.EchoRE("hello")},
	} {
		if _, err := typed.WriteString(step.typed); err != nil {
			t.Fatal(err)
		}
		if !serial.WaitForMatch(step.want, wait, p.Done()) {
			t.Fatalf("serial lacks %q: %q", step.want, serial.String())
		}
	}
	if _, err := typed.WriteString("poweroff\r"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatalf("poweroff on COM1 did not end QEMU: %q", serial.String())
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("QEMU after poweroff: %v (serial %q)", err, serial.String())
	}
	for _, want := range []string{"Hello World!\r\n", "tinyvm id ", "tinyvm disks 0\r\n", "tinyvm volume cidata\r\n", "tinyvm heartbeat 1\r\n"} {
		if !strings.Contains(serial.String(), want) {
			t.Errorf("serial %q lacks %q", serial.String(), want)
		}
	}
}
