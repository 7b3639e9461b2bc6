package vhdx

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
)

// Field offsets in a header (2.2.2) and a region table entry (2.2.3.2).
const (
	logLengthField        = 68
	logOffsetField        = 72
	regionEntryFileOffset = 16
)

// setHeaders applies f to both headers and fixes their checksums, so that
// the change is what QEMU and Inspect see.
func setHeaders(f func(h []byte)) func([]byte) []byte {
	return func(b []byte) []byte {
		for _, off := range []int{header1Offset, header2Offset} {
			h := b[off : off+headerSize]
			f(h)
			reChecksum(h)
		}
		return b
	}
}

// setRegion sets the file offset of the region with id in both region
// tables and fixes their checksums.
func setRegion(id guid, fileOff uint64) func([]byte) []byte {
	return func(b []byte) []byte {
		for _, off := range []int{regionTable1Offset, regionTable2Offset} {
			rt := b[off : off+headerSlotSize]
			for i := 0; i < int(binary.LittleEndian.Uint32(rt[8:])); i++ {
				e := rt[regionTableHeaderSize+i*regionTableEntrySize:]
				if guid(e[:16]) == id {
					binary.LittleEndian.PutUint64(e[regionEntryFileOffset:], fileOff)
				}
			}
			reChecksum(rt)
		}
		return b
	}
}

func reChecksum(p []byte) {
	binary.LittleEndian.PutUint32(p[headerChecksumOffset:], 0)
	binary.LittleEndian.PutUint32(p[headerChecksumOffset:], crc32.Checksum(p, castagnoli))
}

func putBAT(i int, v func(b []byte) uint64) func([]byte) []byte {
	return func(b []byte) []byte {
		binary.LittleEndian.PutUint64(b[batOffset+8*i:], v(b))
		return b
	}
}

func batEntry(i int) func([]byte) uint64 {
	return func(b []byte) uint64 { return binary.LittleEndian.Uint64(b[batOffset+8*i:]) }
}

// TestInspectRanges is the record of what inspect and qemu-img make of
// VHDX files whose log, regions or blocks lie past the end or on each
// other. QEMU 7.2 checks overlaps and blocks past the end, but not a
// log or BAT region past the end, nor two blocks at one offset.
func TestInspectRanges(t *testing.T) {
	b := write(t, formattest.Scattered(8*mib, map[int64]byte{0: 1, 2 * mib: 2}), Options{})
	end := uint64(len(b))
	formattest.CheckCorruptions(t, "vhdx", b, Inspect, []formattest.Corruption{
		{Name: "log at offset 2^50", Patch: setHeaders(func(h []byte) { binary.LittleEndian.PutUint64(h[logOffsetField:], 1<<50) }), QemuRejects: false},
		{Name: "log runs past the end", Patch: setHeaders(func(h []byte) { binary.LittleEndian.PutUint32(h[logLengthField:], 1<<30) }), QemuRejects: true},
		{Name: "log over the BAT", Patch: setHeaders(func(h []byte) { binary.LittleEndian.PutUint64(h[logOffsetField:], batOffset) }), QemuRejects: true},
		{Name: "BAT region past the end", Patch: setRegion(batGUID, 1<<40), QemuRejects: false},
		{Name: "metadata region over the header section", Patch: setRegion(metadataGUID, 0), QemuRejects: true},
		{Name: "two blocks share one offset", Patch: putBAT(2, batEntry(0)), QemuRejects: false},
		{Name: "block past the end", Patch: putBAT(0, func([]byte) uint64 { return (end+mib)&^(mib-1) | payloadBlockFullyPresent }), QemuRejects: true},
		{Name: "block on the BAT", Patch: putBAT(0, func([]byte) uint64 { return batOffset | payloadBlockFullyPresent }), QemuRejects: true},
	})
}

// TestMutants is FuzzInspect's deterministic counterpart: whole files,
// not the sparse fuzz encoding, mutated where the structures are.
func TestMutants(t *testing.T) {
	seeds := [][]byte{
		write(t, formattest.BootDisk(t, mib), Options{}),
		write(t, formattest.Scattered(8*mib, map[int64]byte{0: 1, 2 * mib: 2}), Options{}),
	}
	// The structures sit at fixed offsets that changes spread over a
	// 5 MiB file would rarely hit.
	hot := []int{0, header1Offset, header2Offset, regionTable1Offset, regionTable2Offset, metadataOffset, metadataOffset + 64*kib, batOffset}
	formattest.MutationTest(t, seeds, hot, 1500, Inspect, func(size int64) int64 { return 2*size + mib })
}
