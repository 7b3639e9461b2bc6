package vdi

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/blockhash"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/table"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
)

// Type is the format's name, as qemu-img calls it.
const Type = "vdi"

// BlockSize is the size of one VDI block, the only size QEMU reads.
const BlockSize = 1 << 20

// Header constants from VDICore.h.
const (
	// Signature is VDI_IMAGE_SIGNATURE.
	Signature = 0xbeda107f
	// Version is VDI 1.1 (major in the high 16 bits).
	Version = 0x00010001
	// TypeDynamic is VDI_IMAGE_TYPE_NORMAL, a growing image.
	TypeDynamic = 1
	// TypeFixed is VDI_IMAGE_TYPE_FIXED, a preallocated image.
	TypeFixed = 2
	// BlockFree marks a block that is not stored (VDI_IMAGE_BLOCK_FREE).
	BlockFree = 0xFFFFFFFF
	// BlockZero marks a discarded block that reads as zeros.
	BlockZero = 0xFFFFFFFE
	// sectorSize is VDI_GEOMETRY_SECTOR_SIZE.
	sectorSize = 512
)

// Offsets and sizes in the file.
const (
	textOffset      = 0x00 // szFileInfo[64]
	signatureOffset = 0x40 // u32Signature
	versionOffset   = 0x44 // u32Version
	headerOffset    = 0x48 // VDIHEADER1PLUS starts here
	preHeaderSize   = headerOffset
	// header1Size is sizeof(VDIHEADER1): the smallest v1.1 header.
	header1Size = 384
	// header1PlusSize is sizeof(VDIHEADER1PLUS), the header written.
	header1PlusSize = 400
	// blocksOffset is where the block map starts: the end of the header
	// rounded up to a sector.
	blocksOffset = 512
	// maxBlocks is QEMU's VDI_BLOCKS_IN_IMAGE_MAX, (INT_MAX+1-512)/4.
	maxBlocks = (1<<31 - 512) / 4
)

// MaxSize is the largest virtual size QEMU opens (VDI_DISK_SIZE_MAX).
const MaxSize = maxBlocks * BlockSize

// text is the pre-header's informational string (ignored by readers).
const text = "<<< tinyvm-oci VirtualBox Disk Image >>>\n"

// ErrTooLarge is returned for a disk larger than MaxSize.
var ErrTooLarge = errors.New("vdi: disk too large")

// Geometry is VDIDISKGEOMETRY.
type Geometry struct {
	Cylinders uint32 // cCylinders
	Heads     uint32 // cHeads
	Sectors   uint32 // cSectors (per track)
	SectorLen uint32 // cbSector, always 512
}

// Header is the pre-header plus VDIHEADER1PLUS, field by field, as it
// lies at offset 0 of the file.
type Header struct {
	Text      [64]byte // szFileInfo, for eyes only
	Signature uint32   // VDI_IMAGE_SIGNATURE
	Version   uint32   // 0x00010001 = 1.1

	HeaderSize       uint32    // cbHeader, 400 for VDIHEADER1PLUS
	ImageType        uint32    // u32Type: 1 dynamic, 2 fixed
	Flags            uint32    // fFlags
	Comment          [256]byte // szComment, UTF-8
	BlocksOffset     uint32    // offBlocks: file offset of the block map
	DataOffset       uint32    // offData: file offset of block 0's data
	LegacyGeometry   Geometry  // unused since 1.1
	Dummy            uint32    // was the BIOS translation mode
	DiskSize         uint64    // cbDisk: virtual size in bytes
	BlockSize        uint32    // cbBlock
	BlockExtra       uint32    // cbBlockExtra: bytes before each block's data
	Blocks           uint32    // cBlocks
	BlocksAllocated  uint32    // cBlocksAllocated
	UUIDCreate       [16]byte  // uuidCreate, non-null
	UUIDModify       [16]byte  // uuidModify, non-null
	UUIDLinkage      [16]byte  // uuidLinkage, null for a base image
	UUIDParentModify [16]byte  // uuidParentModify, null for a base image
	LCHSGeometry     Geometry  // logical CHS, zero = not calculated
}

