package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
)

// TestDocsQemuLines: the plain QEMU lines in docs/formats.md are what
// `run --print-command` prints for the files a default build writes into
// dist/, on SeaBIOS and on OVMF.
func TestDocsQemuLines(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "formats.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```text\\n(qemu-system.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) != 2 {
		t.Fatalf("docs/formats.md has %d text blocks of QEMU lines, want 2 (SeaBIOS, OVMF)", len(blocks))
	}
	t.Chdir(t.TempDir())
	if code, _, stderr := cli(t, "build", "-q"); code != 0 {
		t.Fatalf("build: %s", stderr)
	}
	for i, boot := range []string{"bios", "uefi"} {
		var want []string
		for _, f := range formats.Types {
			code, stdout, stderr := cli(t, "run", "--print-command", "--boot", boot, filepath.Join("dist", f.FileName()))
			if code != 0 {
				t.Fatalf("run --print-command --boot %s %s: exit %d: %s", boot, f.Type, code, stderr)
			}
			want = append(want, strings.TrimSuffix(stdout, "\n"))
		}
		if got := strings.TrimSuffix(blocks[i][1], "\n"); got != strings.Join(want, "\n") {
			t.Errorf("docs/formats.md's %s lines are\n%s\nrun --print-command prints\n%s", boot, got, strings.Join(want, "\n"))
		}
	}
}

// TestRunUsage: run's mistakes are one-line usage errors (exit 2) found
// before anything boots.
func TestRunUsage(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "d.raw")
	if code, _, stderr := cli(t, "build", "-q", "-o", dir, "--format", "raw"); code != 0 {
		t.Fatal(stderr)
	}
	if err := os.Rename(filepath.Join(dir, "512-byte-vm.raw"), disk); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--guest-arch", "arm64", "--boot", "bios"}, "arm64 boots on UEFI"},
		{[]string{"run", "--guest-arch", "riscv64"}, "use amd64 or arm64"},
		{[]string{"run", "--boot", "coreboot"}, "use bios"},
		{[]string{"run", "--display", "vnc"}, "use none, gtk, sdl or curses"},
		{[]string{"run", "--firmware", "bios", "--boot", "uefi"}, "without an EFI system partition"},
		{[]string{"run", "--firmware", "uefi"}, "without a BIOS program"},
		{[]string{"run", disk, "--then", "poweroff"}, "--then shapes the disk run builds"},
		{[]string{"run", "--print-command"}, "give one"},
		{[]string{"run", disk, "a"}, "accepts at most 1 arg"},
		{[]string{"run", "--screenshot", filepath.Join(dir, "no", "s.png")}, "does not exist"},
	} {
		code, _, stderr := cli(t, c.args...)
		first, _, _ := strings.Cut(stderr, "\n")
		if code != exitUsage || !strings.Contains(first, c.want) {
			t.Errorf("%q: exit %d, stderr %q, want exit 2 saying %q", c.args, code, stderr, c.want)
		}
	}
	// Not a disk: an error of the input (exit 1), in one line.
	text := filepath.Join(dir, "hostname")
	if err := os.WriteFile(text, []byte("box\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := cli(t, "run", text)
	if code != exitError || !strings.Contains(stderr, "not a disk image") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("run on a text file: exit %d, stderr %q", code, stderr)
	}
}
