package formattest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

// InspectFunc is a format's Inspect.
type InspectFunc func(r io.ReaderAt, size int64) (*info.Info, error)

// Counter is an io.ReaderAt that counts what is read through it: the
// measure of Inspect's work that tests bound by the file's size. It
// passes R's knowledge of holes on (info.SparseReaderAt).
type Counter struct {
	R            io.ReaderAt
	Bytes, Calls int64
}

// ReadAt reads from R and counts the bytes asked for.
func (c *Counter) ReadAt(p []byte, off int64) (int, error) {
	c.Bytes += int64(len(p))
	c.Calls++
	return c.R.ReadAt(p, off)
}

// NextData is R's, or off when R does not know its holes.
func (c *Counter) NextData(off int64) int64 { return info.NextData(c.R, off) }

// Corruption is one hostile change to a valid image, and what QEMU makes
// of the result: the test is the record of where inspect agrees with
// qemu-img and where it is stricter.
type Corruption struct {
	Name string
	// Patch changes b, a copy of the valid image, and returns the file.
	Patch func(b []byte) []byte
	// QemuRejects says qemu-img check or qemu-img info fails on the file.
	QemuRejects bool
}

// CheckCorruptions applies each corruption to valid and checks that
// inspect reports it as corrupt (an error wrapping info.ErrCorrupt) and,
// where qemu-img is installed, that qemu-img check or info, reading the
// file with driver, rejects it exactly when the case says so.
// qemu-img check's exit status 3 (leaked clusters only) counts as
// accepting: leaks waste space but lose nothing.
func CheckCorruptions(t *testing.T, driver string, valid []byte, inspect InspectFunc, cases []Corruption) {
	t.Helper()
	if _, err := inspect(bytes.NewReader(valid), int64(len(valid))); err != nil {
		t.Fatalf("the valid image: %v", err)
	}
	qemuImg, _ := exec.LookPath("qemu-img")
	if qemuImg == "" {
		tooltest.Missing(t, "qemu-img not found: "+tooltest.QemuUtils)
	}
	dir := t.TempDir()
	for i, c := range cases {
		b := c.Patch(slices.Clone(valid))
		_, err := inspect(bytes.NewReader(b), int64(len(b)))
		if !errors.Is(err, info.ErrCorrupt) {
			t.Errorf("%s: inspect says %v, want an error wrapping ErrCorrupt", c.Name, err)
		} else {
			t.Logf("%s: %v", c.Name, err)
		}
		path := filepath.Join(dir, fmt.Sprintf("case%d.%s", i, driver))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rejected, why := qemuRejects(qemuImg, driver, path)
		switch {
		case c.QemuRejects && !rejected:
			t.Errorf("%s: qemu-img accepts the file, the case says it rejects it", c.Name)
		case !c.QemuRejects && rejected:
			t.Errorf("%s: qemu-img rejects the file (%s), the case says it accepts it", c.Name, why)
		case rejected:
			t.Logf("%s: qemu-img: %s", c.Name, why)
		}
	}
}

// qemuRejects runs qemu-img check, and qemu-img info for a driver without
// checks, and reports whether either refuses the file, with its words.
func qemuRejects(qemuImg, driver, path string) (bool, string) {
	var out bytes.Buffer
	cmd := exec.Command(qemuImg, "check", "-f", driver, path)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() != 3 && ee.ExitCode() != 63 {
		return true, "check: " + firstLine(out.String())
	}
	out.Reset()
	cmd = exec.Command(qemuImg, "info", "-f", driver, path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return true, "info: " + firstLine(out.String())
	}
	return false, ""
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "No errors") {
			return l
		}
	}
	return strings.TrimSpace(s)
}
