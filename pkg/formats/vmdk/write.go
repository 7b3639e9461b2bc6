package vmdk

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/adler32"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/internal/flatepool"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/blockhash"
)

// Type is the format's name, as qemu-img calls it.
const Type = "vmdk"

// Subformats, named as in the descriptor's createType.
const (
	// MonolithicSparse is one file with a plain sparse extent: the
	// default, as for qemu-img and VMware Workstation.
	MonolithicSparse = "monolithicSparse"
	// StreamOptimized is the compressed, append-only layout that OVA
	// files and ESXi imports use.
	StreamOptimized = "streamOptimized"
)

// DefaultExtentName is the file name the descriptor's extent line records
// when Options.ExtentName is empty.
const DefaultExtentName = "512-byte-vm.vmdk"

// Errors.
var (
	// ErrSize is returned for a virtual size that is not a positive
	// multiple of the grain: VMware's tools hang on smaller disks.
	ErrSize = errors.New("vmdk: size must be a multiple of the 64 KiB grain")
	// ErrTooLarge is returned when the disk or the file it needs would
	// pass the 2 TiB that 32-bit sector numbers address.
	ErrTooLarge = errors.New("vmdk: disk too large")
	// ErrSubformat is returned for a subformat this package does not write.
	ErrSubformat = errors.New("vmdk: unknown subformat")
)

// maxCapacity is the largest capacity in sectors: grain table entries are
// u32 sector numbers, so neither the disk nor the file may pass 2 TiB.
const maxCapacity = 1 << 32

// Options are the VMDK writer's choices.
type Options struct {
	// Subformat is MonolithicSparse (the default when empty) or
	// StreamOptimized.
	Subformat string
	// ExtentName is the file name in the descriptor's extent line
	// (DefaultExtentName when empty). QEMU and VMware ignore it for a
	// single-file VMDK, but it should match the file's name.
	ExtentName string
}

func (o Options) subformat() (string, error) {
	switch o.Subformat {
	case "", MonolithicSparse:
		return MonolithicSparse, nil
	case StreamOptimized:
		return StreamOptimized, nil
	}
	return "", fmt.Errorf("%w %q: use %s or %s", ErrSubformat, o.Subformat, MonolithicSparse, StreamOptimized)
}

// Write streams d to w as a VMDK. Only grains holding non-zero bytes are
// stored. The disk's data is read twice: once to derive the content ID
// that the descriptor at the start of the file records, once to write it.
// Memory use follows the number of grain tables (16 KiB per TiB of
// virtual size for the directory), never the virtual size.
func Write(w io.Writer, d disk.Disk, o Options) error {
	sub, err := o.subformat()
	if err != nil {
		return err
	}
	size := d.Size()
	if size <= 0 || size%GrainSize != 0 {
		return fmt.Errorf("%w, got %d bytes", ErrSize, size)
	}
	capacity := uint64(size) / SectorSize
	if capacity > maxCapacity {
		return fmt.Errorf("%w: %d bytes is over 2 TiB", ErrTooLarge, size)
	}
	extent := o.ExtentName
	if extent == "" {
		extent = DefaultExtentName
	}
	grains, err := disk.Blocks(d, GrainSize)
	if err != nil {
		return fmt.Errorf("vmdk: %w", err)
	}
	id, err := digest(d, grains, sub, extent)
	if err != nil {
		return err
	}
	desc := descriptor(sub, capacity, extent, id)
	if len(desc) > descriptorSize*SectorSize {
		// Cannot happen for any name a caller would use, but never write
		// a descriptor that runs into the grain directory.
		return fmt.Errorf("vmdk: extent name too long: %d bytes", len(extent))
	}
	s := newSink(w)
	if sub == StreamOptimized {
		writeStream(s, d, capacity, grains, desc)
	} else {
		writeSparse(s, d, capacity, grains, desc)
	}
	return s.finish()
}

