package vhd

import (
	"bytes"
	"io"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
)

// 7-Zip reads VHD images with a reader of its own (Igor Pavlov's
// VhdHandler, not QEMU's nor libvhdi's), so it is a third oracle: 7zz
// must list the image with its type and exactly the virtual size, and
// extract the disk's bytes. It refuses a footer with a bad checksum.

func TestSevenZip(t *testing.T) {
	tool := formattest.SevenZip(t)
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			path := write(t, t.TempDir(), c)
			typ, method, size := formattest.SevenZipList(t, tool, path)
			kind := map[string]string{"": "Dynamic", Dynamic: "Dynamic", Fixed: "Fixed"}[c.typ]
			if typ != "VHD" || method != kind || size != c.d.Size() {
				t.Errorf("7zz: %s %s of %d bytes, want VHD %s of %d", typ, method, size, kind, c.d.Size())
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
