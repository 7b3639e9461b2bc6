package inspect

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/ova"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/qcow2"
)

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNotDisk: files no format claims and that are not raw disks either
// are reported as such, with what could be read, and an error.
func TestNotDisk(t *testing.T) {
	boot := formattest.BootSector(t)
	for _, c := range []struct {
		name string
		b    []byte
		why  string
	}{
		{"empty", nil, "empty"},
		{"hostname", []byte("vm\n"), "3 bytes is not a whole number of 512-byte sectors"},
		{"text sectors", bytes.Repeat([]byte("not a disk\n"), 512/11*2+2)[:1024], "no boot signature"},
		{"boot sector and a byte", append(append([]byte{}, boot...), 0), "513 bytes"},
	} {
		inf, err := File(writeFile(t, "f", c.b))
		if !errors.Is(err, info.ErrNotDisk) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: error %v, want ErrNotDisk saying %q", c.name, err, c.why)
			continue
		}
		if inf == nil || inf.Format != "raw" || inf.FileSize != int64(len(c.b)) || !strings.Contains(inf.NotDisk, c.why) {
			t.Errorf("%s: info %+v, want raw, the size and the reason", c.name, inf)
		}
	}
	// A boot sector is a raw disk, however small.
	if inf, err := File(writeFile(t, "boot.raw", boot)); err != nil || inf.NotDisk != "" || inf.VirtualSize != 512 {
		t.Errorf("boot sector: %+v, %v", inf, err)
	}
}

