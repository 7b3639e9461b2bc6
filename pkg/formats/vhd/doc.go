// Package vhd writes and inspects Virtual Hard Disk (VHD) images, the
// format Hyper-V and Azure import, also read by QEMU ("vpc") and
// VirtualBox.
//
// # Specification
//
// Microsoft, "Virtual Hard Disk Image Format Specification", version 1.0,
// October 11, 2006 (https://www.microsoft.com/en-us/download/details.aspx?id=23850),
// sections "Hard Disk Footer Format", "Dynamic Disk Header Format", "Block
// Allocation Table and Data Blocks" and "Appendix: CHS Calculation". QEMU
// 7.2's reader, block/vpc.c, is the oracle the tests use; its rules are
// listed below.
//
// All integers are big-endian. Checksums are the one's complement of the
// byte sum of the structure with its checksum field zeroed.
//
// # Dynamic (default)
//
//	0          copy of the footer (512 bytes)
//	512        dynamic disk header (1,024 bytes), BAT at 1,536
//	1536       BAT: one uint32 sector number per 2 MiB block, 0xFFFFFFFF =
//	           not stored, padded with 0xFF to a whole sector
//	...        per stored block: sector bitmap (512 bytes, all ones), then
//	           2 MiB of data, in ascending block order
//	end - 512  footer
//
// Only blocks holding a non-zero byte are stored. Every sector of a stored
// block is marked present in its bitmap, as QEMU does. QEMU requires the
// last stored block to end inside the file, so a block is always written
// in full; on an *os.File its zero parts become holes. A one-block image
// is 2,100,224 bytes, the size qemu-img writes.
//
// # Fixed (Options.Type "fixed")
//
// The raw disk, then the footer: what Azure requires. The data is written
// by package raw, so on an *os.File zero runs become holes and a 1 TiB
// fixed VHD takes almost no space. QEMU recognises a VHD only by the
// cookie at offset 0, so a fixed VHD must be opened with -f vpc.
//
// Azure accepts fixed VHDs whose virtual size is a whole number of MiB.
// A size that is not is still written exactly, not rounded: the size the
// user asked for is what every reader must see, and Hyper-V and QEMU read
// any multiple of 512 bytes. Such a file is valid but Azure's upload
// refuses it; choose a --size in MiB for Azure. The default 1 MiB disk is
// aligned.
//
// # Virtual size: creator application and geometry
//
// Readers disagree on where the size is. Hyper-V and Azure use the
// footer's current size. Virtual PC, and QEMU for creator applications it
// does not know, use cylinders x heads x sectors, which rounds most sizes
// down (qemu-img's own "qemu" VHD of a 1 MiB disk reads as 1,079,296
// bytes, of 512 bytes as 34,816). QEMU 7.2 uses the current size when the
// creator application is "win ", "qem2", "d2v ", "CTXS" or "tap\0", or
// when the geometry is the maximum 65535/16/255.
//
// We write creator application "qem2" and geometry 65535/16/255, with
// current size = original size = the requested size. Each of the two
// alone makes QEMU read the current size (TestSizeRule checks both with
// the installed QEMU), so a reader that knows only one of the rules still
// gets it right; Hyper-V and Azure read the current size whatever the
// creator. This is exactly what
// `qemu-img convert -O vpc -o subformat=fixed,force_size` writes, the
// command Azure's documentation gives for preparing Linux VHDs, so the
// combination is known to import. The CHS fields are not a usable BIOS
// geometry, which matters only to Virtual PC; guests on Hyper-V, Azure
// and QEMU address the disk by LBA.
//
// Other footer fields: features 2 (the spec's reserved bit, always set),
// format version 1.0, creator version 1.0, creator host OS "Wi2k", time
// stamp from Options.Time in seconds since 2000-01-01 UTC (clamped to
// 0 before 2000), and a unique ID derived from SHA-256 of the disk's
// content, size and type, with RFC 4122 version 5 and variant bits, in
// RFC byte order (as QEMU writes it).
//
// # Limits
//
// QEMU refuses VHDs over 2040 GiB (0xff000000 sectors), of either type,
// and so does Hyper-V; Write returns ErrTooLarge for them.
package vhd
