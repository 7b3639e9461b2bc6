package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	spans "github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/span"
)

// Detect reports whether head, the first bytes of a file, starts with the
// VHDX file type identifier "vhdxfile" (2.2.1).
func Detect(head []byte, _ io.ReaderAt, _ int64) bool {
	return len(head) >= len(fileSignature) && bytes.Equal(head[:len(fileSignature)], fileSignature[:])
}

// corrupt returns an error wrapping info.ErrCorrupt.
func corrupt(format string, a ...any) error {
	return fmt.Errorf("vhdx: %s: %w", fmt.Sprintf(format, a...), info.ErrCorrupt)
}

// readAt reads exactly len(p) bytes at off, which must lie inside size.
func readAt(r io.ReaderAt, size int64, p []byte, off int64, what string) error {
	if off < 0 || off > size || int64(len(p)) > size-off {
		return corrupt("%s at offset %d runs past the end of the %d-byte file", what, off, size)
	}
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("vhdx: read %s: %w (%w)", what, err, info.ErrCorrupt)
}

// checksumOK reports whether the CRC-32C stored at off in buf matches buf
// with that field taken as zero.
func checksumOK(buf []byte, off int) bool {
	want := binary.LittleEndian.Uint32(buf[off:])
	var zero [4]byte
	c := crc32.Update(0, castagnoli, buf[:off])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, buf[off+4:])
	return c == want
}

// readHeader reads and validates the header at off; ok is false for a
// header that is not valid, which is not an error while the other is.
func readHeader(r io.ReaderAt, size int64, off int64) (h header, ok bool, err error) {
	buf := make([]byte, headerSize)
	if err := readAt(r, size, buf, off, "header"); err != nil {
		return h, false, err
	}
	if _, err := binary.Decode(buf, binary.LittleEndian, &h); err != nil {
		return h, false, corrupt("decode header: %v", err)
	}
	return h, h.Signature == headerSignature && h.Version == 1 && checksumOK(buf, headerChecksumOffset), nil
}

// Inspect reads a VHDX file's facts: virtual size, block size and the
// bytes its fully present blocks hold. It checks what QEMU checks on open:
// a valid current header and log placement, region table 1's checksum,
// exactly one BAT and one metadata region that do not overlap, all five
// required metadata items, and fully present blocks inside the file and
// clear of the regions. The log is not replayed: a file with a non-empty
// log is reported as its BAT stands.
func Inspect(r io.ReaderAt, size int64) (*info.Info, error) {
	var id [8]byte
	if err := readAt(r, size, id[:], fileIdentifierOffset, "file type identifier"); err != nil {
		return nil, err
	}
	if id != fileSignature {
		return nil, corrupt("no vhdxfile signature")
	}

	h1, ok1, err := readHeader(r, size, header1Offset)
	if err != nil {
		return nil, err
	}
	h2, ok2, err := readHeader(r, size, header2Offset)
	if err != nil {
		return nil, err
	}
	var h header
	switch {
	case ok1 && ok2 && h1.SequenceNumber == h2.SequenceNumber && h1 != h2:
		return nil, corrupt("both headers have sequence number %d but differ", h1.SequenceNumber)
	case ok1 && (!ok2 || h1.SequenceNumber >= h2.SequenceNumber):
		h = h1
	case ok2:
		h = h2
	default:
		return nil, corrupt("no valid header")
	}
	if h.LogOffset < mib || h.LogOffset%mib != 0 {
		return nil, corrupt("log offset %d is not a multiple of 1 MiB past the header section", h.LogOffset)
	}
	if h.LogVersion != 0 {
		return nil, corrupt("log version %d", h.LogVersion)
	}
	if h.LogLength%mib != 0 {
		return nil, corrupt("log length %d is not a multiple of 1 MiB", h.LogLength)
	}
	if err := inFile(h.LogOffset, uint64(h.LogLength), size, "log"); err != nil {
		return nil, err
	}
	regions := []span{{0, headerSectionSize}, {h.LogOffset, uint64(h.LogLength)}}

	bat, meta, err := readRegionTable(r, size)
	if err != nil {
		return nil, err
	}
	for _, e := range []regionTableEntry{bat, meta} {
		s := span{e.FileOffset, uint64(e.Length)}
		if s.off < mib || s.off%mib != 0 {
			return nil, corrupt("region at offset %d is not 1 MiB aligned past the header section", s.off)
		}
		if err := inFile(s.off, s.len, size, "region"); err != nil {
			return nil, err
		}
		if overlaps(regions, s) {
			return nil, corrupt("region at offset %d overlaps another", s.off)
		}
		regions = append(regions, s)
	}

	m, err := readMetadata(r, size, meta)
	if err != nil {
		return nil, err
	}

	g := newGeometry(m.virtualSize, m.blockSize, m.logicalSector)
	if uint64(g.entries)*8 > uint64(bat.Length) {
		return nil, corrupt("BAT region of %d bytes cannot hold %d entries", bat.Length, g.entries)
	}
	stored, err := scanBAT(r, size, int64(bat.FileOffset), g, regions)
	if err != nil {
		return nil, err
	}
	sub := "dynamic"
	if m.flags&paramLeaveBlocksAllocated != 0 {
		sub = "fixed"
	}
	return &info.Info{
		Format:      Type,
		Subformat:   sub,
		VirtualSize: m.virtualSize,
		FileSize:    size,
		BlockSize:   m.blockSize,
		Allocated:   stored * m.blockSize,
	}, nil
}

