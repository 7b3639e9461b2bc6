// Package universal assembles the disk that boots unchanged on BIOS and
// UEFI: a GPT whose protective MBR carries the 440-byte BIOS program, and
// an EFI system partition holding the EFI applications.
//
// A disk of N sectors:
//
//	LBA 0          protective MBR: the BIOS program in bytes 0-439
//	LBA 1-33       primary GPT header and partition entries
//	LBA 34-63      free, so the ESP starts on a 32 KiB boundary; WithReserved
//	               puts data there (the BIOS probes' second stage)
//	LBA 64-127     the ESP (FAT12), "EFI System"; longer for larger files
//	...            zeros
//	LBA N-33..N-1  backup partition entries and header
//
// Only the two table regions and the ESP hold data: the disk is a
// disk.Sparse, so a sparse 1 TiB disk costs what a 1 MiB one does.
package universal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/gpt"
)

const (
	// MinSize is the smallest universal disk: SeaBIOS computes zero
	// cylinders for disks under 1008 sectors (504 KiB) and then fails to
	// read them from virtio-blk and AHCI.
	MinSize = 1008 * disk.SectorSize
	// ESPFirstLBA is where the ESP starts: 4 KiB- and 32 KiB-aligned,
	// close after the primary table, far below 1 MiB.
	ESPFirstLBA = 64
	// espAlign is the granularity of the ESP's length, in sectors: sgdisk
	// cautions about a partition that does not end on a 64-sector
	// boundary. The smallest ESP is one step, 32 KiB.
	espAlign = 64
	// ESPName is the ESP's GPT partition name.
	ESPName = "EFI System"
	// BootCodeSize is how many bytes of BIOS program the protective MBR
	// holds.
	BootCodeSize = gpt.BootCodeSize
)

// Errors that this package returns, wrapped with details.
var (
	ErrSize     = errors.New("universal: disk too small")
	ErrBootCode = errors.New("universal: boot code too long")
	ErrNoESP    = errors.New("universal: no EFI system partition")
	ErrReserved = errors.New("universal: reserved data does not fit the gap")
)

// The free gap between the primary GPT and the ESP, which WithReserved
// fills: LBA 34 to 63, 15 KiB.
const (
	ReservedFirstLBA = gpt.FirstUsableLBA
	ReservedLastLBA  = ESPFirstLBA - 1
)

// Option changes how the disk is written.
type Option func(*options)

type options struct {
	time     time.Time
	reserved []disk.Chunk
}

// WithReserved writes data at sector lba of the gap between the primary
// GPT and the ESP (ReservedFirstLBA to ReservedLastLBA), outside every
// partition: the BIOS program's second stage and its boot counter. New
// refuses data that leaves the gap or overlaps other reserved data.
func WithReserved(lba int64, data []byte) Option {
	data = bytes.Clone(data) // the disk keeps its own copy
	return func(o *options) { o.reserved = append(o.reserved, disk.Chunk{Off: lba, Data: data}) }
}

// WithTime sets the time stamp of every file and directory of the ESP
// (SOURCE_DATE_EPOCH). The default is fat.DefaultTime, 2024-01-01.
func WithTime(t time.Time) Option { return func(o *options) { o.time = t } }

// ESP returns the FAT volume of the EFI system partition holding files,
// exactly as New places it on the disk. The ISO's El Torito EFI image can
// be these bytes.
func ESP(files []fat.File, opts ...Option) ([]byte, error) {
	o := options{time: fat.DefaultTime}
	for _, opt := range opts {
		opt(&o)
	}
	// The smallest volume that holds the files, grown to whole 64-sector
	// steps: the extra clusters are free and zero, so they cost nothing
	// in a sparse format and leave room to add a file by hand.
	small, err := fat.Build(files, fat.WithTime(o.time))
	if err != nil {
		return nil, fmt.Errorf("universal: ESP: %w", err)
	}
	sectors := (int64(len(small))/disk.SectorSize + espAlign - 1) / espAlign * espAlign
	esp, err := fat.Build(files, fat.WithTime(o.time), fat.WithSize(sectors*disk.SectorSize), fat.WithHiddenSectors(ESPFirstLBA))
	if err != nil {
		return nil, fmt.Errorf("universal: ESP: %w", err)
	}
	return esp, nil
}

