package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

func dynamic(t testing.TB, size int64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, formattest.BootDisk(t, size), Options{}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// putBAT sets BAT entry i to v(b).
func putBAT(i int, v func(b []byte) uint32) func([]byte) []byte {
	return func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[batOffset+4*i:], v(b))
		return b
	}
}

func sectorOf(off int64) func([]byte) uint32 {
	return func([]byte) uint32 { return uint32(off / sectorSize) }
}

// setHeader changes the dynamic header and fixes its checksum.
func setHeader(f func(h *DynamicHeader)) func([]byte) []byte {
	return func(b []byte) []byte {
		var h DynamicHeader
		if _, err := binary.Decode(b[headerOffset:], binary.BigEndian, &h); err != nil {
			panic(err)
		}
		f(&h)
		copy(b[headerOffset:], marshal(&h, headerSize, headerChecksumOffset))
		return b
	}
}

// TestInspectOverlaps is the record of what inspect and qemu-img make of
// dynamic VHDs whose blocks lie on the structures or on each other.
// QEMU's vpc driver has no check; on open it refuses only what moves the
// end of the data past the end of the file, so it accepts the overlaps:
// inspect is stricter.
func TestInspectOverlaps(t *testing.T) {
	b := dynamic(t, 8<<20)
	first := func(b []byte) uint32 { return binary.BigEndian.Uint32(b[batOffset:]) }
	formattest.CheckCorruptions(t, "vpc", b, Inspect, []formattest.Corruption{
		{Name: "block over the footer copy", Patch: putBAT(1, sectorOf(0))},
		{Name: "block over the dynamic header", Patch: putBAT(1, sectorOf(headerOffset))},
		{Name: "block over the BAT", Patch: putBAT(1, sectorOf(batOffset))},
		{Name: "two blocks share one offset", Patch: putBAT(1, first)},
		{Name: "block past the end", Patch: putBAT(1, sectorOf(int64(len(b))-footerSize-4096)), QemuRejects: true},
		{Name: "BAT over the dynamic header", Patch: setHeader(func(h *DynamicHeader) { h.TableOffset = headerOffset }), QemuRejects: true},
	})
}

// TestMutants is FuzzInspect's deterministic counterpart, on whole files.
func TestMutants(t *testing.T) {
	var seeds [][]byte
	var hot []int
	for _, c := range cases(t) {
		if c.d.Size() > 64<<20 {
			continue
		}
		var b bytes.Buffer
		if err := Write(&b, c.d, Options{Type: c.typ}); err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b.Bytes())
		hot = append(hot, b.Len()-footerSize) // the footer, the only header of a fixed disk
	}
	formattest.MutationTest(t, seeds, append(hot, 0, batOffset), 4000, Inspect, func(size int64) int64 { return 2*size + 64<<10 })
}

// TestSparseCost: the writer's 2040 GiB dynamic disk has a 4 MiB BAT of
// 0xFFFFFFFF, which is data and read in full. With the BAT in a hole
// instead (zeros: every block at offset 0, on the footer copy) inspect
// fails at the first entry rather than reading the 4 MiB.
func TestSparseCost(t *testing.T) {
	var w formattest.SparseWriter
	if err := Write(&w, formattest.BootDisk(t, MaxSize), Options{}); err != nil {
		t.Fatal(err)
	}
	f := &w.File
	c := &formattest.Counter{R: f}
	if _, err := Inspect(c, f.Len); err != nil {
		t.Fatal(err)
	}
	if c.Bytes > 2*f.Stored()+64<<10 {
		t.Errorf("read %d bytes of a file storing %d", c.Bytes, f.Stored())
	}
	// Punch the BAT out: keep the structures before it, the blocks and the footer.
	var holed formattest.Sparse
	holed.Len = f.Len
	for _, p := range f.Patches {
		if p.Off+int64(len(p.Data)) <= batOffset || p.Off >= batOffset+4<<20 {
			holed.Patches = append(holed.Patches, p)
		} else if p.Off < batOffset {
			holed.Patches = append(holed.Patches, formattest.Patch{Off: p.Off, Data: p.Data[:batOffset-p.Off]})
		}
	}
	c = &formattest.Counter{R: &holed}
	if _, err := Inspect(c, holed.Len); !errors.Is(err, info.ErrCorrupt) || c.Bytes > 128<<10 {
		t.Errorf("BAT in a hole: %v after reading %d bytes, want ErrCorrupt at once", err, c.Bytes)
	}
}
