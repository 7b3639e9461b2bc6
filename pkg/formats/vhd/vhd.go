package vhd

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/blockhash"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/table"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
)

// Type is the format's name. QEMU's driver for it is "vpc".
const Type = "vhd"

// Disk types, the values of Options.Type.
const (
	Dynamic = "dynamic"
	Fixed   = "fixed"
)

// Types lists the disk types Write accepts, the default first.
var Types = []string{Dynamic, Fixed}

// BlockSize is the dynamic disk's block size, the spec's default.
const BlockSize = 2 << 20

// MaxSize is the largest virtual size QEMU and Hyper-V open: 2040 GiB.
const MaxSize = 0xff000000 * sectorSize

// Values of the footer and dynamic disk header.
const (
	sectorSize   = 512
	footerSize   = 512
	headerSize   = 1024
	footerCookie = "conectix"
	headerCookie = "cxsparse"
	// featuresReserved is the "reserved" feature bit, which the spec
	// says must always be set.
	featuresReserved = 0x2
	// formatVersion is 1.0, for both structures.
	formatVersion = 0x00010000
	// creatorApp "qem2" makes QEMU read the current size; see doc.go.
	creatorApp = "qem2"
	// creatorVersion is tinyvm-oci's layout version, 1.0.
	creatorVersion = 0x00010000
	creatorHostOS  = "Wi2k"
	// The maximum CHS geometry, which also tells QEMU to use the
	// current size.
	maxCylinders = 65535
	maxHeads     = 16
	maxSectors   = 255
	// Disk type values in the footer.
	typeFixed        = 2
	typeDynamic      = 3
	typeDifferencing = 4
	// noOffset is "no next structure".
	noOffset = math.MaxUint64
	// unallocated is a BAT entry for a block that is not stored.
	unallocated = 0xFFFFFFFF
	// epoch is the VHD time stamp's zero: 2000-01-01 00:00:00 UTC.
	epoch = 946684800
)

// Offsets in a dynamic VHD as Write lays it out.
const (
	headerOffset = footerSize                // dynamic disk header
	batOffset    = headerOffset + headerSize // block allocation table
	// bitmapSize is one bit per sector of a block, in whole sectors.
	bitmapSize = (BlockSize/sectorSize/8 + sectorSize - 1) / sectorSize * sectorSize
)

// Errors Write returns, wrapped with details.
var (
	ErrTooLarge    = errors.New("vhd: disk too large")
	ErrUnknownType = errors.New("vhd: unknown type")
)

// Options choose the kind of VHD.
type Options struct {
	// Type is Dynamic (the default when empty) or Fixed.
	Type string
	// Time is recorded as the footer's time stamp. Times before 2000
	// record 0.
	Time time.Time
}

// Footer is the 512-byte hard disk footer, field by field.
type Footer struct {
	Cookie          [8]byte   // "conectix"
	Features        uint32    // 2: reserved bit set
	FormatVersion   uint32    // 0x00010000
	DataOffset      uint64    // dynamic header offset; all ones when fixed
	TimeStamp       uint32    // seconds since 2000-01-01 UTC
	CreatorApp      [4]byte   // e.g. "qem2"
	CreatorVersion  uint32    // major<<16 | minor
	CreatorHostOS   [4]byte   // "Wi2k"
	OriginalSize    uint64    // size at creation, bytes
	CurrentSize     uint64    // virtual size, bytes
	Cylinders       uint16    // disk geometry
	Heads           uint8     //
	SectorsPerTrack uint8     //
	DiskType        uint32    // 2 fixed, 3 dynamic, 4 differencing
	Checksum        uint32    // ^sum of the other bytes
	UniqueID        [16]byte  // identifies the disk
	SavedState      uint8     // 1 while a VM's saved state is in it
	Reserved        [427]byte // zero
}

// ParentLocator is one of the dynamic header's eight locator entries,
// used only by differencing disks.
type ParentLocator struct {
	PlatformCode       uint32
	PlatformDataSpace  uint32
	PlatformDataLength uint32
	Reserved           uint32
	PlatformDataOffset uint64
}

// DynamicHeader is the 1,024-byte dynamic disk header, field by field.
type DynamicHeader struct {
	Cookie            [8]byte   // "cxsparse"
	DataOffset        uint64    // next structure: all ones
	TableOffset       uint64    // BAT offset in the file
	HeaderVersion     uint32    // 0x00010000
	MaxTableEntries   uint32    // BAT entries
	BlockSize         uint32    // data bytes per block, a power of two
	Checksum          uint32    // ^sum of the other bytes
	ParentUniqueID    [16]byte  // differencing disks only
	ParentTimeStamp   uint32    // differencing disks only
	Reserved1         uint32    // zero
	ParentUnicodeName [512]byte // differencing disks only, UTF-16BE
	ParentLocators    [8]ParentLocator
	Reserved2         [256]byte // zero
}

// checksum is the spec's: the one's complement of the byte sum.
func checksum(b []byte) uint32 {
	var s uint32
	for _, c := range b {
		s += uint32(c)
	}
	return ^s
}

// marshal encodes v (a Footer or DynamicHeader) and fills in its checksum
// at off.
func marshal(v any, size, off int) []byte {
	b := make([]byte, size)
	_, _ = binary.Encode(b, binary.BigEndian, v)
	binary.BigEndian.PutUint32(b[off:], 0)
	binary.BigEndian.PutUint32(b[off:], checksum(b))
	return b
}