// inFile checks, as QEMU's vhdx_region_check does, that the n bytes at
// off lie inside a file of size bytes.
func inFile(off, n uint64, size int64, what string) error {
	if off > uint64(size) || n > uint64(size)-off {
		return corrupt("%s of %d bytes at offset %d runs past the end of the %d-byte file", what, n, off, size)
	}
	return nil
}

// span is a byte range of the file.
type span struct{ off, len uint64 }

func overlaps(spans []span, s span) bool {
	for _, t := range spans {
		if s.off < t.off+t.len && t.off < s.off+s.len {
			return true
		}
	}
	return false
}

// readRegionTable reads region table 1, as QEMU does, and returns the BAT
// and metadata entries.
func readRegionTable(r io.ReaderAt, size int64) (bat, meta regionTableEntry, err error) {
	buf := make([]byte, headerSlotSize)
	if err := readAt(r, size, buf, regionTable1Offset, "region table"); err != nil {
		return bat, meta, err
	}
	var rt regionTableHeader
	if _, err := binary.Decode(buf, binary.LittleEndian, &rt); err != nil {
		return bat, meta, corrupt("decode region table: %v", err)
	}
	if rt.Signature != regionSignature {
		return bat, meta, corrupt("no regi signature in the region table")
	}
	if !checksumOK(buf, headerChecksumOffset) {
		return bat, meta, corrupt("region table checksum mismatch")
	}
	if rt.EntryCount > maxRegionEntries {
		return bat, meta, corrupt("%d region table entries", rt.EntryCount)
	}
	var foundBAT, foundMeta bool
	for i := 0; i < int(rt.EntryCount); i++ {
		var e regionTableEntry
		if _, err := binary.Decode(buf[regionTableHeaderSize+i*regionTableEntrySize:], binary.LittleEndian, &e); err != nil {
			return bat, meta, corrupt("decode region table entry: %v", err)
		}
		switch {
		case e.GUID == batGUID && !foundBAT:
			bat, foundBAT = e, true
		case e.GUID == metadataGUID && !foundMeta:
			meta, foundMeta = e, true
		case e.GUID == batGUID || e.GUID == metadataGUID:
			return bat, meta, corrupt("region %v listed twice", e.GUID)
		case e.Required&regionRequired != 0:
			return bat, meta, corrupt("unknown required region %v", e.GUID)
		}
	}
	if !foundBAT || !foundMeta {
		return bat, meta, corrupt("the region table lacks the BAT or the metadata region")
	}
	return bat, meta, nil
}

// metadata holds the required metadata items.
type metadata struct {
	blockSize     int64
	flags         uint32
	virtualSize   int64
	logicalSector int64
}

