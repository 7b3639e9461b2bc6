package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/ova"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// TestInspectHostileFiles runs inspect on what is not a valid disk: each
// prints what it can, fails with one line on stderr and exits 1; a FIFO
// does not block.
func TestInspectHostileFiles(t *testing.T) {
	dir := t.TempDir()
	put := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, stdout, stderr string
	}{
		{"hostname", put("hostname", []byte("vm\n")), "not a disk:    3 bytes is not a whole number", "not a disk image: 3 bytes"},
		{"empty", put("empty", nil), "not a disk:    the file is empty", "not a disk image: the file is empty"},
		{"text", put("text", bytes.Repeat([]byte("x"), 1024)), "not a disk:    no boot signature", "no boot signature"},
		{"truncated qcow2", put("bad.qcow2", []byte("QFI\xfb\x00\x00\x00\x03")), "corrupt:       qcow2: file of 8 bytes", "not a valid qcow2 file"},
		{"fifo", fifo, "", "is a named pipe (FIFO), not a regular file"},
		{"directory", dir, "", "is a directory, not a regular file"},
	} {
		var code int
		var stdout, stderr string
		done := make(chan struct{})
		go func() { code, stdout, stderr = cli(t, "inspect", c.path); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: inspect blocked", c.name)
		}
		if code != exitError || !strings.Contains(stdout, c.stdout) || !strings.Contains(stderr, c.stderr) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 1, stdout with %q, one stderr line with %q", c.name, code, stdout, stderr, c.stdout, c.stderr)
		}
	}
	// JSON carries the reason too.
	code, stdout, _ := cli(t, "inspect", "--json", filepath.Join(dir, "hostname"))
	var inf info.Info
	if err := json.Unmarshal([]byte(stdout), &inf); err != nil || code != exitError || inf.NotDisk == "" || inf.Format != "raw" {
		t.Errorf("json: exit %d, %+v, %v", code, inf, err)
	}
}

// TestInspectQuotesNames: an OVA member named with a terminal escape and a
// newline is printed quoted, in text and in JSON; no raw control byte
// reaches stdout.
func TestInspectQuotesNames(t *testing.T) {
	var good bytes.Buffer
	if err := ova.Write(&good, formattest.BootDisk(t, 1<<20), ova.Options{Name: "vm"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tw, tr := tar.NewWriter(&out), tar.NewReader(&good)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(h)
		io.Copy(tw, tr)
	}
	tw.WriteHeader(&tar.Header{Name: "\x1b[2J\u009b31m\nevil", Mode: 0o644, Format: tar.FormatPAX})
	tw.Close()
	p := filepath.Join(t.TempDir(), "vm.ova")
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	const quoted = `"\x1b[2J\u009b31m\nevil"`
	code, stdout, stderr := cli(t, "inspect", p)
	if code != exitOK || strings.ContainsAny(stdout, "\x1b\u009b") || !strings.Contains(stdout, "file:          "+quoted+"\n") {
		t.Errorf("text: exit %d, the name is not quoted:\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = cli(t, "inspect", "--json", p)
	var inf info.Info
	if err := json.Unmarshal([]byte(stdout), &inf); err != nil || code != exitOK {
		t.Fatalf("json: exit %d, %v: %s", code, err, stderr)
	}
	if strings.ContainsAny(stdout, "\x1b\u009b") || len(inf.Files) != 4 || inf.Files[3] != quoted {
		t.Errorf("json: the name is not quoted: %q", inf.Files)
	}
}

// TestInspectCancelled: a cancelled command stops with the context's
// error.
func TestInspectCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := filepath.Join(t.TempDir(), "boot.raw")
	if err := os.WriteFile(p, formattest.BootSector(t), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := execute(ctx, []string{"inspect", p}, &stdout, &stderr)
	if code == exitOK || !strings.Contains(stderr.String(), "context canceled") || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestInspectBootCount: the bootcount probe's counter is readable offline.
// A raw disk booted twice in QEMU (which writes the counter through int
// 13h) says "boot count: 2"; a fresh one says 0.
func TestInspectBootCount(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	dir := t.TempDir()
	if code, _, stderr := cli(t, "build", "-q", "-o", dir, "--format", "raw", "--probe", "bootcount", "--then", "poweroff"); code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	file := filepath.Join(dir, "512-byte-vm.raw")
	if _, stdout, _ := cli(t, "inspect", file); !strings.Contains(stdout, "boot count:    0\n") {
		t.Fatalf("fresh disk: %s", stdout)
	}
	for boot := 1; boot <= 2; boot++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var serial bytes.Buffer
		err := qemu.Run(ctx, qemu.Options{File: file, Machine: "q35", Bus: "virtio", Serial: &serial})
		cancel()
		if err != nil || !strings.Contains(serial.String(), fmt.Sprintf("tinyvm boot %d", boot)) {
			t.Fatalf("boot %d: %v, serial %q", boot, err, serial.String())
		}
	}
	code, stdout, _ := cli(t, "inspect", "--json", file)
	if code != 0 || !strings.Contains(stdout, `"bootCount": 2`) {
		t.Errorf("after two boots: exit %d, %s", code, stdout)
	}
}