// TestCancel: a done context stops inspect with the context's error, not
// a report of corruption.
func TestCancel(t *testing.T) {
	p, _ := sparseQcow2(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := FileContext(ctx, p)
	if !errors.Is(err, context.Canceled) || errors.Is(err, info.ErrCorrupt) {
		t.Errorf("cancelled: %v, want context.Canceled only", err)
	}
}

// TestCorruptReported: a corrupt image gives the error and an Info naming
// the format and the reason.
func TestCorruptReported(t *testing.T) {
	inf, err := File(writeFile(t, "bad.qcow2", []byte("QFI\xfb\x00\x00\x00\x03")))
	if !errors.Is(err, info.ErrCorrupt) || inf == nil || inf.Format != "qcow2" || inf.Corrupt == "" || inf.FileSize != 8 {
		t.Errorf("truncated qcow2: %+v, %v", inf, err)
	}
}

// hostileOVA is the writer's OVA with one more member, whose name holds
// a terminal escape and a newline.
func hostileOVA(t *testing.T) (path, evil string) {
	t.Helper()
	var good bytes.Buffer
	if err := ova.Write(&good, formattest.BootDisk(t, 1<<20), ova.Options{Name: "vm"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(&good)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(h)
		io.Copy(tw, tr)
	}
	evil = "\x1b]0;owned\x07\x1b[2J\nnot-a-file.txt"
	tw.WriteHeader(&tar.Header{Name: evil, Mode: 0o644, Size: 1, Format: tar.FormatPAX})
	tw.Write([]byte{1})
	tw.Close()
	return writeFile(t, "vm.ova", out.Bytes()), evil
}

// TestQuotedNames: names from the file reach the caller quoted.
func TestQuotedNames(t *testing.T) {
	p, evil := hostileOVA(t)
	inf, err := File(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `"\x1b]0;owned\a\x1b[2J\nnot-a-file.txt"`
	if len(inf.Files) != 4 || inf.Files[3] != want {
		t.Fatalf("files %q, want the last quoted as %s", inf.Files, want)
	}
	for _, f := range inf.Files {
		if strings.ContainsAny(f, "\x1b\n\a") || f == evil {
			t.Errorf("member name %q printed raw", f)
		}
	}
}

// sparseQcow2 writes a valid qcow2 of an 8 TiB disk whose 2^14 L1
// entries each point at an L2 table of its own, spread over 1 GiB of a
// sparse file where they are holes (all zeros: nothing allocated), with a
// refcount block that counts them, as qemu-img check requires. The tables
// need no reading, which is what made inspect take minutes on such files.
// It returns the path and the bytes the file really stores.
func sparseQcow2(t testing.TB) (string, int64) {
	t.Helper()
	var buf bytes.Buffer
	if err := qcow2.Write(&buf, formattest.BootDisk(t, 8<<40), qcow2.Options{}); err != nil {
		t.Fatal(err)
	}
	const (
		cs       = 64 << 10
		perBlock = cs / 2 // 16-bit refcounts
		far      = perBlock * cs
	)
	be := binary.BigEndian
	b := buf.Bytes()
	l1Size := int64(be.Uint32(b[36:]))
	l1Off := int64(be.Uint64(b[40:]))
	rtOff := int64(be.Uint64(b[48:]))
	rb0 := int64(be.Uint64(b[rtOff:]))
	base := int64(len(b))
	if base%cs != 0 || base+cs > far {
		t.Fatalf("unexpected layout: %d bytes", base)
	}
	// A refcount block at base counts the tables from far on, and
	// refcount block 0 counts it.
	be.PutUint64(b[rtOff+8:], uint64(base))
	be.PutUint16(b[rb0+2*(base/cs):], 1)
	block := make([]byte, cs)
	for i := int64(1); i < l1Size; i++ {
		be.PutUint64(b[l1Off+8*i:], uint64(far+(i-1)*cs)|1<<63)
		be.PutUint16(block[2*(i-1):], 1)
	}
	b = append(b, block...)
	p := filepath.Join(t.TempDir(), "sparse.qcow2")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, far+(l1Size-1)*cs); err != nil {
		t.Fatal(err)
	}
	return p, int64(len(b))
}

// TestSparseCost counts the bytes read from sparseQcow2: they follow the
// few hundred KiB the file stores, not the 1 GiB of tables it spans. qemu-img
// check, the oracle, agrees that the file is valid.
func TestSparseCost(t *testing.T) {
	p, stored := sparseQcow2(t)
	inf, r, err := inspectFile(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !r.asked {
		t.Fatal("the qcow2 reader never asked where the holes are")
	}
	if !r.known {
		t.Skip("the file system does not report holes (SEEK_DATA)")
	}
	if inf.VirtualSize != 8<<40 || inf.Allocated != 64<<10 {
		t.Errorf("info %+v, want 8 TiB with one cluster", inf)
	}
	if r.bytes > 2*stored+1<<20 {
		t.Errorf("read %d bytes of a file storing %d, apparent size %d", r.bytes, stored, inf.FileSize)
	}
	t.Logf("read %d bytes; %d data extents; the file stores %d of %d", r.bytes, len(r.data), stored, inf.FileSize)
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	formattest.Run(t, qemuImg, "check", "-f", "qcow2", p)
}

func BenchmarkInspectSparse(b *testing.B) {
	p, _ := sparseQcow2(b)
	for b.Loop() {
		if _, err := File(p); err != nil {
			b.Fatal(err)
		}
	}
}

// cancelAfter is a context that is done after its Err has been asked n
// times: a cancel that lands in the middle of the walk, deterministically.
type cancelAfter struct {
	context.Context
	n int
}

func (c *cancelAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

// TestCancelMidway: a context done during the walk stops it with the
// context's error at the next read, not with a report of corruption.
func TestCancelMidway(t *testing.T) {
	p, _ := sparseQcow2(t)
	for n := 1; n < 8; n++ {
		_, err := FileContext(&cancelAfter{context.Background(), n}, p)
		if !errors.Is(err, context.Canceled) || errors.Is(err, info.ErrCorrupt) {
			t.Errorf("cancelled after %d checks: %v, want context.Canceled only", n, err)
		}
	}
}

// TestEscapedErrors: a path with control characters is quoted in the
// error, and text from a parser is escaped, while errors.Is still works.
func TestEscapedErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "evil\x1b[2J\nname")
	if err := os.WriteFile(p, []byte("vm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := File(p)
	if !errors.Is(err, info.ErrNotDisk) || strings.ContainsAny(err.Error(), "\x1b\n") || !strings.Contains(err.Error(), `evil\x1b[2J\nname"`) {
		t.Errorf("error %q, want the path quoted", err)
	}
	e := escape(fmt.Errorf("xml: bad \x1b]0;t\x07 at %w", info.ErrCorrupt))
	if !errors.Is(e, info.ErrCorrupt) || strings.ContainsAny(e.Error(), "\x1b\x07") {
		t.Errorf("escaped error %q", e.Error())
	}
	// os errors name the path as given.
	_, err = File(filepath.Join(dir, "missing\x1b[2J"))
	if !errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "\x1b") {
		t.Errorf("missing file: %q", err)
	}
	if plain := errors.New("plain"); escape(plain) != plain {
		t.Error("an error without control characters is wrapped")
	}
}
