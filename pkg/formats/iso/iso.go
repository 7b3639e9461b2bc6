package iso

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/gpt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
)

// Type is the format's name.
const Type = "iso"

// Boot modes: the El Torito emulation of the initial entry.
const (
	// BootNoEmul loads the 512-byte boot sector directly (the default).
	BootNoEmul = "noemul"
	// BootFloppy emulates a 1.44 MB floppy whose first sector is the boot
	// sector.
	BootFloppy = "floppy"
)

// Boots lists the valid values of Options.Boot.
var Boots = []string{BootNoEmul, BootFloppy}

// VolumeID is the PVD's default volume identifier. ECMA-119 7.4.1 allows
// only d-characters (A-Z, 0-9, _) there, so the project name's hyphens
// become underscores.
const VolumeID = "512_BYTE_VM"

// MaxVolumeLabel is the length of the PVD's volume identifier field.
const MaxVolumeLabel = pvdIDLen

// ApplicationID is the PVD's application identifier (a-characters).
const ApplicationID = "TINYVM-OCI"

// Errors that Write returns, wrapped with details.
var (
	ErrBoot        = errors.New("iso: unknown boot mode")
	ErrTime        = errors.New("iso: time out of range for ISO 9660 dates (1900-2155)")
	ErrVolumeLabel = errors.New("iso: bad volume label")
)

// Options choose the variant.
type Options struct {
	// Boot is BootNoEmul (default, "" too) or BootFloppy.
	Boot string
	// Time is recorded as every creation and modification date, in UTC.
	// The zero value records the dates as "not specified".
	Time time.Time
	// VolumeLabel is the PVD's volume identifier, VolumeID when empty:
	// what blkid, cloud-init and the disks probe read, such as "cidata"
	// for a NoCloud seed or "config-2" for a config drive. Those are
	// lowercase or hyphenated, outside ECMA-119's d-characters, so any
	// printable ASCII is taken, as xorriso -volid does.
	VolumeLabel string
}

// Validate reports an unknown boot mode or a time ISO 9660 cannot record.
func (o Options) Validate() error {
	switch o.Boot {
	case "", BootNoEmul, BootFloppy:
	default:
		return fmt.Errorf("%w %q: use %s or %s", ErrBoot, o.Boot, BootNoEmul, BootFloppy)
	}
	if !o.Time.IsZero() {
		if y := o.Time.UTC().Year(); y < 1900 || y > 2155 {
			return fmt.Errorf("%w: %s", ErrTime, o.Time.UTC().Format(time.RFC3339))
		}
	}
	return checkVolumeLabel(o.VolumeLabel)
}

// checkVolumeLabel refuses what the space-padded 32-byte field cannot
// give back: non-printable bytes, more than 32 bytes, and spaces at
// either end, which readers trim.
func checkVolumeLabel(l string) error {
	ok := len(l) <= MaxVolumeLabel && strings.TrimSpace(l) == l
	for i := 0; ok && i < len(l); i++ {
		ok = l[i] >= ' ' && l[i] <= '~'
	}
	if !ok {
		return fmt.Errorf("%w %q: use 1 to %d printable ASCII characters, no space at either end, such as cidata or config-2", ErrVolumeLabel, l, MaxVolumeLabel)
	}
	return nil
}

func (o Options) volumeLabel() string {
	if o.VolumeLabel == "" {
		return VolumeID
	}
	return o.VolumeLabel
}

