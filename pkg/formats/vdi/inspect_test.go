package vdi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

func image(t testing.TB, size int64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, formattest.BootDisk(t, size)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// setHeader changes the header.
func setHeader(f func(h *Header)) func([]byte) []byte {
	return func(b []byte) []byte {
		var h Header
		if _, err := binary.Decode(b, binary.LittleEndian, &h); err != nil {
			panic(err)
		}
		f(&h)
		if _, err := binary.Encode(b, binary.LittleEndian, &h); err != nil {
			panic(err)
		}
		return b
	}
}

// putMap sets block map entry i.
func putMap(i int, v uint32) func([]byte) []byte {
	return func(b []byte) []byte {
		off := int(binary.LittleEndian.Uint32(b[blocksOffsetField:]))
		binary.LittleEndian.PutUint32(b[off+4*i:], v)
		return b
	}
}

// blocksOffsetField is where Header.BlocksOffset sits.
var blocksOffsetField = func() int {
	var h Header
	h.BlocksOffset = 0xdeadbeef
	b := make([]byte, headerEnd)
	binary.Encode(b, binary.LittleEndian, &h)
	return bytes.Index(b, []byte{0xef, 0xbe, 0xad, 0xde})
}()

// TestInspectOverlaps is the record of what inspect and qemu-img check
// make of VDIs whose block map points blocks at each other or past the
// end, or lies over the header. qemu-img check looks at the indexes, not
// at where the blocks land in the file, so inspect is stricter there.
func TestInspectOverlaps(t *testing.T) {
	b := image(t, 4<<20)
	formattest.CheckCorruptions(t, "vdi", b, Inspect, []formattest.Corruption{
		{Name: "two entries share one block", Patch: putMap(1, 0), QemuRejects: true},
		{Name: "block past the end", Patch: putMap(0, 3), QemuRejects: false},
		{Name: "block index past the map", Patch: putMap(0, 100), QemuRejects: true},
		{Name: "block map over the header", Patch: setHeader(func(h *Header) { h.BlocksOffset = 0 }), QemuRejects: true},
		{Name: "data over the block map", Patch: setHeader(func(h *Header) { h.DataOffset = h.BlocksOffset }), QemuRejects: false},
	})
}

// TestMutants is FuzzInspect's deterministic counterpart, on whole files.
func TestMutants(t *testing.T) {
	var seeds [][]byte
	for _, c := range cases(t) {
		var b bytes.Buffer
		if err := Write(&b, c.d); err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b.Bytes())
	}
	formattest.MutationTest(t, seeds, nil, 3000, Inspect, func(size int64) int64 { return 2*size + 64<<10 })
}

// TestSparseCost: with the block map of a 1 TiB disk in a
// hole (zeros: every entry pointing at data block 0), inspect fails at the
// second entry instead of reading the map.
func TestSparseCost(t *testing.T) {
	var w formattest.SparseWriter
	const size = 1 << 40
	if err := Write(&w, formattest.BootDisk(t, size)); err != nil {
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
	mapOff := int64(binary.LittleEndian.Uint32(f.Patches[0].Data[blocksOffsetField:]))
	holed := formattest.Sparse{Len: f.Len, Patches: []formattest.Patch{{Off: 0, Data: f.Patches[0].Data[:mapOff]}}}
	c = &formattest.Counter{R: &holed}
	if _, err := Inspect(c, holed.Len); !errors.Is(err, info.ErrCorrupt) || c.Bytes > 128<<10 {
		t.Errorf("block map in a hole: %v after reading %d bytes, want ErrCorrupt at once", err, c.Bytes)
	}
}