// digest hashes the options and every non-zero grain with its index: the
// same disk and options give the same CID on every machine.
func digest(d disk.Disk, grains []int64, sub, extent string) (contentID, error) {
	h := sha256.New()
	fmt.Fprintf(h, "tinyvm-oci vmdk\x00%s\x00%s\x00%d\x00", sub, extent, d.Size())
	if err := blockhash.Write(h, d, grains, GrainSize, binary.LittleEndian); err != nil {
		return contentID{}, fmt.Errorf("vmdk: %w", err)
	}
	var id contentID
	copy(id[:], h.Sum(nil))
	return id, nil
}

// writeSparse writes the monolithicSparse layout QEMU and VMware use:
//
//	header | descriptor (20 sectors) | redundant GD | redundant GTs |
//	GD | GTs | padding to the grain | grains
//
// Every grain table is allocated, even when all its grains are sparse.
// QEMU cannot add a grain table to an existing file (a write where the GD
// entry is 0 fails with EINVAL), so an image without them would break as
// soon as a guest wrote to an empty region. The empty tables are zeros,
// which become holes when w is a file.
func writeSparse(s *sink, d disk.Disk, capacity uint64, grains []int64, desc string) {
	numGrains := capacity / GrainSectors
	numGTs := align.CeilDiv(numGrains, numGTEsPerGT)
	gdSectors := sectorsFor(numGTs * 4)
	rgd := uint64(descriptorOffset + descriptorSize)
	gd := rgd + gdSectors + numGTs*gtSectors
	end := gd + gdSectors + numGTs*gtSectors
	overhead := align.CeilDiv(end, GrainSectors) * GrainSectors // grains start grain-aligned, as in QEMU's files
	if overhead+uint64(len(grains))*GrainSectors > maxCapacity {
		s.fail(fmt.Errorf("%w: the file would pass 2 TiB", ErrTooLarge))
		return
	}

	h := newHeader(capacity)
	h.Version = 1
	h.Flags = flagValidNewline | flagRedundantGD
	h.RGDOffset = rgd
	h.GDOffset = gd
	h.OverHead = overhead
	h.CompressAlgorithm = compressNone
	s.write(h.marshal())
	s.write(padSectors([]byte(desc), descriptorSize))

	// Both copies of the directory and the tables; grain k of the list is
	// at overhead + k*GrainSectors.
	for _, dir := range []uint64{rgd, gd} {
		s.write(directory(numGTs, gdSectors, func(i uint64) uint64 { return dir + gdSectors + i*gtSectors }))
		writeTables(s, numGTs, grains, func(k int) uint64 { return overhead + uint64(k)*GrainSectors })
	}
	s.zero(int64(overhead-end) * SectorSize)

	p := make([]byte, GrainSize)
	for _, g := range grains {
		if err := disk.ReadBlock(d, g, p); err != nil {
			s.fail(fmt.Errorf("vmdk: %w", err))
			return
		}
		s.write(p)
	}
}

// directory returns a grain directory of numGTs entries, padded to
// gdSectors, whose entry i is at(i).
func directory(numGTs, gdSectors uint64, at func(i uint64) uint64) []byte {
	p := make([]byte, gdSectors*SectorSize)
	for i := range numGTs {
		binary.LittleEndian.PutUint32(p[4*i:], uint32(at(i)))
	}
	return p
}

// writeTables writes all numGTs grain tables. grains are the allocated
// grain indexes in ascending order; the k-th is stored at sector at(k).
func writeTables(s *sink, numGTs uint64, grains []int64, at func(k int) uint64) {
	gt := make([]byte, gtSectors*SectorSize)
	k := 0
	for t := range numGTs {
		if k == len(grains) || uint64(grains[k])/numGTEsPerGT != t {
			s.zero(int64(len(gt)))
			continue
		}
		clear(gt)
		for ; k < len(grains) && uint64(grains[k])/numGTEsPerGT == t; k++ {
			binary.LittleEndian.PutUint32(gt[4*(grains[k]%numGTEsPerGT):], uint32(at(k)))
		}
		s.write(gt)
	}
}

