package formattest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

// Mutate returns a mutant of b, which it does not change: one to four
// changes drawn from rnd, each of the kinds that break image readers: a
// flipped bit, a random byte, a 4- or 8-byte word set to a value that
// is an edge (0, all ones, the file size, 2^50) or a copy of another word
// of the file (an offset now pointing where another does), a 512-byte
// block copied over another (a table aliasing another), a zeroed range,
// and a cut. Half of the changes land in the 4 KiB after one of the hot
// offsets, where the format keeps its headers and tables (offset 0 when
// hot is empty): a random position in a file of megabytes would almost
// always be data.
func Mutate(rnd *rand.Rand, b []byte, hot []int) []byte {
	b = slices.Clone(b)
	if len(hot) == 0 {
		hot = []int{0}
	}
	for range 1 + rnd.IntN(4) {
		if len(b) == 0 {
			return b
		}
		pos := rnd.IntN(len(b))
		if h := hot[rnd.IntN(len(hot))]; rnd.IntN(2) == 0 && h < len(b) {
			pos = h + rnd.IntN(min(len(b)-h, 4096))
		}
		switch rnd.IntN(8) {
		case 0:
			b[pos] ^= 1 << rnd.IntN(8)
		case 1:
			b[pos] = byte(rnd.IntN(256))
		case 2, 3:
			w := 4 << rnd.IntN(2)
			pos &^= w - 1
			if pos+w > len(b) {
				continue
			}
			edges := []uint64{0, 1, 1<<32 - 1, 1<<64 - 1, uint64(len(b)), uint64(len(b) - 512), uint64(len(b)) / 512, 1 << 50, uint64(pos), uint64(pos) / 512}
			v := edges[rnd.IntN(len(edges))]
			if rnd.IntN(2) == 0 && len(b) >= w {
				q := rnd.IntN(len(b)-w+1) &^ (w - 1)
				copy(b[pos:pos+w], b[q:q+w])
				continue
			}
			for i := range w {
				if rnd.IntN(2) == 0 { // either byte order
					b[pos+i] = byte(v >> (8 * i))
				} else {
					b[pos+w-1-i] = byte(v >> (8 * i))
				}
			}
		case 4, 5:
			if len(b) < 1024 {
				continue
			}
			from, to := rnd.IntN(len(b)/512)*512, pos&^511
			n := min(512, len(b)-from, len(b)-to)
			copy(b[to:to+n], b[from:from+n])
		case 6:
			clear(b[pos:min(len(b), pos+1+rnd.IntN(1024))])
		case 7:
			n := rnd.IntN(len(b))
			if rnd.IntN(2) == 0 {
				n &^= 511
			}
			b = b[:n]
		}
	}
	return b
}

// MutationTest is the deterministic counterpart of a FuzzInspect, run on
// every go test: n mutants of the seeds (the writer's own outputs), drawn
// from a fixed seed, each inspected through a Counter. Inspect must not
// panic, must fail only with errors wrapping info.ErrCorrupt, must report
// no negative size, and must read at most budget(size) bytes of a file
// of size bytes, so that its work follows the file and not the sizes it
// claims. hot is passed to Mutate.
func MutationTest(t *testing.T, seeds [][]byte, hot []int, n int, inspect InspectFunc, budget func(size int64) int64) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(12, 2026))
	var failures, corrupt int
	for i := range n {
		b := Mutate(rnd, seeds[rnd.IntN(len(seeds))], hot)
		c := &Counter{R: bytes.NewReader(b)}
		inf, err, panicked := inspectSafely(inspect, c, int64(len(b)))
		var msg string
		switch {
		case panicked != nil:
			msg = fmt.Sprintf("panic: %v", panicked)
		case err != nil && !errors.Is(err, info.ErrCorrupt):
			msg = fmt.Sprintf("error %v does not wrap ErrCorrupt", err)
		case err == nil && (inf.VirtualSize < 0 || inf.Allocated < 0 || inf.BlockSize < 0):
			msg = fmt.Sprintf("negative sizes in %+v", inf)
		case c.Bytes > budget(int64(len(b))):
			msg = fmt.Sprintf("read %d bytes of a %d-byte file, over the budget of %d", c.Bytes, len(b), budget(int64(len(b))))
		}
		if err != nil {
			corrupt++
		}
		if msg != "" {
			failures++
			if failures <= 5 {
				t.Errorf("mutant %d (%d bytes, first 64: %x): %s", i, len(b), b[:min(len(b), 64)], msg)
			}
		}
	}
	if failures > 5 {
		t.Errorf("%d of %d mutants failed in all", failures, n)
	}
	// A mutator that never breaks anything, or breaks everything at the
	// first byte, would test nothing.
	if corrupt == 0 || corrupt == n {
		t.Errorf("%d of %d mutants corrupt: the mutations do not exercise both paths", corrupt, n)
	}
	t.Logf("%d mutants, %d reported corrupt", n, corrupt)
}

func inspectSafely(inspect InspectFunc, r io.ReaderAt, size int64) (inf *info.Info, err error, panicked any) {
	defer func() { panicked = recover() }()
	inf, err = inspect(r, size)
	return inf, err, nil
}
