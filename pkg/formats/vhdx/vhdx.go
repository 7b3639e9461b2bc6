package vhdx

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/blockhash"
)

// Type is the format's name, as qemu-img calls it.
const Type = "vhdx"

// Creator is written after the file type identifier, in UTF-16 (2.2.1).
// It is diagnostic only.
const Creator = "tinyvm-oci"

const (
	kib = 1 << 10
	mib = 1 << 20
)

// Offsets and sizes of the header section, the first 1 MiB (2.1).
const (
	fileIdentifierOffset = 0
	header1Offset        = 64 * kib
	header2Offset        = 128 * kib
	regionTable1Offset   = 192 * kib
	regionTable2Offset   = 256 * kib
	headerSectionSize    = 1 * mib

	// headerSlotSize is the space each of the five structures above
	// occupies; the region tables' checksums cover all of it.
	headerSlotSize = 64 * kib
	// headerSize is what a header's checksum covers (2.2.2).
	headerSize = 4 * kib
	// creatorSize is the byte length of the UTF-16 creator field.
	creatorSize = 512
)

// The regions this writer lays out after the header section. Every
// region's offset and length is a multiple of 1 MiB (2.2.3.2).
const (
	logOffset      = 1 * mib
	logLength      = 1 * mib
	metadataOffset = 2 * mib
	metadataLength = 1 * mib
	batOffset      = 3 * mib

	// metadataTableSize is the metadata table at the start of the
	// metadata region; items start after it (2.6.1).
	metadataTableSize = 64 * kib
)

// Limits from the spec.
const (
	// MaxSize is the largest virtual disk, 64 TB (2.6.2.2).
	MaxSize = 64 << 40
	// DefaultBlockSize is the payload block size for disks up to 1 TiB.
	DefaultBlockSize = 1 * mib
	// maxDefaultBlocks is how many payload blocks the default block size
	// allows before it doubles: 2^20, a BAT of at most 9 MiB.
	maxDefaultBlocks = 1 << 20
	minBlockSize     = 1 * mib   // 2.6.2.1
	maxBlockSize     = 256 * mib // 2.6.2.1
	// LogicalSectorSize is the guest's sector size, disk.SectorSize.
	LogicalSectorSize = 512
	// PhysicalSectorSize is what Hyper-V gives new VHDX files.
	PhysicalSectorSize = 4096
	// sectorsPerChunk is how many logical sectors one sector bitmap block
	// describes: 2^23 (2.4). The chunk ratio is the number of payload
	// blocks this covers.
	sectorsPerChunk = 1 << 23
	// maxRegionEntries and maxMetadataEntries bound the tables (2.2.3.1,
	// 2.6.1.1).
	maxRegionEntries   = 2047
	maxMetadataEntries = 2047
)

// Signatures (2.2.1, 2.2.2, 2.2.3.1, 2.6.1.1).
var (
	fileSignature     = [8]byte{'v', 'h', 'd', 'x', 'f', 'i', 'l', 'e'}
	headerSignature   = [4]byte{'h', 'e', 'a', 'd'}
	regionSignature   = [4]byte{'r', 'e', 'g', 'i'}
	metadataSignature = [8]byte{'m', 'e', 't', 'a', 'd', 'a', 't', 'a'}
)

// Region GUIDs (2.2.3.2).
var (
	batGUID      = mustGUID("2dc27766-f623-4200-9d64-115e9bfd4a08")
	metadataGUID = mustGUID("8b7ca206-4790-4b9a-b8fe-575f050f886e")
)

// Metadata item GUIDs (2.6.2).
var (
	fileParametersGUID     = mustGUID("caa16737-fa36-4d43-b3b6-33f0aa44e76b")
	virtualDiskSizeGUID    = mustGUID("2fa54224-cd1b-4876-b211-5dbed83bf4b8")
	page83DataGUID         = mustGUID("beca12ab-b2e6-4523-93ef-c309e000c746")
	logicalSectorSizeGUID  = mustGUID("8141bf1d-a96f-4709-ba47-f233a8faab5f")
	physicalSectorSizeGUID = mustGUID("cda348c7-445d-4471-9cc9-e9885251c556")
	parentLocatorGUID      = mustGUID("a8d35f2d-b30b-454d-abf7-d3d84834ab0c")
)

// Payload and sector bitmap BAT entry states (2.5.1.1, 2.5.1.2).
const (
	payloadBlockNotPresent       = 0
	payloadBlockUndefined        = 1
	payloadBlockZero             = 2
	payloadBlockUnmapped         = 3
	payloadBlockFullyPresent     = 6
	payloadBlockPartiallyPresent = 7
	sbBlockNotPresent            = 0
	sbBlockPresent               = 6

	// batStateMask is the 3-bit state field; the file offset in MiB is
	// bits 20 to 63, so the entry's offset bits are the byte offset.
	batStateMask  = 7
	batOffsetMask = ^uint64(mib - 1)
)