// headerEnd is the size of Header in the file: 72 + 400.
const headerEnd = preHeaderSize + header1PlusSize

// Write streams the virtual disk d to w as a dynamic VDI image. Only blocks
// holding a non-zero byte are stored. When w is an *os.File the zero parts
// of stored blocks become holes.
func Write(w io.Writer, d disk.Disk) error {
	size := d.Size()
	if size > MaxSize {
		return fmt.Errorf("%w: %d bytes, the maximum is %d", ErrTooLarge, size, int64(MaxSize))
	}
	nblocks := (size + BlockSize - 1) / BlockSize
	used, err := disk.Blocks(d, BlockSize)
	if err != nil {
		return fmt.Errorf("vdi: %w", err)
	}
	create, modify, err := uuids(d, used)
	if err != nil {
		return err
	}
	mapSize := align.Up(nblocks*4, sectorSize)
	h := Header{
		Signature:       Signature,
		Version:         Version,
		HeaderSize:      header1PlusSize,
		ImageType:       TypeDynamic,
		BlocksOffset:    blocksOffset,
		DataOffset:      uint32(blocksOffset + mapSize),
		LegacyGeometry:  Geometry{SectorLen: sectorSize},
		DiskSize:        uint64(size),
		BlockSize:       BlockSize,
		Blocks:          uint32(nblocks),
		BlocksAllocated: uint32(len(used)),
		UUIDCreate:      create,
		UUIDModify:      modify,
		LCHSGeometry:    Geometry{SectorLen: sectorSize},
	}
	copy(h.Text[:], text)
	if _, err := w.Write(h.marshal()); err != nil {
		return fmt.Errorf("vdi: write header: %w", err)
	}
	if err := writeBlockMap(w, nblocks, mapSize, used); err != nil {
		return fmt.Errorf("vdi: write block map: %w", err)
	}
	for _, b := range used {
		blk := disk.Section(d, b*BlockSize, BlockSize)
		if _, err := raw.Write(w, blk); err != nil {
			return fmt.Errorf("vdi: write block %d: %w", b, err)
		}
	}
	return nil
}

// marshal encodes h into its 512-byte sector, zero-padded past the header.
func (h *Header) marshal() []byte {
	buf := make([]byte, blocksOffset)
	_, _ = binary.Encode(buf, binary.LittleEndian, h)
	return buf
}

// writeBlockMap streams the block map: entry i is the index of block i in
// the data area, or BlockFree. used is ascending, so the data area holds
// the stored blocks in disk order. The map is padded to mapSize with
// BlockFree entries, never read because they lie past cBlocks.
func writeBlockMap(w io.Writer, nblocks, mapSize int64, used []int64) error {
	next := 0 // index into used
	return table.WriteUint32(w, mapSize/4, binary.LittleEndian, func(i int64) uint32 {
		v := uint32(BlockFree)
		if i < nblocks && next < len(used) && used[next] == i {
			v = uint32(next)
			next++
		}
		return v
	})
}

// uuids derives the create and modify UUIDs from SHA-256 of the disk's
// size and the contents of its non-zero blocks.
func uuids(d disk.Disk, used []int64) (create, modify [16]byte, err error) {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(d.Size()))
	h.Write([]byte("tinyvm-oci vdi\x00"))
	h.Write(n[:])
	if err := blockhash.Write(h, d, used, BlockSize, binary.BigEndian); err != nil {
		return create, modify, fmt.Errorf("vdi: %w", err)
	}
	sum := h.Sum(nil)
	return uuidFrom(sum, "create"), uuidFrom(sum, "modify"), nil
}

// uuidFrom turns a content digest and a label into a version-5-style UUID
// in VirtualBox's RTUUID byte order, whose first three fields are
// little-endian: the version nibble is the high nibble of byte 7.
func uuidFrom(sum []byte, label string) [16]byte {
	s := sha256.Sum256(append([]byte(label+"\x00"), sum...))
	var u [16]byte
	copy(u[:], s[:16])
	u[7] = u[7]&0x0f | 0x50 // time_hi_and_version, little-endian
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u
}
