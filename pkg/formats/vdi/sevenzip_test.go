package vdi

import (
	"bytes"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// 7-Zip reads VDI images with a reader of its own (Igor Pavlov's
// VdiHandler, not QEMU's and not VirtualBox's), so it is a second
// oracle: 7zz must list the image as a dynamic VDI of exactly the virtual
// size, with our UUIDs, and extract the disk's bytes.

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
			path := writeFile(t, t.TempDir(), "disk.vdi", func(w io.Writer) error { return Write(w, c.d) })
			out := string(run(t, tool, "l", "-slt", path))
			typ, method, size := szType.FindStringSubmatch(out), szMethod.FindStringSubmatch(out), szSize.FindStringSubmatch(out)
			if typ == nil || method == nil || size == nil {
				t.Fatalf("7zz l -slt lacks type, method or size:\n%s", out)
			}
			if n, _ := strconv.ParseInt(size[1], 10, 64); typ[1] != "VDI" || method[1] != "Dynamic" || n != c.d.Size() {
				t.Errorf("7zz: %s %s of %s bytes, want VDI Dynamic of %d", typ[1], method[1], size[1], c.d.Size())
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
