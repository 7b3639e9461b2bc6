package gpt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"unicode/utf16"
)

// Layout constants of the tables this package writes.
const (
	// SectorSize is the logical block size.
	SectorSize = 512
	// HeaderLBA is where the primary header lives.
	HeaderLBA = 1
	// EntriesLBA is where the primary partition entry array starts.
	EntriesLBA = 2
	// NumEntries is the size of the entry array: the spec reserves at
	// least 16 KiB for it, 128 entries of 128 bytes.
	NumEntries = 128
	// EntrySize is the size of one EFI_PARTITION_ENTRY.
	EntrySize = 128
	// EntriesSectors is how many sectors one entry array takes.
	EntriesSectors = NumEntries * EntrySize / SectorSize
	// FirstUsableLBA is the first sector after the primary table.
	FirstUsableLBA = EntriesLBA + EntriesSectors
	// HeaderSize is the size of EFI_PARTITION_TABLE_HEADER.
	HeaderSize = 92
	// Revision is the header revision of UEFI 2.x, 1.0.
	Revision = 0x00010000
	// BootCodeSize is how much boot code the protective MBR holds.
	BootCodeSize = 440
	// MinSectors is the smallest disk that holds both tables and one
	// usable sector.
	MinSectors = FirstUsableLBA + 1 + EntriesSectors + 1
)

// Signature is the header's "EFI PART".
var Signature = [8]byte{'E', 'F', 'I', ' ', 'P', 'A', 'R', 'T'}

// Errors that this package returns, wrapped with details.
var (
	ErrLayout  = errors.New("gpt: bad partition layout")
	ErrNoTable = errors.New("gpt: no valid GUID partition table")
)

// GUID is a GUID in its on-disk byte order: the first three fields
// little-endian, the last two as they read.
type GUID [16]byte

// ESP is the partition type of an EFI system partition.
var ESP = MustParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")

// ParseGUID parses the textual form, such as ESP's
// "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", into on-disk order.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("gpt: GUID %q is not of the form XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX", s)
	}
	b, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
	if err != nil {
		return g, fmt.Errorf("gpt: GUID %q: %w", s, err)
	}
	copy(g[:], b)
	slices.Reverse(g[0:4])
	slices.Reverse(g[4:6])
	slices.Reverse(g[6:8])
	return g, nil
}

// MustParseGUID is ParseGUID for constants; it panics on a bad GUID.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the textual form in upper case, as sgdisk prints it.
func (g GUID) String() string {
	b := g
	slices.Reverse(b[0:4])
	slices.Reverse(b[4:6])
	slices.Reverse(b[6:8])
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// HashGUID derives a GUID from data: the first 16 bytes of its SHA-256
// as an RFC 9562 version 8 UUID, the name-based form that the RFC's
// appendix B.2 gives. Equal data give equal GUIDs.
func HashGUID(data ...[]byte) GUID {
	h := sha256.New()
	for _, d := range data {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(d)))
		h.Write(n[:])
		h.Write(d)
	}
	var u [16]byte // in RFC (big-endian) order
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0F | 0x80 // version 8
	u[8] = u[8]&0x3F | 0x80 // variant 10
	return MustParseGUID(fmt.Sprintf("%X-%X-%X-%X-%X", u[0:4], u[4:6], u[6:8], u[8:10], u[10:]))
}

// Partition is one partition of a table.
type Partition struct {
	// Type is the partition type, such as ESP.
	Type GUID
	// GUID is the partition's own unique GUID.
	GUID GUID
	// FirstLBA and LastLBA are its first and last sector, inclusive.
	FirstLBA, LastLBA uint64
	// Attributes are the entry's attribute bits (0 for none).
	Attributes uint64
	// Name is the partition's name, at most 36 UTF-16 code units.
	Name string
}

// Offset is the partition's first byte.
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * SectorSize }

// Size is the partition's size in bytes.
func (p Partition) Size() int64 { return int64(p.LastLBA-p.FirstLBA+1) * SectorSize }

// Table is a GUID partition table.
type Table struct {
	// DiskGUID identifies the disk.
	DiskGUID GUID
	// Partitions are the used entries, in entry order.
	Partitions []Partition
}

// Find returns the first partition of the given type.
func (t *Table) Find(typ GUID) (Partition, bool) {
	for _, p := range t.Partitions {
		if p.Type == typ {
			return p, true
		}
	}
	return Partition{}, false
}