// Metadata entry flags (2.6.1.2).
const (
	metaIsUser        = 1 << 0
	metaIsVirtualDisk = 1 << 1
	metaIsRequired    = 1 << 2
)

// File parameter flags (2.6.2.1).
const (
	paramLeaveBlocksAllocated = 1 << 0
	paramHasParent            = 1 << 1
)

// regionRequired is the IsRequired bit of a region table entry (2.2.3.2).
const regionRequired = 1

// castagnoli is the CRC-32C table every VHDX checksum uses.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fileIdentifier is the structure at offset 0 (2.2.1).
type fileIdentifier struct {
	Signature [8]byte           // "vhdxfile"
	Creator   [creatorSize]byte // UTF-16LE, diagnostic only
}

// header is one of the two headers (2.2.2). Its checksum covers 4 KiB:
// these fields and zeroed reserved bytes.
type header struct {
	Signature      [4]byte // "head"
	Checksum       uint32  // CRC-32C of the 4 KiB with this field zero
	SequenceNumber uint64  // the valid header with the larger one is current
	FileWriteGUID  guid    // changes before the file is first modified
	DataWriteGUID  guid    // changes before user-visible data is modified
	LogGUID        guid    // zero: the log is empty
	LogVersion     uint16  // 0
	Version        uint16  // 1
	LogLength      uint32  // bytes, a multiple of 1 MiB
	LogOffset      uint64  // bytes, 1 MiB aligned, at least 1 MiB
}

// headerChecksumOffset is where header.Checksum sits, as do the region
// table's.
const headerChecksumOffset = 4

// regionTableHeader starts a region table (2.2.3.1); its checksum covers
// the whole 64 KiB table.
type regionTableHeader struct {
	Signature  [4]byte // "regi"
	Checksum   uint32
	EntryCount uint32 // at most 2047
	Reserved   uint32
}

// regionTableEntry locates one region (2.2.3.2).
type regionTableEntry struct {
	GUID       guid
	FileOffset uint64 // 1 MiB aligned, at least 1 MiB
	Length     uint32 // a multiple of 1 MiB
	Required   uint32 // bit 0: refuse to open the file if not understood
}

// metadataTableHeader starts the metadata region (2.6.1.1).
type metadataTableHeader struct {
	Signature  [8]byte // "metadata"
	Reserved   uint16
	EntryCount uint16 // at most 2047
	Reserved2  [20]byte
}

// metadataTableEntry locates one metadata item (2.6.1.2).
type metadataTableEntry struct {
	ItemID    guid
	Offset    uint32 // from the start of the region, at least 64 KiB
	Length    uint32
	Flags     uint32 // metaIsUser, metaIsVirtualDisk, metaIsRequired
	Reserved2 uint32
}

// fileParameters is the file parameters metadata item (2.6.2.1).
type fileParameters struct {
	BlockSize uint32 // power of two, 1 MiB to 256 MiB
	Flags     uint32 // paramLeaveBlocksAllocated, paramHasParent
}

// Sizes of the binary structures.
var (
	regionTableHeaderSize   = binary.Size(regionTableHeader{})
	regionTableEntrySize    = binary.Size(regionTableEntry{})
	metadataTableHeaderSize = binary.Size(metadataTableHeader{})
	metadataTableEntrySize  = binary.Size(metadataTableEntry{})
)

// Errors.
var (
	// ErrTooLarge is returned for a disk over MaxSize.
	ErrTooLarge = errors.New("vhdx: disk too large: the maximum is 64 TiB")
	// ErrBlockSize is returned for a block size the spec does not allow.
	ErrBlockSize = errors.New("vhdx: block size must be a power of two from 1 MiB to 256 MiB")
)

// Options are the writer's choices. The zero value is the default.
type Options struct {
	// BlockSize is the payload block size in bytes: a power of two from
	// 1 MiB to 256 MiB. Zero means BlockSizeFor the disk's size.
	BlockSize int64
}

// BlockSizeFor is the default block size for a virtual size: 1 MiB, doubled
// for disks over 1 TiB until there are at most 2^20 payload blocks. The BAT
// then never passes 9 MiB, which keeps the file smaller than qemu-img's at
// every size (qemu-img uses 8 to 64 MiB blocks and a 4 MiB gap before the
// data); 64 TiB gets 64 MiB blocks, as qemu-img's do.
func BlockSizeFor(size int64) int64 {
	bs := int64(DefaultBlockSize)
	for bs < maxBlockSize && (size+bs-1)/bs > maxDefaultBlocks {
		bs *= 2
	}
	return bs
}