// New returns the universal disk of size bytes. bootCode is the BIOS
// program (at most 440 bytes, such as the Code of a sector built with the
// Partitioned layout); files go on the ESP, such as
// EFI/BOOT/BOOTX64.EFI. The disk's and the ESP's GUIDs are hashed from
// the content, so equal inputs give equal bytes. A nil bootCode leaves
// bytes 0-439 zero, as gdisk and fdisk write a protective MBR; a BIOS that
// boots such a disk runs those zeros.
func New(bootCode []byte, files []fat.File, size int64, opts ...Option) (*disk.Sparse, error) {
	if size%disk.SectorSize != 0 || size <= 0 {
		return nil, fmt.Errorf("%w, got %d", disk.ErrSize, size)
	}
	if size < MinSize {
		return nil, fmt.Errorf("%w: %d bytes; a disk that boots on UEFI needs at least %d bytes (504 KiB)", ErrSize, size, MinSize)
	}
	if len(bootCode) > BootCodeSize {
		return nil, fmt.Errorf("%w: %d bytes; the protective MBR holds %d (build the sector with the Partitioned layout)", ErrBootCode, len(bootCode), BootCodeSize)
	}
	esp, err := ESP(files, opts...)
	if err != nil {
		return nil, err
	}
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	reserved, err := checkReserved(o.reserved)
	if err != nil {
		return nil, err
	}
	last := ESPFirstLBA + uint64(len(esp))/disk.SectorSize - 1
	if room := uint64(size/disk.SectorSize) - gpt.EntriesSectors - 2; last > room {
		return nil, fmt.Errorf("%w: %d bytes do not hold a %d-byte ESP; use at least %d bytes",
			ErrSize, size, len(esp), int64(last+1+gpt.EntriesSectors+1)*disk.SectorSize)
	}

	var sz [8]byte
	binary.LittleEndian.PutUint64(sz[:], uint64(size))
	hashed := [][]byte{[]byte("tinyvm-oci disk"), bootCode, esp, sz[:]}
	for _, c := range reserved { // none by default, which keeps the GUIDs
		var at [8]byte
		binary.LittleEndian.PutUint64(at[:], uint64(c.Off))
		hashed = append(hashed, at[:], c.Data)
	}
	diskGUID := gpt.HashGUID(hashed...)
	t := &gpt.Table{
		DiskGUID: diskGUID,
		Partitions: []gpt.Partition{{
			Type:     gpt.ESP,
			GUID:     gpt.HashGUID([]byte("tinyvm-oci ESP"), diskGUID[:]),
			FirstLBA: ESPFirstLBA,
			LastLBA:  last,
			Name:     ESPName,
		}},
	}
	head, tail, err := t.Build(size, bootCode)
	if err != nil {
		return nil, fmt.Errorf("universal: %w", err)
	}
	return disk.NewSparse(size, append(reserved,
		disk.Chunk{Off: 0, Data: head},
		disk.Chunk{Off: ESPFirstLBA * disk.SectorSize, Data: esp},
		disk.Chunk{Off: size - int64(len(tail)), Data: tail},
	)...)
}

// checkReserved checks that each reserved piece lies in the gap and that
// none overlap, and returns them as chunks at byte offsets.
func checkReserved(rs []disk.Chunk) ([]disk.Chunk, error) {
	var out []disk.Chunk
	for _, r := range rs {
		sectors := (int64(len(r.Data)) + disk.SectorSize - 1) / disk.SectorSize
		if len(r.Data) == 0 || r.Off < ReservedFirstLBA || r.Off+sectors-1 > ReservedLastLBA {
			return nil, fmt.Errorf("%w: %d bytes at LBA %d; the gap is LBA %d-%d (%d bytes)",
				ErrReserved, len(r.Data), r.Off, ReservedFirstLBA, ReservedLastLBA, (ReservedLastLBA-ReservedFirstLBA+1)*disk.SectorSize)
		}
		for _, c := range out {
			cFirst, cLast := c.Off/disk.SectorSize, (c.Off+int64(len(c.Data))-1)/disk.SectorSize
			if r.Off <= cLast && r.Off+sectors-1 >= cFirst {
				return nil, fmt.Errorf("%w: %d bytes at LBA %d overlap those at LBA %d-%d", ErrReserved, len(r.Data), r.Off, cFirst, cLast)
			}
		}
		out = append(out, disk.Chunk{Off: r.Off * disk.SectorSize, Data: r.Data})
	}
	return out, nil
}

// FindESP reads the GPT of d and returns where its first EFI system
// partition lies; disk.Section(d, e.Off, e.Len) is the FAT volume.
func FindESP(d disk.Disk) (disk.Extent, error) {
	t, err := gpt.Read(d, d.Size())
	if err != nil {
		return disk.Extent{}, fmt.Errorf("%w: %w", ErrNoESP, err)
	}
	p, ok := t.Find(gpt.ESP)
	if !ok {
		return disk.Extent{}, fmt.Errorf("%w: the GPT has %d partitions, none of type %s", ErrNoESP, len(t.Partitions), gpt.ESP)
	}
	return disk.Extent{Off: p.Offset(), Len: p.Size()}, nil
}