// Sizes fixed by the standards.
const (
	// BlockSize is the logical block (sector) size of a CD-ROM; El Torito's
	// relative block addresses count these too.
	BlockSize = 2048
	// systemAreaBlocks is the system area before the volume descriptors
	// (ECMA-119 6.2.1): 16 blocks, free for any use.
	systemAreaBlocks = 16
	// systemAreaSize is the system area in bytes, 32 KiB: the hybrid
	// hard disk's LBA 0-63, which hold the disk's own.
	systemAreaSize = systemAreaBlocks * BlockSize
	// bootSectorSize is what the BIOS loads from a hard disk or floppy.
	bootSectorSize = disk.SectorSize
	// loadUnit is the unit of the initial entry's sector count: a
	// "virtual sector" of 512 bytes (El Torito 2.0, "Sector Count").
	loadUnit = 512
	// floppySize is a 1.44 MB floppy: 80 tracks, 2 heads, 18 sectors.
	floppySize = 80 * 2 * 18 * 512
)

// Block numbers of the layout (see the package comment).
const (
	pvdLBA        = 16
	bootRecordLBA = 17
	terminatorLBA = 18
	lPathLBA      = 19
	mPathLBA      = 20
	rootLBA       = 21
	catalogLBA    = 22
	imageLBA      = 23
	// metaBlocks is every block before the boot image.
	metaBlocks = imageLBA
)

// Volume descriptor header (ECMA-119 8.1), common to every descriptor.
const (
	vdTypeOffset    = 0 // volume descriptor type
	vdIDOffset      = 1 // standard identifier "CD001"
	vdVersionOffset = 6 // volume descriptor version, 1
	standardID      = "CD001"
	vdVersion       = 1
)

// Volume descriptor types (ECMA-119 8.1.1).
const (
	vdTypeBootRecord = 0
	vdTypePrimary    = 1
	vdTypeTerminator = 255
)

// Primary volume descriptor field offsets (ECMA-119 8.4). Numeric fields
// marked "both" are recorded twice, little-endian then big-endian (7.2.3,
// 7.3.3).
const (
	pvdSystemIDOffset        = 8   // a-characters, 32 bytes
	pvdVolumeIDOffset        = 40  // d-characters, 32 bytes
	pvdVolumeSpaceOffset     = 80  // both, 32-bit: blocks in the volume
	pvdSetSizeOffset         = 120 // both, 16-bit: volume set size
	pvdSequenceOffset        = 124 // both, 16-bit: volume sequence number
	pvdBlockSizeOffset       = 128 // both, 16-bit: logical block size
	pvdPathTableSizeOffset   = 132 // both, 32-bit: path table bytes
	pvdLPathOffset           = 140 // LE 32-bit: type L path table LBA
	pvdOptLPathOffset        = 144 // LE 32-bit: optional type L table, 0
	pvdMPathOffset           = 148 // BE 32-bit: type M path table LBA
	pvdOptMPathOffset        = 152 // BE 32-bit: optional type M table, 0
	pvdRootRecordOffset      = 156 // 34-byte root directory record
	pvdVolumeSetIDOffset     = 190 // d-characters, 128 bytes
	pvdPublisherIDOffset     = 318 // a-characters, 128 bytes
	pvdPreparerIDOffset      = 446 // a-characters, 128 bytes
	pvdApplicationIDOffset   = 574 // a-characters, 128 bytes
	pvdCopyrightFileOffset   = 702 // 37 bytes
	pvdAbstractFileOffset    = 739 // 37 bytes
	pvdBiblioFileOffset      = 776 // 37 bytes
	pvdCreationDateOffset    = 813 // 17-byte date and time
	pvdModificationOffset    = 830
	pvdExpirationOffset      = 847
	pvdEffectiveOffset       = 864
	pvdFileStructureOffset   = 881 // file structure version, 1
	pvdApplicationUseOffset  = 883 // 512 bytes, unused
	pvdRootRecordSize        = 34
	fileStructureVersion     = 1
	pvdIDLen                 = 32
	pvdLongIDLen             = 128
	pvdFileIDLen             = 37
	pvdDateLen               = 17
	pvdDateDigits            = 16
	pvdDateNotSpecifiedDigit = '0'
)