func (o Options) blockSize(size int64) (int64, error) {
	bs := o.BlockSize
	if bs == 0 {
		bs = BlockSizeFor(size)
	}
	if bs < minBlockSize || bs > maxBlockSize || bs&(bs-1) != 0 {
		return 0, fmt.Errorf("%w, got %d", ErrBlockSize, bs)
	}
	return bs, nil
}

// geometry is what the BAT's shape follows from.
type geometry struct {
	size       int64 // virtual size
	blockSize  int64
	chunkRatio int64 // payload blocks per sector bitmap block
	payload    int64 // payload blocks
	entries    int64 // BAT entries, sector bitmap entries included
}

func newGeometry(size, blockSize, logicalSector int64) geometry {
	g := geometry{size: size, blockSize: blockSize}
	g.chunkRatio = sectorsPerChunk * logicalSector / blockSize
	g.payload = (size + blockSize - 1) / blockSize
	// A dynamic VHDX's BAT ends with the last payload entry (2.5), so the
	// sector bitmap entries are those that follow each full chunk before
	// it.
	g.entries = g.payload + (g.payload-1)/g.chunkRatio
	return g
}

// batIndex is the BAT entry of payload block b: each chunk of chunkRatio
// payload entries is followed by its sector bitmap entry.
func (g geometry) batIndex(b int64) int64 { return b + b/g.chunkRatio }

// batLength is the BAT region's length, rounded up to 1 MiB.
func (g geometry) batLength() int64 { return align.Up(g.entries*8, mib) }

// Write streams d to w as a dynamic VHDX. Only blocks that hold a non-zero
// byte are stored; the BAT is generated as it is written, so memory use
// does not follow the virtual size. The stored blocks are read twice:
// first to hash them into the GUIDs the headers carry, then to write them.
func Write(w io.Writer, d disk.Disk, o Options) error {
	size := d.Size()
	bs, err := o.blockSize(size)
	if err != nil {
		return err
	}
	if size <= 0 || size%LogicalSectorSize != 0 {
		return fmt.Errorf("vhdx: %w, got %d", disk.ErrSize, size)
	}
	if size > MaxSize {
		return fmt.Errorf("%w, got %d bytes", ErrTooLarge, size)
	}
	g := newGeometry(size, bs, LogicalSectorSize)
	blocks, err := disk.Blocks(d, bs)
	if err != nil {
		return fmt.Errorf("vhdx: %w", err)
	}
	seed, err := contentSeed(d, g, blocks)
	if err != nil {
		return err
	}
	ew := &errWriter{w: w}
	writeHeaderSection(ew, seed, g)
	ew.zeros(logLength) // the empty log
	writeMetadataRegion(ew, seed, g)
	writeBAT(ew, g, blocks)
	for _, b := range blocks {
		// ew returns its first error, so a failure before the loop ends it
		// at the first block.
		if err := disk.CopyBlock(ew, d, b, bs); err != nil {
			return fmt.Errorf("vhdx: %w", err)
		}
	}
	if ew.err != nil {
		return fmt.Errorf("vhdx: %w", ew.err)
	}
	return nil
}

// contentSeed hashes everything the file's GUIDs must depend on: the
// layout choices and the data of every stored block.
func contentSeed(d disk.Disk, g geometry, blocks []int64) ([]byte, error) {
	h := sha256.New()
	var p [8]byte
	for _, v := range []int64{g.size, g.blockSize, LogicalSectorSize, PhysicalSectorSize, int64(len(blocks))} {
		binary.LittleEndian.PutUint64(p[:], uint64(v))
		h.Write(p[:])
	}
	h.Write([]byte(Creator))
	if err := blockhash.Write(h, d, blocks, g.blockSize, binary.LittleEndian); err != nil {
		return nil, fmt.Errorf("vhdx: %w", err)
	}
	return h.Sum(nil), nil
}

// errWriter makes write errors sticky: after the first, nothing is written.
type errWriter struct {
	w   io.Writer
	err error
}

var zeroChunk [64 * kib]byte

// Write is write as an io.Writer, for disk.CopyBlock.
func (e *errWriter) Write(p []byte) (int, error) {
	e.write(p)
	if e.err != nil {
		return 0, e.err
	}
	return len(p), nil
}

func (e *errWriter) write(p []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
}

func (e *errWriter) zeros(n int64) {
	for n > 0 && e.err == nil {
		k := min(n, int64(len(zeroChunk)))
		e.write(zeroChunk[:k])
		n -= k
	}
}

