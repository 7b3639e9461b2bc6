package vdi

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
)

// 7-Zip reads VDI images with a reader of its own (Igor Pavlov's
// VdiHandler, not QEMU's and not VirtualBox's), so it is a second
// oracle: 7zz must list the image as a dynamic VDI of exactly the virtual
// size, with our UUIDs, and extract the disk's bytes.

func TestSevenZip(t *testing.T) {
	tool := formattest.SevenZip(t)
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			path := formattest.WriteFile(t, filepath.Join(t.TempDir(), "disk.vdi"), func(w io.Writer) error { return Write(w, c.d) })
			typ, method, size := formattest.SevenZipList(t, tool, path)
			if typ != "VDI" || method != "Dynamic" || size != c.d.Size() {
				t.Errorf("7zz: %s %s of %d bytes, want VDI Dynamic of %d", typ, method, size, c.d.Size())
			}
			if c.d.Size() > 16*mib {
				return // extracting all of it is slow
			}
			got := formattest.SevenZipExtract(t, tool, path)
			want := make([]byte, c.d.Size())
			if _, err := c.d.ReadAt(want, 0); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("7zz extracts %d bytes that differ from the %d-byte disk", len(got), len(want))
			}
		})
	}
}