// Header mirrors EFI_PARTITION_TABLE_HEADER (UEFI 2.10, table 5-5). The
// rest of its sector is zero.
type Header struct {
	Signature                [8]byte
	Revision                 uint32
	HeaderSize               uint32
	HeaderCRC32              uint32
	Reserved                 uint32
	MyLBA                    uint64
	AlternateLBA             uint64
	FirstUsableLBA           uint64
	LastUsableLBA            uint64
	DiskGUID                 GUID
	PartitionEntryLBA        uint64
	NumberOfPartitionEntries uint32
	SizeOfPartitionEntry     uint32
	PartitionEntryArrayCRC32 uint32
}

// Entry mirrors EFI_PARTITION_ENTRY (UEFI 2.10, table 5-6).
type Entry struct {
	PartitionTypeGUID   GUID
	UniquePartitionGUID GUID
	StartingLBA         uint64
	EndingLBA           uint64
	Attributes          uint64
	PartitionName       [36]uint16
}

// MBR mirrors LEGACY_MBR (UEFI 2.10, table 5-1), here as the protective
// MBR of table 5-3.
type MBR struct {
	BootCode               [BootCodeSize]byte
	UniqueMBRDiskSignature uint32 // unused by a protective MBR: zero
	Unknown                uint16
	PartitionRecord        [4]MBRPartitionRecord
	Signature              uint16 // 0xAA55
}

// MBRPartitionRecord mirrors the legacy MBR partition record (UEFI 2.10,
// table 5-2).
type MBRPartitionRecord struct {
	BootIndicator uint8
	StartingCHS   [3]byte
	OSType        uint8
	EndingCHS     [3]byte
	StartingLBA   uint32
	SizeInLBA     uint32
}

// Protective MBR values (UEFI 2.10, table 5-4).
const (
	// OSTypeProtective is the record type that covers a GPT disk.
	OSTypeProtective = 0xEE
	// MBRSignature is 0x55 0xAA at offset 510, read little-endian.
	MBRSignature = 0xAA55
)

// Build returns the bytes of the table on a disk of size bytes: head is
// LBA 0 up to the first usable LBA (the protective MBR with bootCode,
// the primary header and entries), tail is the backup entries and header
// that end the disk, to be placed at size-len(tail).
func (t *Table) Build(size int64, bootCode []byte) (head, tail []byte, err error) {
	if size%SectorSize != 0 || size/SectorSize < MinSectors {
		return nil, nil, fmt.Errorf("%w: a %d-byte disk is not a multiple of 512 bytes of at least %d sectors", ErrLayout, size, MinSectors)
	}
	if len(bootCode) > BootCodeSize {
		return nil, nil, fmt.Errorf("%w: %d bytes of boot code do not fit the protective MBR's %d", ErrLayout, len(bootCode), BootCodeSize)
	}
	sectors := uint64(size / SectorSize)
	lastUsable := sectors - 1 - EntriesSectors - 1
	if len(t.Partitions) > NumEntries {
		return nil, nil, fmt.Errorf("%w: %d partitions, at most %d", ErrLayout, len(t.Partitions), NumEntries)
	}
	entries := make([]byte, NumEntries*EntrySize)
	for i, p := range t.Partitions {
		if p.Type == (GUID{}) {
			return nil, nil, fmt.Errorf("%w: partition %d has no type", ErrLayout, i+1)
		}
		if p.FirstLBA < FirstUsableLBA || p.LastLBA > lastUsable || p.FirstLBA > p.LastLBA {
			return nil, nil, fmt.Errorf("%w: partition %d spans LBA %d-%d, outside %d-%d", ErrLayout, i+1, p.FirstLBA, p.LastLBA, FirstUsableLBA, lastUsable)
		}
		for j, q := range t.Partitions[:i] {
			if p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA {
				return nil, nil, fmt.Errorf("%w: partitions %d and %d overlap", ErrLayout, j+1, i+1)
			}
		}
		e := Entry{PartitionTypeGUID: p.Type, UniquePartitionGUID: p.GUID, StartingLBA: p.FirstLBA, EndingLBA: p.LastLBA, Attributes: p.Attributes}
		name := utf16.Encode([]rune(p.Name))
		if len(name) > len(e.PartitionName) {
			return nil, nil, fmt.Errorf("%w: partition %d's name %q is longer than 36 UTF-16 units", ErrLayout, i+1, p.Name)
		}
		copy(e.PartitionName[:], name)
		put(entries[i*EntrySize:], &e)
	}

	primary := Header{
		Signature:                Signature,
		Revision:                 Revision,
		HeaderSize:               HeaderSize,
		MyLBA:                    HeaderLBA,
		AlternateLBA:             sectors - 1,
		FirstUsableLBA:           FirstUsableLBA,
		LastUsableLBA:            lastUsable,
		DiskGUID:                 t.DiskGUID,
		PartitionEntryLBA:        EntriesLBA,
		NumberOfPartitionEntries: NumEntries,
		SizeOfPartitionEntry:     EntrySize,
		PartitionEntryArrayCRC32: crc32.ChecksumIEEE(entries),
	}
	backup := primary
	backup.MyLBA, backup.AlternateLBA = primary.AlternateLBA, primary.MyLBA
	backup.PartitionEntryLBA = lastUsable + 1

	head = make([]byte, FirstUsableLBA*SectorSize)
	mbr := MBR{Signature: MBRSignature}
	copy(mbr.BootCode[:], bootCode)
	mbr.PartitionRecord[0] = MBRPartitionRecord{
		StartingCHS: [3]byte{0x00, 0x02, 0x00}, // head 0, sector 2, cylinder 0: LBA 1
		OSType:      OSTypeProtective,
		EndingCHS:   chs(sectors - 1),
		StartingLBA: HeaderLBA,
		SizeInLBA:   uint32(min(sectors-1, 0xFFFFFFFF)),
	}
	put(head, &mbr)
	putHeader(head[HeaderLBA*SectorSize:], primary)
	copy(head[EntriesLBA*SectorSize:], entries)

	tail = make([]byte, (EntriesSectors+1)*SectorSize)
	copy(tail, entries)
	putHeader(tail[EntriesSectors*SectorSize:], backup)
	return head, tail, nil
}