// El Torito boot record volume descriptor (El Torito 2.0, figure 7).
const (
	brSystemIDOffset = 7    // boot system identifier, 32 bytes, NUL-padded
	brCatalogOffset  = 0x47 // LE 32-bit: absolute LBA of the boot catalog
	// elToritoID must be padded with NULs, not spaces: SeaBIOS compares
	// the identifier up to its NUL.
	elToritoID = "EL TORITO SPECIFICATION"
)

// Directory record field offsets (ECMA-119 9.1).
const (
	drLengthOffset     = 0  // length of the record
	drExtAttrOffset    = 1  // extended attribute record length, 0
	drExtentOffset     = 2  // both, 32-bit: LBA of the extent
	drDataLenOffset    = 10 // both, 32-bit: bytes in the extent
	drDateOffset       = 18 // 7-byte recording date and time
	drFlagsOffset      = 25 // file flags
	drUnitSizeOffset   = 26 // file unit size, 0 (not interleaved)
	drGapOffset        = 27 // interleave gap size, 0
	drSequenceOffset   = 28 // both, 16-bit: volume sequence number
	drIDLenOffset      = 32 // length of the file identifier
	drIDOffset         = 33 // file identifier
	drFlagDirectory    = 0x02
	drDateLen          = 7
	drFixedLen         = 33
	pathRecordFixedLen = 8
)

// Boot catalog entries (El Torito 2.x), 32 bytes each.
const (
	catalogEntrySize = 32

	// Validation entry (El Torito 2.1).
	valHeaderOffset   = 0  // header ID, 1
	valPlatformOffset = 1  // platform ID
	valIDStringOffset = 4  // manufacturer ID string, 24 bytes
	valChecksumOffset = 28 // LE 16-bit: makes the 16 words sum to 0
	valKeyOffset      = 30 // 0x55 0xAA
	valHeaderID       = 1
	platformX86       = 0
	valIDStringLen    = 24

	// Initial/default entry (El Torito 2.2), at catalog offset 32.
	initOffset          = catalogEntrySize
	initIndicatorOffset = 0 // 0x88 bootable, 0x00 not bootable
	initMediaOffset     = 1 // boot media type
	initSegmentOffset   = 2 // LE 16-bit: load segment, 0 = 0x7C0
	initSystemOffset    = 4 // system type (partition type for hard disk)
	initCountOffset     = 6 // LE 16-bit: 512-byte sectors to load
	initLBAOffset       = 8 // LE 32-bit: LBA of the boot image
	bootable            = 0x88
	notBootable         = 0x00
)

// Section header and section entry (El Torito 2.4, 2.5): the EFI entry
// follows the initial entry, at catalog offsets 64 and 96.
const (
	sectionHeaderOffset  = 2 * catalogEntrySize
	sectionEntryOffset   = 3 * catalogEntrySize
	shIndicatorOffset    = 0 // 0x90 more headers follow, 0x91 final header
	shPlatformOffset     = 1 // platform ID of the entries that follow
	shCountOffset        = 2 // LE 16-bit: section entries that follow
	shIDStringOffset     = 4 // 28 bytes
	shIDStringLen        = 28
	finalSectionHeader   = 0x91
	platformEFI          = 0xEF
	efiImageName         = "EFI.IMG;1"
	maxEFIImageSectors   = 0xFFFF // the entry's 16-bit sector count
	efiImageSectorFactor = loadUnit
)

// Boot media types (El Torito 2.2, "Boot media type").
const (
	mediaNoEmulation = 0
	mediaFloppy12    = 1
	mediaFloppy144   = 2
	mediaFloppy288   = 3
	mediaHardDisk    = 4
)

// mbrSignatureOffset is where a boot sector ends with 0x55 0xAA.
const mbrSignatureOffset = 510

// mbrTableOffset is where an MBR's partition table starts.
const mbrTableOffset = 446