// encode lays v out little-endian at the start of buf.
func encode(buf []byte, v any) {
	if _, err := binary.Encode(buf, binary.LittleEndian, v); err != nil {
		panic("vhdx: encode: " + err.Error()) // only fixed-size structs of ours reach here
	}
}

// setChecksum stores the CRC-32C of buf, computed with the checksum field
// at off zeroed, in that field.
func setChecksum(buf []byte, off int) {
	clear(buf[off : off+4])
	binary.LittleEndian.PutUint32(buf[off:], crc32.Checksum(buf, castagnoli))
}

// writeHeaderSection writes the first 1 MiB: file type identifier, the two
// headers and the two region tables.
func writeHeaderSection(ew *errWriter, seed []byte, g geometry) {
	slot := make([]byte, headerSlotSize)

	id := fileIdentifier{Signature: fileSignature}
	for i, u := range utf16.Encode([]rune(Creator)) {
		binary.LittleEndian.PutUint16(id.Creator[2*i:], u)
	}
	encode(slot, id)
	ew.write(slot)

	h := header{
		Signature:     headerSignature,
		FileWriteGUID: hashGUID(seed, "file write"),
		DataWriteGUID: hashGUID(seed, "data write"),
		Version:       1,
		LogLength:     logLength,
		LogOffset:     logOffset,
	}
	for seq := uint64(1); seq <= 2; seq++ {
		clear(slot)
		h.SequenceNumber = seq
		encode(slot, h)
		setChecksum(slot[:headerSize], headerChecksumOffset)
		ew.write(slot)
	}

	clear(slot)
	encode(slot, regionTableHeader{Signature: regionSignature, EntryCount: 2})
	encode(slot[regionTableHeaderSize:], []regionTableEntry{
		{GUID: batGUID, FileOffset: batOffset, Length: uint32(g.batLength()), Required: regionRequired},
		{GUID: metadataGUID, FileOffset: metadataOffset, Length: metadataLength, Required: regionRequired},
	})
	setChecksum(slot, headerChecksumOffset)
	ew.write(slot) // region table 1
	ew.write(slot) // region table 2
	ew.zeros(headerSectionSize - regionTable2Offset - headerSlotSize)
}

// writeMetadataRegion writes the metadata table and its five required
// items (2.6.2), then pads the region to 1 MiB.
func writeMetadataRegion(ew *errWriter, seed []byte, g geometry) {
	page83 := hashGUID(seed, "page 83")
	items := []struct {
		id    guid
		flags uint32
		value any
	}{
		{fileParametersGUID, metaIsRequired, fileParameters{BlockSize: uint32(g.blockSize)}},
		{virtualDiskSizeGUID, metaIsRequired | metaIsVirtualDisk, uint64(g.size)},
		{page83DataGUID, metaIsRequired | metaIsVirtualDisk, page83},
		{logicalSectorSizeGUID, metaIsRequired | metaIsVirtualDisk, uint32(LogicalSectorSize)},
		{physicalSectorSizeGUID, metaIsRequired | metaIsVirtualDisk, uint32(PhysicalSectorSize)},
	}
	buf := make([]byte, metadataTableSize+kib)
	encode(buf, metadataTableHeader{Signature: metadataSignature, EntryCount: uint16(len(items))})
	off := metadataTableSize
	for i, it := range items {
		n := binary.Size(it.value)
		encode(buf[metadataTableHeaderSize+i*metadataTableEntrySize:], metadataTableEntry{
			ItemID: it.id, Offset: uint32(off), Length: uint32(n), Flags: it.flags,
		})
		encode(buf[off:], it.value)
		off += n
	}
	ew.write(buf)
	ew.zeros(metadataLength - int64(len(buf)))
}

// writeBAT streams the BAT region: a FULLY_PRESENT entry with its file
// offset for each stored block, at the index batIndex gives it among the
// interleaved sector bitmap entries, and zero (PAYLOAD_BLOCK_NOT_PRESENT,
// SB_BLOCK_NOT_PRESENT) for every other entry and the region's padding.
// The cost follows the stored blocks; the zeros are written from a shared
// buffer.
func writeBAT(ew *errWriter, g geometry, blocks []int64) {
	dataOffset := uint64(batOffset + g.batLength())
	var entry [8]byte
	var pos int64 // BAT entries written
	for k, b := range blocks {
		i := g.batIndex(b)
		ew.zeros((i - pos) * 8)
		binary.LittleEndian.PutUint64(entry[:], dataOffset+uint64(k)*uint64(g.blockSize)|payloadBlockFullyPresent)
		ew.write(entry[:])
		pos = i + 1
	}
	ew.zeros(g.batLength() - pos*8)
}
