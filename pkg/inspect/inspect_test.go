package inspect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
)

// TestDetectsEveryFormat inspects what each writer wrote: the format is
// found by its magic alone, the virtual size read back.
func TestDetectsEveryFormat(t *testing.T) {
	dir := t.TempDir()
	const size = 1 << 30
	res, err := build.Files(dir, build.Options{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Files {
		inf, err := File(f.Path)
		if err != nil {
			t.Errorf("%s: %v", f.Format.Type, err)
			continue
		}
		if inf.Format != f.Format.Type || inf.FileSize != f.Size {
			t.Errorf("%s: inspected as %s, file size %d (want %d)", f.Format.Type, inf.Format, inf.FileSize, f.Size)
		}
		if f.Format.Media != formats.MediaCDROM && inf.VirtualSize != size {
			t.Errorf("%s: virtual size %d, want %d", f.Format.Type, inf.VirtualSize, size)
		}
	}
	// A 1 GiB sparse raw holds one 4 KiB file-system block or so.
	inf, err := File(filepath.Join(dir, "512-byte-vm.raw"))
	if err != nil || inf.Allocated <= 0 || inf.Allocated > 1<<20 {
		t.Errorf("sparse raw: allocated %d, %v", inf.Allocated, err)
	}
}

func TestErrors(t *testing.T) {
	if _, err := File(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := File(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
	// A qcow2 magic with nothing behind it is corrupt, not a panic.
	p := filepath.Join(t.TempDir(), "bad.qcow2")
	os.WriteFile(p, []byte("QFI\xfb\x00\x00\x00\x03"), 0o644)
	if _, err := File(p); err == nil || !strings.Contains(err.Error(), "not a valid qcow2 file") {
		t.Errorf("truncated qcow2: %v", err)
	}
}