// primaryVolumeDescriptor holds the PVD fields this package sets
// (ECMA-119 8.4); every other field is spaces or zero.
type primaryVolumeDescriptor struct {
	SystemID      string    // 8: a-characters
	VolumeID      string    // 40: d-characters
	VolumeSpace   uint32    // 80: blocks in the volume
	SetSize       uint16    // 120: 1
	Sequence      uint16    // 124: 1
	BlockSize     uint16    // 128: 2048
	PathTableSize uint32    // 132: bytes in each path table
	LPathLBA      uint32    // 140: type L path table
	MPathLBA      uint32    // 148: type M path table
	Root          dirRecord // 156: the root directory
	ApplicationID string    // 574: a-characters
	Created       time.Time // 813, also 830 (modification)
}

func (p primaryVolumeDescriptor) marshal(b []byte) {
	putHeader(b, vdTypePrimary)
	putString(b[pvdSystemIDOffset:], p.SystemID, pvdIDLen, ' ')
	putString(b[pvdVolumeIDOffset:], p.VolumeID, pvdIDLen, ' ')
	putBoth32(b[pvdVolumeSpaceOffset:], p.VolumeSpace)
	putBoth16(b[pvdSetSizeOffset:], p.SetSize)
	putBoth16(b[pvdSequenceOffset:], p.Sequence)
	putBoth16(b[pvdBlockSizeOffset:], p.BlockSize)
	putBoth32(b[pvdPathTableSizeOffset:], p.PathTableSize)
	binary.LittleEndian.PutUint32(b[pvdLPathOffset:], p.LPathLBA)
	binary.BigEndian.PutUint32(b[pvdMPathOffset:], p.MPathLBA)
	p.Root.marshal(b[pvdRootRecordOffset:])
	putString(b[pvdVolumeSetIDOffset:], "", pvdLongIDLen, ' ')
	putString(b[pvdPublisherIDOffset:], "", pvdLongIDLen, ' ')
	putString(b[pvdPreparerIDOffset:], "", pvdLongIDLen, ' ')
	putString(b[pvdApplicationIDOffset:], p.ApplicationID, pvdLongIDLen, ' ')
	putString(b[pvdCopyrightFileOffset:], "", pvdFileIDLen, ' ')
	putString(b[pvdAbstractFileOffset:], "", pvdFileIDLen, ' ')
	putString(b[pvdBiblioFileOffset:], "", pvdFileIDLen, ' ')
	putVolumeDate(b[pvdCreationDateOffset:], p.Created)
	putVolumeDate(b[pvdModificationOffset:], p.Created)
	putVolumeDate(b[pvdExpirationOffset:], time.Time{}) // never expires
	putVolumeDate(b[pvdEffectiveOffset:], time.Time{})  // effective at once
	b[pvdFileStructureOffset] = fileStructureVersion
}

// bootRecord is the El Torito boot record volume descriptor.
type bootRecord struct {
	CatalogLBA uint32 // 0x47: the boot catalog
}

func (r bootRecord) marshal(b []byte) {
	putHeader(b, vdTypeBootRecord)
	putString(b[brSystemIDOffset:], elToritoID, pvdIDLen, 0)
	binary.LittleEndian.PutUint32(b[brCatalogOffset:], r.CatalogLBA)
}

// dirRecord is a directory record (ECMA-119 9.1).
type dirRecord struct {
	Extent   uint32    // 2: first block of the file or directory
	DataLen  uint32    // 10: bytes
	Recorded time.Time // 18: recording date
	Flags    byte      // 25: drFlagDirectory for directories
	ID       string    // 33: "\x00" self, "\x01" parent, or NAME.EXT;1
}

// size is the record's length: 33 bytes plus the identifier, padded to an
// even length (9.1.12).
func (r dirRecord) size() int {
	n := drFixedLen + len(r.ID)
	return n + n%2
}