// writeStream writes the stream-optimized layout of the VMDK spec, in one
// pass with nothing to seek back to:
//
//	header (gdOffset = gdAtEnd) | descriptor (20 sectors) |
//	{ grain... | GT marker | GT } for each table holding grains |
//	GD marker | GD | footer marker | footer | end-of-stream marker
//
// Each grain is a 12-byte {lba, cmpSize} header and a zlib stream, padded
// to a sector. Tables with no grains are not written; their directory
// entry is 0. The header and descriptor fields are open-vmdk's.
func writeStream(s *sink, d disk.Disk, capacity uint64, grains []int64, desc string) {
	numGrains := capacity / GrainSectors
	numGTs := align.CeilDiv(numGrains, numGTEsPerGT)
	gdSectors := sectorsFor(numGTs * 4)

	h := newHeader(capacity)
	h.Version = 3 // ESXi rejects stream-optimized files below version 3
	h.Flags = flagValidNewline | flagCompressed | flagMarkers
	h.GDOffset = gdAtEnd
	h.OverHead = descriptorOffset + descriptorSize
	h.CompressAlgorithm = compressDeflate
	s.write(h.marshal())
	s.write(padSectors([]byte(desc), descriptorSize))

	sector := h.OverHead
	gdTable := make([]uint64, numGTs)
	gt := make([]byte, gtSectors*SectorSize)
	var buf bytes.Buffer
	// zlib's default level: BestCompression's long match chains cost the
	// ova's build 3 ms on the mostly-zero grains for the same file size.
	// The zlib framing is written here around a flate writer lent by
	// flatepool, whose tables a fresh one (inside compress/zlib) would
	// allocate and fault in again for every file.
	fw, _ := flatepool.Get(&buf, flate.DefaultCompression) // a valid level: cannot fail
	defer flatepool.Put(fw, flate.DefaultCompression)
	p := make([]byte, GrainSize)
	for k, g := range grains {
		if err := disk.ReadBlock(d, g, p); err != nil {
			s.fail(fmt.Errorf("vmdk: %w", err))
			return
		}
		buf.Reset()
		buf.Write(make([]byte, grainHeaderSize))
		buf.Write(zlibHeader[:])
		fw.Reset(&buf)
		fw.Write(p) // a bytes.Buffer never fails
		fw.Close()
		buf.Write(binary.BigEndian.AppendUint32(nil, adler32.Checksum(p)))
		rec := buf.Bytes()
		binary.LittleEndian.PutUint64(rec[0:], uint64(g)*GrainSectors)
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(rec)-grainHeaderSize))
		binary.LittleEndian.PutUint32(gt[4*(uint64(g)%numGTEsPerGT):], uint32(sector))
		n := sectorsFor(uint64(len(rec)))
		s.write(padSectors(rec, n))
		sector += n

		// Close the table after its last grain.
		t := uint64(g) / numGTEsPerGT
		if k+1 == len(grains) || uint64(grains[k+1])/numGTEsPerGT != t {
			s.write(marker(gtSectors, markerGT))
			gdTable[t] = sector + 1
			s.write(gt)
			clear(gt)
			sector += 1 + gtSectors
		}
		if sector > maxCapacity {
			s.fail(fmt.Errorf("%w: the file would pass 2 TiB", ErrTooLarge))
			return
		}
	}

	s.write(marker(gdSectors, markerGD))
	gdOffset := sector + 1
	s.write(directory(numGTs, gdSectors, func(i uint64) uint64 { return gdTable[i] }))
	sector += 1 + gdSectors

	// The footer is the header with the directory's real place: readers
	// that find gdAtEnd in the header use it instead.
	h.GDOffset = gdOffset
	s.write(marker(1, markerFooter))
	s.write(h.marshal())
	s.write(marker(0, markerEOS))
}

// zlibHeader is the RFC 1950 header compress/zlib writes at the default
// level: CMF 0x78 (deflate, 32 KiB window), FLG 0x9c (FLEVEL 2, FCHECK).
// The stream after it is the deflate data and the Adler-32 of the input,
// big-endian.
var zlibHeader = [2]byte{0x78, 0x9c}

// padSectors returns p zero-padded to n sectors.
func padSectors(p []byte, n uint64) []byte {
	if uint64(len(p)) == n*SectorSize {
		return p
	}
	out := make([]byte, n*SectorSize)
	copy(out, p)
	return out
}
