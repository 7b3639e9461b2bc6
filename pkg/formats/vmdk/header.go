package vmdk

import (
	"bytes"
	"encoding/binary"
)

// On-disk constants of the hosted sparse extent (VMDK spec 1.1, "Hosted
// Sparse Extent Header" and "Stream-Optimized Compressed Sparse Extents").
const (
	// SectorSize is the unit of every offset and size in a VMDK header.
	SectorSize = 512

	// GrainSectors is the grain this package writes: 128 sectors, 64 KiB,
	// the value both VMware and QEMU use.
	GrainSectors = 128
	// GrainSize is the grain in bytes.
	GrainSize = GrainSectors * SectorSize

	// numGTEsPerGT is fixed at 512 by the spec for hosted sparse extents, so
	// a grain table is 4 sectors and covers 32 MiB.
	numGTEsPerGT = 512
	gtSectors    = numGTEsPerGT * 4 / SectorSize

	// descriptorOffset and descriptorSize place the embedded descriptor
	// at sector 1, 20 sectors long, as both QEMU and VMware do; QEMU reads
	// the descriptor at sector 1 whatever descriptorOffset says.
	descriptorOffset = 1
	descriptorSize   = 20

	// gdAtEnd in a stream-optimized header's gdOffset says that the real
	// header is the footer near the end of the file.
	gdAtEnd = ^uint64(0)

	// footerTail is how far from the end of a stream-optimized file its
	// footer marker starts: footer marker, footer, end-of-stream marker.
	footerTail = 3 * SectorSize

	// grainHeaderSize is the {lba u64, cmpSize u32} that precedes each
	// compressed grain.
	grainHeaderSize = 12
)

// magic is the first four bytes of a sparse extent: "KDMV" is the
// little-endian u32 0x564d444b.
var magic = [4]byte{'K', 'D', 'M', 'V'}

// Header flags (spec 1.1, SparseExtentHeader.flags).
const (
	flagValidNewline = 1 << 0  // the newline-detection bytes are valid
	flagRedundantGD  = 1 << 1  // rgdOffset points to a redundant GD
	flagZeroGTE      = 1 << 2  // a GT entry of 1 means a zeroed grain
	flagCompressed   = 1 << 16 // grains are compressed
	flagMarkers      = 1 << 17 // the extent has metadata markers
)

// Compression algorithms (SparseExtentHeader.compressAlgorithm).
const (
	compressNone    = 0
	compressDeflate = 1 // RFC 1950 zlib streams, despite the name
)

// Marker types of a stream-optimized extent.
const (
	markerEOS    = 0 // end of stream
	markerGT     = 1 // a grain table follows
	markerGD     = 2 // the grain directory follows
	markerFooter = 3 // the footer (a copy of the header) follows
)

// header is SparseExtentHeader, field by field, little-endian, packed
// (binary.Size(header{}) == 512).
type header struct {
	MagicNumber        [4]byte // "KDMV"
	Version            uint32  // 1 plain, 3 stream-optimized (compressed)
	Flags              uint32  // flag* bits
	Capacity           uint64  // virtual size in sectors
	GrainSize          uint64  // grain in sectors, a power of two
	DescriptorOffset   uint64  // sector of the embedded descriptor, 0 if none
	DescriptorSize     uint64  // its size in sectors
	NumGTEsPerGT       uint32  // entries per grain table, 512
	RGDOffset          uint64  // sector of the redundant grain directory
	GDOffset           uint64  // sector of the grain directory, or gdAtEnd
	OverHead           uint64  // sectors of metadata before the first grain
	UncleanShutdown    uint8   // 1 while a writer has it open
	SingleEndLineChar  byte    // '\n'
	NonEndLineChar     byte    // ' '
	DoubleEndLineChar1 byte    // '\r'
	DoubleEndLineChar2 byte    // '\n': together they catch FTP text-mode mangling
	CompressAlgorithm  uint16  // compress* value
	Pad                [433]byte
}

// marshal encodes h as one 512-byte sector.
func (h *header) marshal() []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, h) // fixed-size struct: cannot fail
	return b.Bytes()
}

// unmarshal decodes a 512-byte sector.
func (h *header) unmarshal(p []byte) {
	_ = binary.Read(bytes.NewReader(p[:SectorSize]), binary.LittleEndian, h)
}

// newHeader returns the fields every writer shares.
func newHeader(capacity uint64) header {
	return header{
		MagicNumber:        magic,
		Capacity:           capacity,
		GrainSize:          GrainSectors,
		DescriptorOffset:   descriptorOffset,
		DescriptorSize:     descriptorSize,
		NumGTEsPerGT:       numGTEsPerGT,
		SingleEndLineChar:  '\n',
		NonEndLineChar:     ' ',
		DoubleEndLineChar1: '\r',
		DoubleEndLineChar2: '\n',
	}
}

// marker is a stream-optimized metadata marker: {numSectors u64, size u32,
// type u32}, padded to a sector. size is 0 for every marker, which is what
// tells a marker from a grain header.
func marker(numSectors uint64, typ uint32) []byte {
	p := make([]byte, SectorSize)
	binary.LittleEndian.PutUint64(p[0:], numSectors)
	binary.LittleEndian.PutUint32(p[12:], typ)
	return p
}

// sectorsFor is how many sectors n bytes take.
func sectorsFor(n uint64) uint64 { return (n + SectorSize - 1) / SectorSize }