func (r dirRecord) marshal(b []byte) int {
	n := r.size()
	b[drLengthOffset] = byte(n)
	b[drExtAttrOffset] = 0
	putBoth32(b[drExtentOffset:], r.Extent)
	putBoth32(b[drDataLenOffset:], r.DataLen)
	putRecordDate(b[drDateOffset:], r.Recorded)
	b[drFlagsOffset] = r.Flags
	b[drUnitSizeOffset] = 0
	b[drGapOffset] = 0
	putBoth16(b[drSequenceOffset:], 1)
	b[drIDLenOffset] = byte(len(r.ID))
	copy(b[drIDOffset:], r.ID)
	return n
}

// pathRecord is a path table record (ECMA-119 9.4); the byte order of
// Extent and Parent is the table's.
type pathRecord struct {
	Extent uint32 // 2: first block of the directory
	Parent uint16 // 6: number of the parent directory (root: 1)
	ID     string // 8: "\x00" for the root
}

func (r pathRecord) marshal(b []byte, order binary.ByteOrder) int {
	b[0] = byte(len(r.ID)) // length of directory identifier
	b[1] = 0               // extended attribute record length
	order.PutUint32(b[2:], r.Extent)
	order.PutUint16(b[6:], r.Parent)
	copy(b[pathRecordFixedLen:], r.ID)
	n := pathRecordFixedLen + len(r.ID)
	return n + n%2
}

// validationEntry is the first entry of the boot catalog.
type validationEntry struct {
	Platform byte   // 1: 0 = 80x86
	IDString string // 4: manufacturer, 24 bytes
}

func (v validationEntry) marshal(b []byte) {
	b[valHeaderOffset] = valHeaderID
	b[valPlatformOffset] = v.Platform
	putString(b[valIDStringOffset:], v.IDString, valIDStringLen, 0)
	b[valKeyOffset], b[valKeyOffset+1] = 0x55, 0xAA
	binary.LittleEndian.PutUint16(b[valChecksumOffset:], -catalogSum(b[:catalogEntrySize]))
}

// catalogSum adds the entry's sixteen little-endian words; a valid
// validation entry sums to 0.
func catalogSum(b []byte) uint16 {
	var sum uint16
	for i := 0; i+1 < catalogEntrySize; i += 2 {
		sum += binary.LittleEndian.Uint16(b[i:])
	}
	return sum
}

// initialEntry is the initial/default entry of the boot catalog.
type initialEntry struct {
	Indicator   byte   // 0: 0x88 bootable
	Media       byte   // 1: boot media type
	LoadSegment uint16 // 2: 0 = 0x7C0
	SystemType  byte   // 4: 0 unless hard-disk emulation
	SectorCount uint16 // 6: 512-byte sectors the BIOS loads
	ImageLBA    uint32 // 8: the boot image
}

func (e initialEntry) marshal(b []byte) {
	b[initIndicatorOffset] = e.Indicator
	b[initMediaOffset] = e.Media
	binary.LittleEndian.PutUint16(b[initSegmentOffset:], e.LoadSegment)
	b[initSystemOffset] = e.SystemType
	binary.LittleEndian.PutUint16(b[initCountOffset:], e.SectorCount)
	binary.LittleEndian.PutUint32(b[initLBAOffset:], e.ImageLBA)
}

func putHeader(b []byte, typ byte) {
	b[vdTypeOffset] = typ
	copy(b[vdIDOffset:], standardID)
	b[vdVersionOffset] = vdVersion
}

// putString writes s into an n-byte field padded with pad.
func putString(b []byte, s string, n int, pad byte) {
	copy(b[:n], s)
	for i := len(s); i < n; i++ {
		b[i] = pad
	}
}

// putBoth16 writes v in both byte orders (ECMA-119 7.2.3).
func putBoth16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

// putBoth32 writes v in both byte orders (ECMA-119 7.3.3).
func putBoth32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

