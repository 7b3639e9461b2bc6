package formats_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
)

// TestInspectQemuWritten: images that QEMU itself writes, with blocks
// allocated out of guest order (the second write lands first in the
// file), zero writes and overwrites, pass qemu-img check and must pass
// inspect in the format qemu-img names: its overlap and range checks
// reject no valid file.
func TestInspectQemuWritten(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	qemuIO := tooltest.Require(t, "qemu-io", tooltest.QemuUtils)
	dir := t.TempDir()
	writes := []string{"-c", "write -P 0xaa 600M 3M", "-c", "write -P 0x55 0 1M", "-c", "write -z 100M 2M", "-c", "write -P 0x11 601M 64k"}
	for i, c := range []struct{ driver, opts, want string }{
		{"vmdk", "subformat=monolithicSparse", "vmdk"},
		{"vhdx", "subformat=dynamic", "vhdx"},
		{"vhdx", "subformat=dynamic,block_size=8M", "vhdx"},
		{"vpc", "subformat=dynamic", "vhd"},
		{"vpc", "subformat=fixed", "vhd"},
		{"vdi", "static=off", "vdi"},
		{"vdi", "static=on", "vdi"},
	} {
		p := filepath.Join(dir, fmt.Sprintf("q%d.%s", i, c.driver))
		formattest.Run(t, qemuImg, "create", "-q", "-f", c.driver, "-o", c.opts, p, "1G")
		formattest.Run(t, qemuIO, append(append([]string{"-f", c.driver}, writes...), p)...)
		if c.driver != "vpc" { // vpc has no check
			formattest.Run(t, qemuImg, "check", "-q", "-f", c.driver, p)
		}
		files := []string{p}
		if c.driver == "vmdk" {
			s := filepath.Join(dir, "stream.vmdk")
			formattest.Run(t, qemuImg, "convert", "-f", "vmdk", "-O", "vmdk", "-o", "subformat=streamOptimized", p, s)
			files = append(files, s)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ft, err := formats.Detect(bytes.NewReader(b), int64(len(b)))
			if err != nil || ft.Type != c.want {
				t.Errorf("%s (%s): detected %q, %v", filepath.Base(f), c.opts, ft.Type, err)
				continue
			}
			if _, err := ft.Inspect(bytes.NewReader(b), int64(len(b))); err != nil {
				t.Errorf("%s (%s): %v", filepath.Base(f), c.opts, err)
			}
		}
	}
}
