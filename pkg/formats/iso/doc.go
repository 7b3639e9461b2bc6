// Package iso writes the boot sector as a bootable ISO 9660 CD-ROM image
// with an El Torito boot catalog, and reads the facts of such images back.
//
// Specifications:
//   - ECMA-119, Volume and File Structure of CDROM for Information
//     Interchange, 4th edition (June 2019),
//     https://ecma-international.org/publications-and-standards/standards/ecma-119/
//   - "El Torito" Bootable CD-ROM Format Specification, Version 1.0,
//     Phoenix Technologies and IBM, January 25, 1995,
//     https://pdos.csail.mit.edu/6.828/2014/readings/boot-cdrom.pdf
//
// # Layout
//
// The image is ISO 9660 level 1 with 2048-byte logical blocks, no Joliet or
// Rock Ridge, and one directory. Default (no emulation), 24 blocks, 49,152
// bytes:
//
//	LBA 0-15  system area: the disk's first 32 KiB, the boot sector (MBR)
//	          first; zeros after it unless the disk has a probes' stage
//	LBA 16    primary volume descriptor
//	LBA 17    El Torito boot record volume descriptor
//	LBA 18    volume descriptor set terminator
//	LBA 19    type L path table (little-endian)
//	LBA 20    type M path table (big-endian)
//	LBA 21    root directory: ".", "..", BOOT.CAT;1, BOOT.IMG;1
//	LBA 22    boot catalog: validation entry, initial entry
//	LBA 23    boot image: the disk's first 512 bytes, zero-padded (more
//	          blocks with a probes' second stage, see Probes)
//
// With Boot "floppy" the boot image is a 1.44 MB floppy image (720 blocks,
// the disk's first 1,474,560 bytes, zero-padded) and the file is 743 blocks,
// 1,521,664 bytes. The boot sector loads only itself, so it runs from the
// emulated floppy's first sector just as it does from a hard disk.
//
// # Boot entry
//
// The validation entry names platform 0 (80x86) and carries a checksum,
// which SeaBIOS does not check but other firmware does. The initial entry is
// bootable (0x88) with load segment 0, which means the traditional 0x7C0.
// Its sector count is 1: SeaBIOS loads DIV_ROUND_UP(count, 4) 2048-byte
// blocks, so a count of 0 loads nothing and hangs, while 1 loads the 512-byte
// boot sector (within one 2048-byte block). Floppy emulation uses count 1
// too: the BIOS then serves the emulated drive from the image itself.
//
// # Probes
//
// A program with probes (pkg/sector) has a second stage that its MBR reads
// from the sectors after it (LBA 1 on the bare disk, 34 on the universal
// disk) or, booted from a CD, finds in memory where El Torito loaded it.
// The writer needs no knowledge of the program for that: the boot image
// is the disk's first sectors through the end of the last data extent
// (disk.Extents) in the first 32 KiB that holds a non-zero byte, the
// universal disk's GPT left out, and the entry's count is its length /
// 512. That is sector.BootImage exactly, the stage's zero-initialized
// tail included, which trimming zero sectors would lose. A disk with
// nothing but its boot sector there gives count 1 and the bytes above. The
// system area holds the same 32 KiB (the GPT cleared), so the hybrid hard
// disk has the stage at its LBA too. The boot counter at LBA 63 is data
// as well and is loaded; pkg/build refuses bootcount with the iso, which
// is read-only, and probes with floppy emulation, whose drive has no
// extended read for the loader.
//
// # EFI entry
//
// When the disk is the universal GPT disk (pkg/disk/universal), its EFI
// system partition is copied into the volume as EFI.IMG;1, right after the
// BIOS boot image, and the catalog gets a final section header for platform
// 0xEF (El Torito 2.4) with one bootable no-emulation entry whose sector
// count is the image's size in 512-byte sectors (2.5). UEFI firmware mounts
// that FAT image and runs \EFI\BOOT\BOOTX64.EFI or BOOTAA64.EFI from it
// (OVMF from a SATA CD-ROM, AAVMF from a SCSI one, in the format tests). A
// disk with no BIOS code (UEFI only) keeps the initial entry El Torito
// requires, marked not bootable. A BIOS-only disk gets no EFI entry, and
// the image is byte for byte what it was before.
//
// # Hybrid
//
// The system area is free for any use (ECMA-119 6.2.1), so it is the
// disk's first 32 KiB, its first 512 bytes the boot sector itself, and the
// same file boots as a hard disk: the BIOS loads LBA 0 and checks 0x55AA,
// which the sector has.
//
// Syslinux's isohybrid also writes a partition entry covering the image
// (type 0x17 by default) at bytes 446-509 of the MBR and pads the file to a
// whole MiB. This package does not: those bytes
// belong to the bare boot program, whose budget runs to byte 509, and a BIOS boots
// an MBR without looking at its partition table. Overwriting program bytes
// would break the VM whenever the program grows past byte 445. The cost is
// that partitioning tools see the hard disk as unpartitioned. A universal
// disk's protective MBR entry is cleared: the ISO holds no GPT for it to
// protect.
//
// A BIOS reading the image as a hard disk must accept its small size:
// SeaBIOS derives a zero cylinder count for disks under 1008 sectors and
// refuses to boot them from virtio-blk or AHCI. The default 49,152-byte image
// (96 sectors) therefore boots as a hard disk from IDE on the pc machine
// only; the floppy variant (2,972 sectors) also boots from virtio-blk.
// Padding the default image to 1008 sectors would add 456 KiB for a use
// the CD-ROM boot already covers, so it is not padded.
//
// # Volume label
//
// Options.VolumeLabel (--volume-label) replaces VolumeID, the PVD's volume
// identifier, which is what blkid, cloud-init and the disks probe read:
// "cidata" makes a NoCloud seed's label, "config-2" a config drive's. Any
// printable ASCII up to 32 bytes is taken, as xorriso -volid takes it,
// though ECMA-119 asks for d-characters there: those labels are lowercase.
//
// # Reproducibility
//
// Every date is Options.Time in UTC (from SOURCE_DATE_EPOCH through
// formats.Options.Stamp); nothing reads the clock. Identical disks and
// options give identical bytes.
package iso