// putHeader writes h with its CRC, computed over the header with the CRC
// field zero.
func putHeader(b []byte, h Header) {
	h.HeaderCRC32 = 0
	put(b, &h)
	h.HeaderCRC32 = crc32.ChecksumIEEE(b[:HeaderSize])
	put(b, &h)
}

// put encodes a fixed-size structure little-endian at the start of b.
func put(b []byte, v any) {
	var w bytes.Buffer
	if err := binary.Write(&w, binary.LittleEndian, v); err != nil {
		panic(err) // only fixed-size types reach here
	}
	copy(b, w.Bytes())
}

// chs is the MBR's cylinder-head-sector address of lba in the usual
// 255-head, 63-sector translation, or the 0xFE 0xFF 0xFF that stands for
// "beyond CHS" (1023/254/63) when lba is past it.
func chs(lba uint64) [3]byte {
	const heads, sectors = 255, 63
	c, h, s := lba/(heads*sectors), lba/sectors%heads, lba%sectors+1
	if c > 1023 {
		return [3]byte{0xFE, 0xFF, 0xFF}
	}
	return [3]byte{byte(h), byte(s) | byte(c>>8)<<6, byte(c)}
}

// maxEntryArray bounds the entry array Read accepts, so a hostile header
// cannot make it allocate much: 16,384 entries of 128 bytes.
const maxEntryArray = 2 << 20

// Read reads the table of a size-byte disk: the primary header at LBA 1,
// or the backup in the last sector when the primary is damaged. Both
// CRCs must match.
func Read(r io.ReaderAt, size int64) (*Table, error) {
	if size/SectorSize < MinSectors {
		return nil, fmt.Errorf("%w: the disk has %d sectors, fewer than %d", ErrNoTable, size/SectorSize, MinSectors)
	}
	t, err := readAt(r, size, HeaderLBA)
	if err == nil {
		return t, nil
	}
	if b, berr := readAt(r, size, uint64(size/SectorSize-1)); berr == nil {
		return b, nil
	}
	return nil, err
}

