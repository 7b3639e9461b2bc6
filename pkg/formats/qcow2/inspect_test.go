package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

// writeImage writes d with o and returns the file and its layout.
func writeImage(t testing.TB, size int64, o Options) ([]byte, *layout) {
	t.Helper()
	d := formattest.BootDisk(t, size)
	var buf bytes.Buffer
	if err := Write(&buf, d, o); err != nil {
		t.Fatal(err)
	}
	l, err := plan(d, o)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), l
}

// put64 sets the big-endian word at off.
func put64(off int64, v uint64) func([]byte) []byte {
	return func(b []byte) []byte {
		binary.BigEndian.PutUint64(b[off:], v)
		return b
	}
}

// TestRefcounts: tables and clusters the refcounts do not cover are
// corrupt, as qemu-img check reports them.
func TestRefcounts(t *testing.T) {
	b, l := writeImage(t, gib, Options{})
	end := uint64(len(b))
	formattest.CheckCorruptions(t, "qcow2", b, Inspect, []formattest.Corruption{
		{Name: "L2 table moved to an unallocated cluster", Patch: func(b []byte) []byte {
			b = append(b, b[l.l2Off:l.l2Off+l.cs]...)
			binary.BigEndian.PutUint64(b[l.l1Off:], end|flagCopied)
			return b
		}, QemuRejects: true},
		{Name: "refcount of the L1 table zeroed", Patch: func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[l.rbOff+2*(l.l1Off/l.cs):], 0)
			return b
		}, QemuRejects: true},
		{Name: "refcount table entry cleared", Patch: put64(l.rtOff, 0), QemuRejects: true},
	})
}

// TestInspectCorrupt is the record of what inspect and qemu-img check
// make of images whose tables point into each other or past the end.
func TestInspectCorrupt(t *testing.T) {
	b, l := writeImage(t, gib, Options{}) // two L1 entries, one L2 table
	end := uint64(len(b))
	l2e := binary.BigEndian.Uint64(b[l.l2Off:]) // maps the boot sector
	formattest.CheckCorruptions(t, "qcow2", b, Inspect, []formattest.Corruption{
		{Name: "L1 entry points at the L1 table", Patch: put64(l.l1Off, uint64(l.l1Off)|flagCopied), QemuRejects: true},
		{Name: "two L1 entries share one L2 table", Patch: put64(l.l1Off+8, uint64(l.l2Off)|flagCopied), QemuRejects: true},
		{Name: "two L2 entries share one data cluster", Patch: put64(l.l2Off+8, l2e), QemuRejects: true},
		{Name: "data cluster is the L2 table", Patch: put64(l.l2Off, uint64(l.l2Off)|flagCopied), QemuRejects: true},
		{Name: "data cluster is the refcount table", Patch: put64(l.l2Off+8, uint64(l.rtOff)|flagCopied), QemuRejects: true},
		{Name: "L1 table at the header", Patch: put64(40, 0), QemuRejects: true},
		{Name: "data cluster past the end", Patch: put64(l.l2Off, (end+uint64(l.cs))&^uint64(l.cs-1)|flagCopied), QemuRejects: true},
		{Name: "L2 table past the end", Patch: put64(l.l1Off, 1<<40|flagCopied), QemuRejects: true},
		{Name: "L1 table over the refcount table", Patch: put64(40, uint64(l.rtOff)), QemuRejects: true},
		{Name: "refcount block at the L1 table", Patch: put64(l.rtOff, uint64(l.l1Off)), QemuRejects: true},
		{Name: "refcount table past the end", Patch: put64(48, 1<<40), QemuRejects: true},
	})
}

// TestMutants is FuzzInspect's deterministic counterpart: mutants of the
// writer's outputs never panic, fail only as corrupt, and cost at most a
// few reads of the file.
func TestMutants(t *testing.T) {
	formattest.MutationTest(t, fuzzSeeds(t), nil, 4000, Inspect, func(size int64) int64 { return 3*size + 64<<10 })
}

// sparseImage is a 64 GiB virtual disk in 512-byte clusters whose 2^21 L1
// entries each point at their own L2 table, spread over a 64 GiB sparse
// file: tables that exist only as holes. It returns the file and the
// bytes it really stores.
func sparseImage(t testing.TB) (*formattest.Sparse, int64) {
	b, l := writeImage(t, 64*gib, Options{ClusterSize: 512})
	const stride = 32 << 10
	base := int64(len(b))
	for i := int64(1); i < l.l1Size; i++ {
		binary.BigEndian.PutUint64(b[l.l1Off+8*i:], uint64(base+i*stride)|flagCopied)
	}
	return &formattest.Sparse{Len: base + l.l1Size*stride, Patches: []formattest.Patch{{Off: 0, Data: b}}}, base
}