// Checksum field offsets.
const (
	footerChecksumOffset = 64
	headerChecksumOffset = 36
)

// Write streams the virtual disk d to w as a VHD of the type o asks for.
func Write(w io.Writer, d disk.Disk, o Options) error {
	typ := o.Type
	if typ == "" {
		typ = Dynamic
	}
	if typ != Dynamic && typ != Fixed {
		return fmt.Errorf("%w %q: use dynamic or fixed", ErrUnknownType, o.Type)
	}
	size := d.Size()
	if size > MaxSize {
		return fmt.Errorf("%w: %d bytes, the maximum is 2040 GiB (%d bytes)", ErrTooLarge, size, int64(MaxSize))
	}
	used, err := disk.Blocks(d, BlockSize)
	if err != nil {
		return fmt.Errorf("vhd: %w", err)
	}
	id, err := uniqueID(d, used, typ)
	if err != nil {
		return err
	}
	f := Footer{
		Features:        featuresReserved,
		FormatVersion:   formatVersion,
		DataOffset:      noOffset,
		TimeStamp:       stamp(o.Time),
		CreatorVersion:  creatorVersion,
		OriginalSize:    uint64(size),
		CurrentSize:     uint64(size),
		Cylinders:       maxCylinders,
		Heads:           maxHeads,
		SectorsPerTrack: maxSectors,
		DiskType:        typeFixed,
		UniqueID:        id,
	}
	copy(f.Cookie[:], footerCookie)
	copy(f.CreatorApp[:], creatorApp)
	copy(f.CreatorHostOS[:], creatorHostOS)
	if typ == Fixed {
		footer := marshal(&f, footerSize, footerChecksumOffset)
		if _, err := raw.Write(w, d); err != nil {
			return fmt.Errorf("vhd: %w", err)
		}
		if _, err := w.Write(footer); err != nil {
			return fmt.Errorf("vhd: write footer: %w", err)
		}
		return nil
	}
	f.DataOffset = headerOffset
	f.DiskType = typeDynamic
	footer := marshal(&f, footerSize, footerChecksumOffset)

	entries := (size + BlockSize - 1) / BlockSize
	batSize := align.Up(entries*4, sectorSize)
	h := DynamicHeader{
		DataOffset:      noOffset,
		TableOffset:     batOffset,
		HeaderVersion:   formatVersion,
		MaxTableEntries: uint32(entries),
		BlockSize:       BlockSize,
	}
	copy(h.Cookie[:], headerCookie)

	if _, err := w.Write(footer); err != nil {
		return fmt.Errorf("vhd: write footer copy: %w", err)
	}
	if _, err := w.Write(marshal(&h, headerSize, headerChecksumOffset)); err != nil {
		return fmt.Errorf("vhd: write dynamic header: %w", err)
	}
	dataStart := int64(batOffset) + batSize
	if err := writeBAT(w, batSize, used, dataStart); err != nil {
		return fmt.Errorf("vhd: write BAT: %w", err)
	}
	bitmap := make([]byte, bitmapSize)
	for i := range bitmap {
		bitmap[i] = 0xFF // every sector present
	}
	for _, b := range used {
		if _, err := w.Write(bitmap); err != nil {
			return fmt.Errorf("vhd: write block %d: %w", b, err)
		}
		blk := disk.Section(d, b*BlockSize, BlockSize)
		if _, err := raw.Write(w, blk); err != nil {
			return fmt.Errorf("vhd: write block %d: %w", b, err)
		}
	}
	if _, err := w.Write(footer); err != nil {
		return fmt.Errorf("vhd: write footer: %w", err)
	}
	return nil
}

// writeBAT streams the BAT: the k-th stored block's entry is the sector
// of its bitmap, dataStart + k blocks; all other entries and the padding
// are 0xFFFFFFFF.
func writeBAT(w io.Writer, batSize int64, used []int64, dataStart int64) error {
	next := 0 // index into used
	return table.WriteUint32(w, batSize/4, binary.BigEndian, func(i int64) uint32 {
		v := uint32(unallocated)
		if next < len(used) && used[next] == i {
			v = uint32((dataStart + int64(next)*(bitmapSize+BlockSize)) / sectorSize)
			next++
		}
		return v
	})
}

// stamp converts t to VHD seconds since 2000, clamped to the field.
func stamp(t time.Time) uint32 {
	s := t.Unix() - epoch
	if t.IsZero() || s < 0 {
		return 0
	}
	return uint32(min(s, math.MaxUint32))
}

// uniqueID derives the footer's unique ID from SHA-256 of the disk type,
// size and the contents of its non-zero blocks, as a version-5-style UUID
// in RFC 4122 byte order.
func uniqueID(d disk.Disk, used []int64, typ string) ([16]byte, error) {
	var u [16]byte
	h := sha256.New()
	var n [8]byte
	h.Write([]byte("tinyvm-oci vhd " + typ + "\x00"))
	binary.BigEndian.PutUint64(n[:], uint64(d.Size()))
	h.Write(n[:])
	if err := blockhash.Write(h, d, used, BlockSize, binary.BigEndian); err != nil {
		return u, fmt.Errorf("vhd: %w", err)
	}
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u, nil
}