// putVolumeDate writes a volume descriptor date (ECMA-119 8.4.26.1):
// "YYYYMMDDHHMMSScc" and the offset from GMT in 15-minute units, 0 for UTC.
// The zero time is "not specified": sixteen '0' digits and offset 0.
func putVolumeDate(b []byte, t time.Time) {
	if t.IsZero() {
		for i := range pvdDateDigits {
			b[i] = pvdDateNotSpecifiedDigit
		}
		b[pvdDateDigits] = 0
		return
	}
	t = t.UTC()
	copy(b, fmt.Sprintf("%04d%02d%02d%02d%02d%02d%02d",
		t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e7))
	b[pvdDateDigits] = 0
}

// putRecordDate writes a directory record date (ECMA-119 9.1.5): years
// since 1900, month, day, hour, minute, second, GMT offset. The zero time is
// "not specified": all seven bytes zero.
func putRecordDate(b []byte, t time.Time) {
	if t.IsZero() {
		clear(b[:drDateLen])
		return
	}
	t = t.UTC()
	b[0] = byte(t.Year() - 1900)
	b[1] = byte(t.Month())
	b[2] = byte(t.Day())
	b[3] = byte(t.Hour())
	b[4] = byte(t.Minute())
	b[5] = byte(t.Second())
	b[6] = 0
}

// layout is what differs between the boot modes.
type layout struct {
	media       byte   // El Torito boot media type
	loadCount   uint16 // the initial entry's sector count
	imageBytes  int64  // the boot image's size (BOOT.IMG)
	imageBlocks int64  // blocks the boot image occupies
}

// layout is the boot mode's, for a no-emulation image of sectors
// 512-byte sectors. A floppy loads one: the BIOS then serves the
// emulated drive from the image itself, second stage included.
func (o Options) layout(sectors int) layout {
	if o.Boot == BootFloppy {
		return layout{media: mediaFloppy144, loadCount: 1, imageBytes: floppySize, imageBlocks: floppySize / BlockSize}
	}
	n := int64(sectors) * loadUnit
	return layout{media: mediaNoEmulation, loadCount: uint16(sectors), imageBytes: n, imageBlocks: (n + BlockSize - 1) / BlockSize}
}

// Size returns the size of the file Write produces for o from a disk
// with nothing but its boot sector in its first 32 KiB and no EFI system
// partition: 49,152 bytes with no emulation, 1,521,664 with floppy
// emulation. A disk with an ESP adds the ESP's size, rounded up to whole
// blocks, for the EFI boot image; a probes' second stage (no emulation)
// adds the blocks it needs past the first.
func Size(o Options) int64 {
	return (metaBlocks + o.layout(1).imageBlocks) * BlockSize
}

// readSystemArea returns the disk's first 32 KiB, zero-padded past a
// smaller disk, which become the ISO's system area and hold its boot
// image: the boot sector and, from a probe build, the second stage at
// its LBA (1, or 34 on the universal disk) and the boot counter at 63.
// A universal disk's primary GPT (LBA 1-33) is cleared: the ISO holds no
// GPT, and a firmware must not find a half one there.
func readSystemArea(d disk.Disk, hasGPT bool) ([]byte, error) {
	sys := make([]byte, systemAreaSize)
	n := min(d.Size(), systemAreaSize)
	if _, err := d.ReadAt(sys[:n], 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("iso: read the system area: %w", err)
	}
	if hasGPT {
		clear(sys[gpt.HeaderLBA*bootSectorSize : gpt.FirstUsableLBA*bootSectorSize])
	}
	return sys, nil
}

// bootImageSectors is how many of the system area's 512-byte sectors the
// no-emulation entry loads: through the end of the last data extent of
// the disk that lies in it and holds a non-zero byte, the cleared GPT
// left out, or only the boot sector. A chunk of a disk.Sparse is one
// extent, so a probes' second stage, which ends in zero-initialized
// variables, is loaded whole: exactly sector.BootImage's bytes. A disk
// that reports no extents is one extent, so anything past its boot
// sector loads all 64 sectors.
func bootImageSectors(d disk.Disk, sys []byte, hasGPT bool) int {
	end := int64(bootSectorSize)
	skip := int64(bootSectorSize) // the boot sector is always loaded
	if hasGPT {
		skip = gpt.FirstUsableLBA * bootSectorSize
	}
	for _, e := range disk.Extents(d) {
		lo, hi := max(e.Off, skip), min(e.Off+e.Len, systemAreaSize)
		if lo < hi && !disk.IsZero(sys[lo:hi]) {
			end = max(end, hi)
		}
	}
	return int((end + bootSectorSize - 1) / bootSectorSize)
}