// TestSparseCost inspects sparseImage: its L2 tables lie where no
// refcount covers them, so it is corrupt, as qemu-img check says; and the
// bytes read to find that follow the bytes the file stores (16 MiB, mostly
// the L1 table), not its 64 GiB, because the tables in holes are known to
// be zeros without reading them.
func TestSparseCost(t *testing.T) {
	f, stored := sparseImage(t)
	c := &formattest.Counter{R: f}
	_, err := Inspect(c, f.Len)
	if !errors.Is(err, info.ErrCorrupt) || !strings.Contains(err.Error(), "refcount is 0") {
		t.Errorf("Inspect = %v, want unallocated L2 tables reported", err)
	}
	if c.Bytes > 2*stored {
		t.Errorf("read %d bytes of a file storing %d (apparent size %d)", c.Bytes, stored, f.Len)
	}
	t.Logf("read %d bytes in %d calls; the file stores %d of %d", c.Bytes, c.Calls, stored, f.Len)
}

func BenchmarkInspectSparse(b *testing.B) {
	f, _ := sparseImage(b)
	for b.Loop() {
		if _, err := Inspect(f, f.Len); !errors.Is(err, info.ErrCorrupt) {
			b.Fatal(err)
		}
	}
}

var _ info.SparseReaderAt = (*formattest.Sparse)(nil)

// TestInspectQemuVariants: images QEMU writes with every refcount width,
// version 2, 512-byte clusters, extended L2 entries, compression and an
// internal snapshot, after writes, zero writes and a discard, pass
// qemu-img check and must pass inspect: its checks reject no valid file.
func TestInspectQemuVariants(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	qemuIO := tooltest.Require(t, "qemu-io", tooltest.QemuUtils)
	dir := t.TempDir()
	for i, o := range []string{
		"compat=0.10", "refcount_bits=1", "refcount_bits=2", "refcount_bits=4", "refcount_bits=8",
		"refcount_bits=32", "refcount_bits=64", "cluster_size=512,refcount_bits=1",
		"extended_l2=on,cluster_size=128k", "lazy_refcounts=on",
	} {
		p := filepath.Join(dir, fmt.Sprintf("v%d.qcow2", i))
		formattest.Run(t, qemuImg, "create", "-q", "-f", "qcow2", "-o", o, p, "1G")
		formattest.Run(t, qemuIO, "-f", "qcow2", "-c", "write -P 0x55 0 1M", "-c", "write -P 0xaa 500M 2M",
			"-c", "write -z 10M 1M", "-c", "discard 500M 64k", p)
		files := []string{p}
		if i == 0 {
			// A compressed copy, and an internal snapshot that shares
			// clusters with the active image.
			c := filepath.Join(dir, "compressed.qcow2")
			formattest.Run(t, qemuImg, "convert", "-c", "-O", "qcow2", p, c)
			s := filepath.Join(dir, "snapshot.qcow2")
			formattest.Run(t, qemuImg, "convert", "-O", "qcow2", p, s)
			formattest.Run(t, qemuImg, "snapshot", "-c", "snap1", s)
			formattest.Run(t, qemuIO, "-f", "qcow2", "-c", "write -P 0x11 0 64k", s)
			files = append(files, c, s)
		}
		for _, f := range files {
			formattest.Run(t, qemuImg, "check", "-q", "-f", "qcow2", f)
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Inspect(bytes.NewReader(b), int64(len(b))); err != nil {
				t.Errorf("%s (%s): %v", filepath.Base(f), o, err)
			}
		}
	}
}

// TestInspectSnapshots: an image with an internal snapshot, made by QEMU,
// whose snapshot table or snapshot L1 table is moved onto other tables
// or past the end.
func TestInspectSnapshots(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	qemuIO := tooltest.Require(t, "qemu-io", tooltest.QemuUtils)
	p := filepath.Join(t.TempDir(), "snap.qcow2")
	formattest.Run(t, qemuImg, "create", "-q", "-f", "qcow2", p, "1G")
	formattest.Run(t, qemuIO, "-f", "qcow2", "-c", "write -P 0x55 0 1M", p)
	formattest.Run(t, qemuImg, "snapshot", "-c", "snap1", p)
	formattest.Run(t, qemuIO, "-f", "qcow2", "-c", "write -P 0x11 0 64k", p)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	l1Off, snapOff := be.Uint64(b[40:]), int64(be.Uint64(b[64:]))
	formattest.CheckCorruptions(t, "qcow2", b, Inspect, []formattest.Corruption{
		{Name: "snapshot L1 table is the active L1 table", Patch: put64(snapOff, l1Off), QemuRejects: true},
		{Name: "snapshot L1 table past the end", Patch: put64(snapOff, 1<<40), QemuRejects: true},
		{Name: "snapshot table past the end", Patch: put64(64, 1<<40), QemuRejects: true},
		{Name: "snapshot table is the L1 table", Patch: put64(64, l1Off), QemuRejects: true},
	})
}
