package vhd

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// libyal's libvhdi follows the specification and Windows rather than
// QEMU, so it is a second, independent reader: vhdiinfo must report the
// type and exactly the requested size, and vhdimount must serve the
// disk's bytes.

var (
	mediaSize = regexp.MustCompile(`Media size\s*:.*\((\d+) bytes\)`)
	diskType  = regexp.MustCompile(`Disk type\s*:\s*(\w+)`)
)

func TestVhdiinfo(t *testing.T) {
	tool := tooltest.Require(t, "vhdiinfo", tooltest.Libvhdi)
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			out := string(formattest.Run(t, tool, write(t, t.TempDir(), c)))
			m, ty := mediaSize.FindStringSubmatch(out), diskType.FindStringSubmatch(out)
			if m == nil || ty == nil {
				t.Fatalf("vhdiinfo output lacks media size or disk type:\n%s", out)
			}
			want := map[string]string{"": "Dynamic", Dynamic: "Dynamic", Fixed: "Fixed"}[c.typ]
			if n, _ := strconv.ParseInt(m[1], 10, 64); n != c.d.Size() || ty[1] != want {
				t.Errorf("vhdiinfo: %s disk of %s bytes, want %s of %d", ty[1], m[1], want, c.d.Size())
			}
		})
	}
}

func TestVhdimount(t *testing.T) {
	tool := formattest.Vhdimount(t)
	for _, c := range cases(t) {
		if c.d.Size() > 16*mib {
			continue // reading it all back through FUSE is slow
		}
		t.Run(c.name, func(t *testing.T) {
			img, stderr := formattest.Mount(t, tool, write(t, t.TempDir(), c))
			var got []byte
			var err error
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if got, err = os.ReadFile(img); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("vhdimount did not serve the disk: %v\n%s", err, stderr.String())
			}
			want := make([]byte, c.d.Size())
			if _, err := c.d.ReadAt(want, 0); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("libvhdi reads %d bytes that differ from the %d-byte disk", len(got), len(want))
			}
		})
	}
}
