package vmdk_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vmdk"
)

// Header field offsets (spec 1.1, SparseExtentHeader).
const (
	gdOffsetField = 56
	sector        = vmdk.SectorSize
)

func image(t testing.TB, size int64, sub string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := vmdk.Write(&b, formattest.BootDisk(t, size), vmdk.Options{Subformat: sub}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// put32 sets the little-endian word at the byte offset at(b).
func put32(at func(b []byte) int64, v func(b []byte) uint32) func([]byte) []byte {
	return func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[at(b):], v(b))
		return b
	}
}

// gd is the byte offset of grain directory entry i; gt that of entry i of
// the first grain table.
func gd(i int64) func([]byte) int64 {
	return func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b[gdOffsetField:]))*sector + 4*i }
}

func gt(i int64) func([]byte) int64 {
	return func(b []byte) int64 { return int64(binary.LittleEndian.Uint32(b[gd(0)(b):]))*sector + 4*i }
}

func value(v uint32) func([]byte) uint32 { return func([]byte) uint32 { return v } }

func at(f func([]byte) int64) func([]byte) uint32 {
	return func(b []byte) uint32 { return binary.LittleEndian.Uint32(b[f(b):]) }
}

func put64(off int64, v uint64) func([]byte) []byte {
	return func(b []byte) []byte {
		binary.LittleEndian.PutUint64(b[off:], v)
		return b
	}
}

// TestInspectOverlaps is the record of what inspect and qemu-img check
// make of monolithicSparse extents whose tables point into each other or
// past the end. qemu-img check reads only the grains' offsets, so it
// accepts most of these: inspect is stricter, as its cases say.
func TestInspectOverlaps(t *testing.T) {
	b := image(t, GiB, vmdk.MonolithicSparse) // 32 grain tables
	sectors := uint32(len(b) / sector)
	gdSector := func(b []byte) uint32 { return uint32(binary.LittleEndian.Uint64(b[gdOffsetField:])) }
	formattest.CheckCorruptions(t, "vmdk", b, vmdk.Inspect, []formattest.Corruption{
		{Name: "grain directory points at itself", Patch: put32(gd(0), gdSector), QemuRejects: false},
		{Name: "two directory entries share a grain table", Patch: put32(gd(1), at(gd(0))), QemuRejects: false},
		{Name: "two grains share sectors", Patch: put32(gt(1), at(gt(0))), QemuRejects: false},
		{Name: "grain over the descriptor", Patch: put32(gt(0), value(2)), QemuRejects: false},
		{Name: "grain table over the descriptor", Patch: put32(gd(0), value(1)), QemuRejects: true},
		{Name: "grain directory over the header", Patch: put64(gdOffsetField, 0), QemuRejects: true},
		{Name: "grain past the end", Patch: put32(gt(0), value(sectors+8)), QemuRejects: true},
		{Name: "grain table past the end", Patch: put32(gd(0), value(sectors+8)), QemuRejects: false},
		{Name: "grain directory past the end", Patch: put64(gdOffsetField, 1<<40), QemuRejects: false},
	})
}

// TestInspectStreamOverlaps: compressed grains whose headers disagree
// with the grain table, run past the end or overlap. qemu-img check reads
// only where the grains start, so it accepts all but the last.
func TestInspectStreamOverlaps(t *testing.T) {
	var buf bytes.Buffer
	d := formattest.Scattered(MiB, map[int64]byte{0: 1, 2 * vmdk.GrainSize: 2})
	if err := vmdk.Write(&buf, d, vmdk.Options{Subformat: vmdk.StreamOptimized}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// The footer (second-to-last sector pair) holds the real gdOffset.
	footer := int64(len(b)) - 2*sector
	gdAt := int64(binary.LittleEndian.Uint64(b[footer+gdOffsetField:])) * sector
	gtAt := int64(binary.LittleEndian.Uint32(b[gdAt:])) * sector
	grain := func(i int64) int64 { return int64(binary.LittleEndian.Uint32(b[gtAt+4*i:])) * sector }
	sectors := uint32(len(b) / sector)
	formattest.CheckCorruptions(t, "vmdk", b, vmdk.Inspect, []formattest.Corruption{
		{Name: "grain header names another guest sector", Patch: func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[grain(0):], 7*vmdk.GrainSectors)
			return b
		}},
		{Name: "compressed grain runs past the end", Patch: func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[grain(0)+8:], 1<<30)
			return b
		}},
		{Name: "two grain table entries share a compressed grain", Patch: func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[gtAt+4*2:], uint32(grain(0)/sector))
			return b
		}},
		{Name: "compressed grain past the end", Patch: func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[gtAt:], sectors+10)
			return b
		}, QemuRejects: true},
	})
}

// TestMutants is FuzzInspect's deterministic counterpart.
func TestMutants(t *testing.T) {
	var seeds [][]byte
	for _, sub := range subformats {
		for _, size := range []int64{MiB, GiB} {
			seeds = append(seeds, image(t, size, sub))
		}
	}
	formattest.MutationTest(t, seeds, nil, 4000, vmdk.Inspect, func(size int64) int64 { return 3*size + 64<<10 })
}

// sparseExtent is a 64 TiB extent whose 2^21 grain tables each sit in
// their own stretch of a sparse file: tables that are only holes. Its
// grain directory is a new one past the writer's file; the first entry
// keeps the writer's table, which maps the boot sector.
func sparseExtent(t testing.TB) (*formattest.Sparse, int64) {
	b := image(t, GiB, vmdk.MonolithicSparse)
	const capacity = 64 * TiB
	n := int64(capacity / (32 * MiB))
	base := int64(len(b))
	dir := make([]byte, 4*n)
	binary.LittleEndian.PutUint32(dir, binary.LittleEndian.Uint32(b[gd(0)(b):]))
	tables := base + int64(len(dir))
	for i := int64(1); i < n; i++ {
		binary.LittleEndian.PutUint32(dir[4*i:], uint32((tables+i*64<<10)/sector))
	}
	binary.LittleEndian.PutUint64(b[12:], uint64(capacity/sector))
	binary.LittleEndian.PutUint64(b[gdOffsetField:], uint64(base/sector))
	b[8] &^= 1 << 1 // no redundant directory
	return &formattest.Sparse{Len: tables + n*64<<10, Patches: []formattest.Patch{{Off: 0, Data: b}, {Off: base, Data: dir}}}, tables
}

// TestSparseCost: the bytes read follow the bytes stored, not the 128 GiB
// the file spans.
func TestSparseCost(t *testing.T) {
	f, stored := sparseExtent(t)
	c := &formattest.Counter{R: f}
	inf, err := vmdk.Inspect(c, f.Len)
	if err != nil {
		t.Fatal(err)
	}
	if inf.Allocated != vmdk.GrainSize {
		t.Errorf("allocated %d, want one grain", inf.Allocated)
	}
	if c.Bytes > 2*stored {
		t.Errorf("read %d bytes of a file storing %d (apparent size %d)", c.Bytes, stored, f.Len)
	}
	t.Logf("read %d bytes in %d calls; the file stores %d of %d", c.Bytes, c.Calls, stored, f.Len)
}

func BenchmarkInspectSparse(b *testing.B) {
	f, _ := sparseExtent(b)
	for b.Loop() {
		if _, err := vmdk.Inspect(f, f.Len); err != nil {
			b.Fatal(err)
		}
	}
}
