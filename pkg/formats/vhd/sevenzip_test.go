package vhd

import (
	"bytes"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// 7-Zip reads VHD images with a reader of its own (Igor Pavlov's
// VhdHandler, not QEMU's nor libvhdi's), so it is a third oracle: 7zz
// must list the image with its type and exactly the virtual size, and
// extract the disk's bytes. It refuses a footer with a bad checksum.

const sevenZipHint = "apt-get install 7zip"

var (
	szSize   = regexp.MustCompile(`(?m)^Size = (\d+)$`)
	szMethod = regexp.MustCompile(`(?m)^Method = (\S+)`)
	szType   = regexp.MustCompile(`(?m)^Type = (\S+)`)
)

func TestSevenZip(t *testing.T) {
	tool := tooltest.Require(t, "7zz", sevenZipHint)
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			path := write(t, t.TempDir(), c)
			out := string(run(t, tool, "l", "-slt", path))
			typ, method, size := szType.FindStringSubmatch(out), szMethod.FindStringSubmatch(out), szSize.FindStringSubmatch(out)
			if typ == nil || method == nil || size == nil {
				t.Fatalf("7zz l -slt lacks type, method or size:\n%s", out)
			}
			kind := map[string]string{"": "Dynamic", Dynamic: "Dynamic", Fixed: "Fixed"}[c.typ]
			if n, _ := strconv.ParseInt(size[1], 10, 64); typ[1] != "VHD" || method[1] != kind || n != c.d.Size() {
				t.Errorf("7zz: %s %s of %s bytes, want VHD %s of %d", typ[1], method[1], size[1], kind, c.d.Size())
			}
			if c.d.Size() > 16*mib {
				return // extracting all of it is slow
			}
			var got bytes.Buffer
			cmd := exec.Command(tool, "x", "-so", path)
			cmd.Stdout = &got
			if err := cmd.Run(); err != nil {
				t.Fatalf("7zz x: %v", err)
			}
			want := make([]byte, c.d.Size())
			if _, err := c.d.ReadAt(want, 0); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("7zz extracts %d bytes that differ from the %d-byte disk", got.Len(), len(want))
			}
		})
	}
}
