// Package info holds the facts that inspect reports about a disk file. It
// is a leaf package so every format package can return an Info.
package info

import "errors"

// ErrCorrupt is wrapped by every format's Inspect for a file that is not
// valid: bad magic, truncated tables, offsets past the end, tables that
// overlap each other or the headers.
var ErrCorrupt = errors.New("corrupt or truncated image")

// ErrNotDisk is wrapped by inspect's error for a file that no format
// claims and that is not a raw disk either: empty, a size that is not a
// whole number of 512-byte sectors, or no boot signature.
var ErrNotDisk = errors.New("not a disk image")

// Info is what inspect prints about one disk file.
type Info struct {
	// Format is the format's Type, such as "qcow2".
	Format string `json:"format"`
	// Subformat distinguishes variants: "monolithicSparse" or
	// "streamOptimized" (vmdk), "dynamic" or "fixed" (vhd, vdi),
	// "noemul" or "floppy" (iso).
	Subformat string `json:"subformat,omitempty"`
	// VirtualSize is the size of the disk the guest sees, in bytes.
	VirtualSize int64 `json:"virtualSize"`
	// FileSize is the size of the file, in bytes.
	FileSize int64 `json:"fileSize"`
	// BlockSize is the allocation unit: qcow2 cluster, vmdk grain, vdi,
	// vhd or vhdx block, in bytes. Zero for raw and iso.
	BlockSize int64 `json:"blockSize,omitempty"`
	// Allocated is how many bytes of the virtual disk are stored in the
	// file (allocated blocks times the block size).
	Allocated int64 `json:"allocatedBytes"`
	// Compressed reports compressed clusters or grains.
	Compressed bool `json:"compressed,omitempty"`
	// ElTorito is the boot entry of an ISO.
	ElTorito *ElTorito `json:"elTorito,omitempty"`
	// Files lists the members of an archive (ova). pkg/inspect quotes
	// the names that hold control characters (see Quote).
	Files []string `json:"files,omitempty"`
	// DiskOffset and DiskSize locate the disk inside an archive (ova), so
	// QEMU can read it in place.
	DiskOffset int64 `json:"diskOffset,omitempty"`
	DiskSize   int64 `json:"diskSize,omitempty"`
	// Corrupt is why a file in a known format is not valid, when it is not.
	Corrupt string `json:"corrupt,omitempty"`
	// NotDisk is why a file is not a disk image at all, when it is not.
	NotDisk string `json:"notDisk,omitempty"`
	// BootCount is the bootcount probe's counter on a raw disk that has
	// one: how many times the VM booted from it.
	BootCount *uint32 `json:"bootCount,omitempty"`
}

// ElTorito is an ISO's initial boot catalog entry.
type ElTorito struct {
	// Platform is the validation entry's platform ID (0 = x86 BIOS).
	Platform int `json:"platform"`
	// Bootable is true when the boot indicator is 0x88.
	Bootable bool `json:"bootable"`
	// Emulation is "none", "floppy-1.2M", "floppy-1.44M", "floppy-2.88M"
	// or "hard-disk".
	Emulation string `json:"emulation"`
	// LoadSegment is the real-mode segment the image loads at (0 = 0x7C0).
	LoadSegment int `json:"loadSegment"`
	// SectorCount is how many 512-byte sectors are loaded.
	SectorCount int `json:"sectorCount"`
	// ImageLBA is the 2048-byte block where the boot image starts.
	ImageLBA int64 `json:"imageLBA"`
	// CatalogLBA is the 2048-byte block of the boot catalog.
	CatalogLBA int64 `json:"catalogLBA"`
	// Hybrid is true when the system area holds an MBR boot sector too.
	Hybrid bool `json:"hybrid"`
	// EFI is the section entry for platform 0xEF (UEFI), if the catalog
	// has one.
	EFI *EFIBoot `json:"efi,omitempty"`
}

// EFIBoot is an ISO's El Torito entry for UEFI: a FAT image that the
// firmware mounts as a file system.
type EFIBoot struct {
	// SectorCount is the FAT image's size in 512-byte sectors.
	SectorCount int `json:"sectorCount"`
	// ImageLBA is the 2048-byte block where the FAT image starts.
	ImageLBA int64 `json:"imageLBA"`
}