// readAt reads and checks the header at lba and its entry array.
func readAt(r io.ReaderAt, size int64, lba uint64) (*Table, error) {
	sectors := uint64(size / SectorSize)
	sec := make([]byte, SectorSize)
	if _, err := r.ReadAt(sec, int64(lba)*SectorSize); err != nil && err != io.EOF {
		return nil, fmt.Errorf("gpt: read LBA %d: %w", lba, err)
	}
	var h Header
	if err := binary.Read(bytes.NewReader(sec), binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("gpt: decode header: %w", err)
	}
	switch {
	case h.Signature != Signature:
		return nil, fmt.Errorf("%w: no \"EFI PART\" signature at LBA %d", ErrNoTable, lba)
	case h.HeaderSize < HeaderSize || h.HeaderSize > SectorSize:
		return nil, fmt.Errorf("%w: header size %d at LBA %d, want 92 to 512", ErrNoTable, h.HeaderSize, lba)
	case h.MyLBA != lba:
		return nil, fmt.Errorf("%w: the header at LBA %d says it is at LBA %d", ErrNoTable, lba, h.MyLBA)
	}
	crc := h.HeaderCRC32
	clear(sec[16:20])
	if got := crc32.ChecksumIEEE(sec[:h.HeaderSize]); got != crc {
		return nil, fmt.Errorf("%w: header CRC at LBA %d is %#08x, the header sums to %#08x", ErrNoTable, lba, crc, got)
	}
	n := uint64(h.NumberOfPartitionEntries) * uint64(h.SizeOfPartitionEntry)
	if h.SizeOfPartitionEntry < EntrySize || h.SizeOfPartitionEntry%EntrySize != 0 || n > maxEntryArray ||
		h.PartitionEntryLBA >= sectors || h.PartitionEntryLBA+(n+SectorSize-1)/SectorSize > sectors {
		return nil, fmt.Errorf("%w: entry array of %d entries of %d bytes at LBA %d does not fit the disk", ErrNoTable, h.NumberOfPartitionEntries, h.SizeOfPartitionEntry, h.PartitionEntryLBA)
	}
	entries := make([]byte, n)
	if _, err := r.ReadAt(entries, int64(h.PartitionEntryLBA)*SectorSize); err != nil && err != io.EOF {
		return nil, fmt.Errorf("gpt: read entries: %w", err)
	}
	if got := crc32.ChecksumIEEE(entries); got != h.PartitionEntryArrayCRC32 {
		return nil, fmt.Errorf("%w: entry array CRC is %#08x, the entries sum to %#08x", ErrNoTable, h.PartitionEntryArrayCRC32, got)
	}
	// The usable range lies between the two tables, each at least the
	// 16 KiB of entries the spec reserves, and clear of this entry array.
	entryEnd := h.PartitionEntryLBA + (n+SectorSize-1)/SectorSize // exclusive
	if h.FirstUsableLBA < FirstUsableLBA || h.LastUsableLBA > sectors-FirstUsableLBA || h.FirstUsableLBA > h.LastUsableLBA ||
		(h.PartitionEntryLBA <= h.LastUsableLBA && h.FirstUsableLBA < entryEnd) {
		return nil, fmt.Errorf("%w: usable LBAs %d-%d overlap the tables of a %d-sector disk", ErrNoTable, h.FirstUsableLBA, h.LastUsableLBA, sectors)
	}
	t := &Table{DiskGUID: h.DiskGUID}
	for i := range uint64(h.NumberOfPartitionEntries) {
		var e Entry
		b := entries[i*uint64(h.SizeOfPartitionEntry):]
		if err := binary.Read(bytes.NewReader(b[:EntrySize]), binary.LittleEndian, &e); err != nil {
			return nil, fmt.Errorf("gpt: decode entry %d: %w", i+1, err)
		}
		if e.PartitionTypeGUID == (GUID{}) {
			continue // unused
		}
		if e.StartingLBA < h.FirstUsableLBA || e.EndingLBA > h.LastUsableLBA || e.StartingLBA > e.EndingLBA {
			return nil, fmt.Errorf("%w: entry %d spans LBA %d-%d, outside the usable %d-%d", ErrNoTable, i+1, e.StartingLBA, e.EndingLBA, h.FirstUsableLBA, h.LastUsableLBA)
		}
		name := e.PartitionName[:]
		if k := slices.Index(name, 0); k >= 0 {
			name = name[:k]
		}
		t.Partitions = append(t.Partitions, Partition{
			Type: e.PartitionTypeGUID, GUID: e.UniquePartitionGUID,
			FirstLBA: e.StartingLBA, LastLBA: e.EndingLBA, Attributes: e.Attributes,
			Name: string(utf16.Decode(name)),
		})
	}
	return t, nil
}