// ErrESP is returned for an EFI system partition the El Torito EFI entry
// cannot point at.
var ErrESP = errors.New("iso: EFI system partition too large for an El Torito entry")

// readESP returns the disk's EFI system partition, the FAT image the EFI
// boot entry points at, or nil when the disk has none (a BIOS-only disk).
func readESP(d disk.Disk) ([]byte, error) {
	e, err := universal.FindESP(d)
	if errors.Is(err, universal.ErrNoESP) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if e.Len/efiImageSectorFactor > maxEFIImageSectors {
		return nil, fmt.Errorf("%w: %d bytes, the most is %d", ErrESP, e.Len, maxEFIImageSectors*efiImageSectorFactor)
	}
	esp := make([]byte, e.Len)
	if _, err := disk.Section(d, e.Off, e.Len).ReadAt(esp, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("iso: read the EFI system partition: %w", err)
	}
	return esp, nil
}

// Write streams an ISO image that boots d's boot sector to w. Only the
// disk's first 32 KiB (the boot sector and a probes' second stage), its
// first 1,474,560 bytes (floppy emulation, zero-padded past a smaller
// disk) and its ESP are read, so the cost and the output do not depend on
// the virtual size beyond that.
func Write(w io.Writer, d disk.Disk, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	var t time.Time
	if !o.Time.IsZero() {
		t = o.Time.UTC()
	}
	esp, err := readESP(d)
	if err != nil {
		return err
	}
	sys, err := readSystemArea(d, esp != nil)
	if err != nil {
		return err
	}
	bootSector := sys[:bootSectorSize]
	l := o.layout(bootImageSectors(d, sys, esp != nil))
	// The EFI boot image (the ESP) follows the BIOS boot image.
	efiLBA := metaBlocks + l.imageBlocks
	efiBlocks := (int64(len(esp)) + BlockSize - 1) / BlockSize
	total := efiLBA + efiBlocks
	meta := make([]byte, metaBlocks*BlockSize)
	block := func(lba int) []byte { return meta[lba*BlockSize : (lba+1)*BlockSize] }

	// System area: the disk's first 32 KiB, the boot sector as the MBR,
	// so the file boots as a hard disk too, and a second stage where the
	// loader reads it. Bytes 446-509 stay the program's (see doc.go),
	// except a universal disk's protective GPT entry: the ISO holds no GPT.
	copy(meta, sys)
	if esp != nil {
		clear(meta[mbrTableOffset:mbrSignatureOffset])
	}

	// The path tables list the one directory, the root.
	root := pathRecord{Extent: rootLBA, Parent: 1, ID: "\x00"}
	pathTableSize := uint32(root.marshal(block(lPathLBA), binary.LittleEndian))
	root.marshal(block(mPathLBA), binary.BigEndian)

	self := dirRecord{Extent: rootLBA, DataLen: BlockSize, Recorded: t, Flags: drFlagDirectory, ID: "\x00"}
	records := []dirRecord{
		self,
		{Extent: rootLBA, DataLen: BlockSize, Recorded: t, Flags: drFlagDirectory, ID: "\x01"},
		{Extent: catalogLBA, DataLen: BlockSize, Recorded: t, ID: "BOOT.CAT;1"},
		{Extent: imageLBA, DataLen: uint32(l.imageBytes), Recorded: t, ID: "BOOT.IMG;1"},
	}
	if esp != nil {
		records = append(records, dirRecord{Extent: uint32(efiLBA), DataLen: uint32(len(esp)), Recorded: t, ID: efiImageName})
	}
	off := 0
	for _, r := range records {
		off += r.marshal(block(rootLBA)[off:])
	}

	primaryVolumeDescriptor{
		VolumeID:      o.volumeLabel(),
		VolumeSpace:   uint32(total),
		SetSize:       1,
		Sequence:      1,
		BlockSize:     BlockSize,
		PathTableSize: pathTableSize,
		LPathLBA:      lPathLBA,
		MPathLBA:      mPathLBA,
		Root:          self,
		ApplicationID: ApplicationID,
		Created:       t,
	}.marshal(block(pvdLBA))
	bootRecord{CatalogLBA: catalogLBA}.marshal(block(bootRecordLBA))
	putHeader(block(terminatorLBA), vdTypeTerminator)

	catalog := block(catalogLBA)
	validationEntry{Platform: platformX86, IDString: ApplicationID}.marshal(catalog)
	initialEntry{
		Indicator:   bootable,
		Media:       l.media,
		LoadSegment: 0,
		SectorCount: l.loadCount,
		ImageLBA:    imageLBA,
	}.marshal(catalog[initOffset:])
	if !hasBootCode(bootSector) {
		// A UEFI-only disk: the BIOS entry El Torito requires first is
		// there, but not bootable, so a BIOS does not run zeros.
		catalog[initOffset+initIndicatorOffset] = notBootable
	}
	if esp != nil {
		sh := catalog[sectionHeaderOffset:]
		sh[shIndicatorOffset] = finalSectionHeader
		sh[shPlatformOffset] = platformEFI
		binary.LittleEndian.PutUint16(sh[shCountOffset:], 1)
		putString(sh[shIDStringOffset:], ApplicationID, shIDStringLen, 0)
		initialEntry{
			Indicator:   bootable,
			Media:       mediaNoEmulation,
			SectorCount: uint16(len(esp) / efiImageSectorFactor),
			ImageLBA:    uint32(efiLBA),
		}.marshal(catalog[sectionEntryOffset:])
	}

	if _, err := w.Write(meta); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if l.media == mediaNoEmulation {
		// The boot sector unchanged (a universal disk's protective entry
		// included, as the disk has it), then the second stage.
		img := make([]byte, l.imageBlocks*BlockSize)
		copy(img, sys[:l.imageBytes])
		if _, err := w.Write(img); err != nil {
			return fmt.Errorf("iso: %w", err)
		}
	} else if err := writeFloppy(w, d); err != nil {
		return err
	}
	if esp != nil {
		img := make([]byte, efiBlocks*BlockSize)
		copy(img, esp)
		if _, err := w.Write(img); err != nil {
			return fmt.Errorf("iso: %w", err)
		}
	}
	return nil
}

// hasBootCode reports whether the MBR carries a BIOS program: a UEFI-only
// disk's protective MBR has zeros before the disk signature.
func hasBootCode(mbr []byte) bool {
	return !disk.IsZero(mbr[:universal.BootCodeSize])
}

// floppyChunk is how much of the floppy image is read and written at once.
const floppyChunk = 64 << 10

// writeFloppy streams the disk's first 1.44 MB, zero-padded past its end,
// as the floppy image.
func writeFloppy(w io.Writer, d disk.Disk) error {
	buf := make([]byte, floppyChunk)
	for off := int64(0); off < floppySize; off += floppyChunk {
		p := buf[:min(floppyChunk, floppySize-off)]
		clear(p)
		if off < d.Size() {
			n := min(int64(len(p)), d.Size()-off)
			if _, err := d.ReadAt(p[:n], off); err != nil && err != io.EOF {
				return fmt.Errorf("iso: read floppy image: %w", err)
			}
		}
		if _, err := w.Write(p); err != nil {
			return fmt.Errorf("iso: %w", err)
		}
	}
	return nil
}