// readMetadata reads the metadata table and the items Inspect needs.
func readMetadata(r io.ReaderAt, size int64, region regionTableEntry) (metadata, error) {
	var m metadata
	if region.Length < metadataTableSize {
		return m, corrupt("metadata region of %d bytes", region.Length)
	}
	buf := make([]byte, metadataTableSize)
	if err := readAt(r, size, buf, int64(region.FileOffset), "metadata table"); err != nil {
		return m, err
	}
	var th metadataTableHeader
	if _, err := binary.Decode(buf, binary.LittleEndian, &th); err != nil {
		return m, corrupt("decode metadata table: %v", err)
	}
	if th.Signature != metadataSignature {
		return m, corrupt("no metadata signature")
	}
	if th.EntryCount > maxMetadataEntries {
		return m, corrupt("%d metadata entries", th.EntryCount)
	}
	known := map[guid][]byte{
		fileParametersGUID:     make([]byte, 8),
		virtualDiskSizeGUID:    make([]byte, 8),
		page83DataGUID:         make([]byte, 16),
		logicalSectorSizeGUID:  make([]byte, 4),
		physicalSectorSizeGUID: make([]byte, 4),
	}
	seen := map[guid]bool{}
	for i := 0; i < int(th.EntryCount); i++ {
		var e metadataTableEntry
		if _, err := binary.Decode(buf[metadataTableHeaderSize+i*metadataTableEntrySize:], binary.LittleEndian, &e); err != nil {
			return m, corrupt("decode metadata entry: %v", err)
		}
		if seen[e.ItemID] {
			return m, corrupt("metadata item %v listed twice", e.ItemID)
		}
		seen[e.ItemID] = true
		item, ok := known[e.ItemID]
		switch {
		case e.ItemID == parentLocatorGUID:
			continue // only meaningful with HasParent, refused below
		case !ok && e.Flags&metaIsRequired != 0:
			return m, corrupt("unknown required metadata item %v", e.ItemID)
		case !ok:
			continue
		}
		if e.Offset < metadataTableSize || uint64(e.Offset)+uint64(e.Length) > uint64(region.Length) || int(e.Length) < len(item) {
			return m, corrupt("metadata item %v at offset %d, length %d, lies outside its region", e.ItemID, e.Offset, e.Length)
		}
		if err := readAt(r, size, item, int64(region.FileOffset)+int64(e.Offset), "metadata item"); err != nil {
			return m, err
		}
	}
	for g := range known {
		if !seen[g] {
			return m, corrupt("required metadata item %v is missing", g)
		}
	}
	le := binary.LittleEndian
	m.blockSize = int64(le.Uint32(known[fileParametersGUID]))
	m.flags = le.Uint32(known[fileParametersGUID][4:])
	m.virtualSize = int64(le.Uint64(known[virtualDiskSizeGUID]))
	m.logicalSector = int64(le.Uint32(known[logicalSectorSizeGUID]))
	switch {
	case m.blockSize < minBlockSize || m.blockSize > maxBlockSize || m.blockSize&(m.blockSize-1) != 0:
		return m, corrupt("block size %d", m.blockSize)
	case m.logicalSector != 512 && m.logicalSector != 4096:
		return m, corrupt("logical sector size %d", m.logicalSector)
	case m.virtualSize <= 0 || m.virtualSize > MaxSize || m.virtualSize%m.logicalSector != 0:
		return m, corrupt("virtual disk size %d", m.virtualSize)
	case m.flags&paramHasParent != 0:
		return m, corrupt("differencing images are not supported")
	}
	return m, nil
}

// scanBAT streams the BAT, validating every entry, and returns how many
// payload blocks are fully present. Chunks of the BAT in holes are zeros,
// blocks not present, and are skipped unread.
func scanBAT(r io.ReaderAt, size, off int64, g geometry, regions []span) (int64, error) {
	var stored int64
	var blocks spans.Set
	buf := make([]byte, 64*kib)
	for i := int64(0); i < g.entries; {
		n := min(int64(len(buf)), (g.entries-i)*8)
		at := off + i*8
		if next := info.NextData(r, at); next > at {
			i = min(g.entries, i+(next-at)/8)
			continue
		}
		if err := readAt(r, size, buf[:n], at, "BAT"); err != nil {
			return 0, err
		}
		for k := int64(0); k < n; k, i = k+8, i+1 {
			e := binary.LittleEndian.Uint64(buf[k:])
			state, fileOff := e&batStateMask, e&batOffsetMask
			if (i+1)%(g.chunkRatio+1) == 0 { // sector bitmap entry
				if state != sbBlockNotPresent {
					return 0, corrupt("sector bitmap entry %d in state %d", i, state)
				}
				continue
			}
			switch state {
			case payloadBlockNotPresent, payloadBlockUndefined, payloadBlockZero, payloadBlockUnmapped:
			case payloadBlockFullyPresent:
				b := i - i/(g.chunkRatio+1)
				length := uint64(min(g.blockSize, g.size-b*g.blockSize))
				if fileOff < mib || fileOff >= uint64(size) || length > uint64(size)-fileOff {
					return 0, corrupt("block %d at offset %d lies outside the %d-byte file", b, fileOff, size)
				}
				if overlaps(regions, span{fileOff, length}) {
					return 0, corrupt("block %d at offset %d overlaps a region", b, fileOff)
				}
				blocks.Add(int64(fileOff), int64(length), "block")
				stored++
			default:
				return 0, corrupt("payload entry %d in state %d", i, state)
			}
		}
	}
	if a, b, ok := blocks.Overlap(); ok {
		return 0, corrupt("the blocks at offsets %d and %d overlap", a.Off, b.Off)
	}
	return stored, nil
}
