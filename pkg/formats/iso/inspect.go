package iso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

// maxDescriptors bounds the walk over the volume descriptor set, so a file
// without a terminator is rejected instead of read to its end.
const maxDescriptors = 64

// detectOffset is where the first volume descriptor's "CD001" starts.
const detectOffset = pvdLBA*BlockSize + vdIDOffset

// Detect reports whether a file whose first bytes are head is an ISO 9660
// image: "CD001" in the volume descriptor at LBA 16, after the 32 KiB
// system area.
func Detect(head []byte, _ io.ReaderAt, _ int64) bool {
	return len(head) >= detectOffset+len(standardID) &&
		string(head[detectOffset:detectOffset+len(standardID)]) == standardID
}

// corrupt wraps info.ErrCorrupt with the package name and details.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("iso: %s: %w", fmt.Sprintf(format, args...), info.ErrCorrupt)
}

// readBlock reads one logical block, failing on a short file.
func readBlock(r io.ReaderAt, size, lba int64) ([]byte, error) {
	if lba < 0 || (lba+1)*BlockSize > size {
		return nil, corrupt("block %d is past the end of the %d-byte file", lba, size)
	}
	b := make([]byte, BlockSize)
	if n, err := r.ReadAt(b, lba*BlockSize); n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, corrupt("block %d: short read", lba)
		}
		return nil, fmt.Errorf("iso: read block %d: %w", lba, err)
	}
	return b, nil
}

// both32 reads a both-endian 32-bit field, which must agree with itself.
func both32(b []byte, name string) (uint32, error) {
	le, be := binary.LittleEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
	if le != be {
		return 0, corrupt("%s is %d little-endian but %d big-endian", name, le, be)
	}
	return le, nil
}

// both16 reads a both-endian 16-bit field.
func both16(b []byte, name string) (uint16, error) {
	le, be := binary.LittleEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
	if le != be {
		return 0, corrupt("%s is %d little-endian but %d big-endian", name, le, be)
	}
	return le, nil
}

// emulations names the boot media types, indexed by type.
var emulations = []string{
	mediaNoEmulation: "none",
	mediaFloppy12:    "floppy-1.2M",
	mediaFloppy144:   "floppy-1.44M",
	mediaFloppy288:   "floppy-2.88M",
	mediaHardDisk:    "hard-disk",
}

// emulationBytes is the size of the image an emulation reads.
var emulationBytes = []int64{
	mediaFloppy12:  80 * 2 * 15 * 512,
	mediaFloppy144: floppySize,
	mediaFloppy288: 80 * 2 * 36 * 512,
}

// Inspect reads an ISO 9660 image's primary volume descriptor and its El
// Torito boot entry. An image without a boot record is reported without
// ElTorito. Errors for malformed or truncated images wrap info.ErrCorrupt.
func Inspect(r io.ReaderAt, size int64) (*info.Info, error) {
	var pvd, br []byte
	var descEnd int64 // the block after the terminator
	for i := int64(0); ; i++ {
		if i == maxDescriptors {
			return nil, corrupt("no volume descriptor set terminator in %d descriptors", maxDescriptors)
		}
		b, err := readBlock(r, size, pvdLBA+i)
		if err != nil {
			return nil, err
		}
		if string(b[vdIDOffset:vdIDOffset+len(standardID)]) != standardID {
			return nil, corrupt("volume descriptor at block %d lacks %q", pvdLBA+i, standardID)
		}
		typ := b[vdTypeOffset]
		if typ == vdTypeTerminator {
			descEnd = pvdLBA + i + 1
			break
		}
		switch {
		case typ == vdTypePrimary && pvd == nil:
			pvd = b
		case typ == vdTypeBootRecord && br == nil &&
			string(bytes.TrimRight(b[brSystemIDOffset:brSystemIDOffset+pvdIDLen], "\x00")) == elToritoID:
			br = b
		}
	}
	if pvd == nil {
		return nil, corrupt("no primary volume descriptor")
	}
	blockSize, err := both16(pvd[pvdBlockSizeOffset:], "logical block size")
	if err != nil {
		return nil, err
	}
	if blockSize != BlockSize {
		return nil, corrupt("logical block size %d, want %d", blockSize, BlockSize)
	}
	blocks, err := both32(pvd[pvdVolumeSpaceOffset:], "volume space size")
	if err != nil {
		return nil, err
	}
	volume := int64(blocks) * BlockSize
	if volume > size {
		return nil, corrupt("volume of %d blocks (%d bytes) exceeds the %d-byte file", blocks, volume, size)
	}
	in := &info.Info{
		Format:      Type,
		VirtualSize: volume,
		FileSize:    size,
		Allocated:   volume,
	}
	if br == nil {
		return in, nil
	}

	catLBA := int64(binary.LittleEndian.Uint32(br[brCatalogOffset:]))
	if catLBA >= int64(blocks) {
		return nil, corrupt("boot catalog at block %d is outside the %d-block volume", catLBA, blocks)
	}
	if catLBA < descEnd {
		return nil, corrupt("boot catalog at block %d lies in the system area or the volume descriptors (blocks 0 to %d)", catLBA, descEnd-1)
	}
	cat, err := readBlock(r, size, catLBA)
	if err != nil {
		return nil, err
	}
	if cat[valHeaderOffset] != valHeaderID {
		return nil, corrupt("boot catalog header ID %d, want %d", cat[valHeaderOffset], valHeaderID)
	}
	if cat[valKeyOffset] != 0x55 || cat[valKeyOffset+1] != 0xAA {
		return nil, corrupt("boot catalog lacks the 0x55 0xAA key")
	}
	if sum := catalogSum(cat[:catalogEntrySize]); sum != 0 {
		return nil, corrupt("boot catalog validation entry checksum is off by %#04x", sum)
	}
	e := cat[initOffset : initOffset+catalogEntrySize]
	ind, media := e[initIndicatorOffset], e[initMediaOffset]
	if ind != bootable && ind != notBootable {
		return nil, corrupt("boot indicator %#02x, want 0x88 or 0x00", ind)
	}
	if int(media) >= len(emulations) {
		return nil, corrupt("boot media type %d is not defined", media)
	}
	et := &info.ElTorito{
		Platform:    int(cat[valPlatformOffset]),
		Bootable:    ind == bootable,
		Emulation:   emulations[media],
		LoadSegment: int(binary.LittleEndian.Uint16(e[initSegmentOffset:])),
		SectorCount: int(binary.LittleEndian.Uint16(e[initCountOffset:])),
		ImageLBA:    int64(binary.LittleEndian.Uint32(e[initLBAOffset:])),
		CatalogLBA:  catLBA,
	}
	// The image must lie inside the volume: the loaded sectors, or the
	// whole floppy for floppy emulation. (A hard-disk image's size is in
	// its own partition table, so only its first sector is checked.)
	need := int64(et.SectorCount) * loadUnit
	if media < mediaHardDisk && media != mediaNoEmulation {
		need = emulationBytes[media]
	}
	if media == mediaHardDisk {
		need = max(need, bootSectorSize)
	}
	if et.ImageLBA*BlockSize+need > volume {
		return nil, corrupt("boot image of %d bytes at block %d runs past the %d-block volume", need, et.ImageLBA, blocks)
	}
	if end := et.ImageLBA*BlockSize + max(need, 1); et.ImageLBA < descEnd || (et.ImageLBA <= catLBA && catLBA*BlockSize < end) {
		return nil, corrupt("boot image at block %d overlaps the volume descriptors or the boot catalog at block %d", et.ImageLBA, catLBA)
	}

	efi, err := efiEntry(cat, volume, descEnd)
	if err != nil {
		return nil, err
	}
	et.EFI = efi

	// Hybrid: the system area starts with an MBR boot sector.
	mbr := make([]byte, bootSectorSize)
	if n, _ := r.ReadAt(mbr, 0); n == len(mbr) {
		et.Hybrid = mbr[mbrSignatureOffset] == 0x55 && mbr[mbrSignatureOffset+1] == 0xAA
	}
	in.ElTorito = et
	switch media {
	case mediaNoEmulation:
		in.Subformat = BootNoEmul
	case mediaFloppy12, mediaFloppy144, mediaFloppy288:
		in.Subformat = BootFloppy
	case mediaHardDisk:
		in.Subformat = "hard-disk"
	}
	return in, nil
}

// efiEntry reads the section after the initial entry when it is a final
// section header for platform 0xEF with one bootable no-emulation entry,
// as Write makes it; anything else there is not an EFI entry of ours and
// is left alone. The image must lie inside the volume, after the
// descriptors.
func efiEntry(cat []byte, volume, descEnd int64) (*info.EFIBoot, error) {
	sh := cat[sectionHeaderOffset:]
	if (sh[shIndicatorOffset] != finalSectionHeader && sh[shIndicatorOffset] != 0x90) || sh[shPlatformOffset] != platformEFI {
		return nil, nil
	}
	e := cat[sectionEntryOffset:]
	if binary.LittleEndian.Uint16(sh[shCountOffset:]) == 0 || e[initIndicatorOffset] != bootable {
		return nil, nil
	}
	efi := &info.EFIBoot{
		SectorCount: int(binary.LittleEndian.Uint16(e[initCountOffset:])),
		ImageLBA:    int64(binary.LittleEndian.Uint32(e[initLBAOffset:])),
	}
	if efi.ImageLBA < descEnd || efi.ImageLBA*BlockSize+int64(efi.SectorCount)*loadUnit > volume {
		return nil, corrupt("EFI boot image of %d sectors at block %d lies outside the volume's data", efi.SectorCount, efi.ImageLBA)
	}
	return efi, nil
}
