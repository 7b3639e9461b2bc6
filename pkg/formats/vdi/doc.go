// Package vdi writes and inspects VirtualBox Disk Images (VDI), the format
// VirtualBox imports natively.
//
// # Specification
//
// VDI has no published specification; the layout is defined by VirtualBox's
// own source: src/VBox/Storage/VDICore.h for the structures (pinned at
// revision "$Id: VDICore.h 106320 2024-10-15", commit 4908d8d1 of
// https://github.com/VirtualBox/virtualbox,
// https://github.com/VirtualBox/virtualbox/blob/4908d8d1a85c75c0eefb6a4c5c8a9f07211ad8f1/src/VBox/Storage/VDICore.h)
// and src/VBox/Storage/VDI.cpp of the same tree for what VirtualBox checks
// and writes (vdiValidateHeader, vdiInitHeader).
// QEMU's reader, block/vdi.c (QEMU 7.2), adds its own restrictions, listed
// below, and is the oracle the tests use.
//
// # Layout written
//
// All integers are little-endian.
//
//	0       pre-header: 64-byte text, signature 0xbeda107f, version 1.1
//	72      VDIHEADER1PLUS (400 bytes, cbHeader = 400)
//	512     block map: one uint32 per 1 MiB block, 0xFFFFFFFF = not stored
//	offData data blocks, 1 MiB each, in ascending block order
//
// The image is dynamic ("normal", type 1): only blocks holding a non-zero
// byte are stored, so a 1 TiB disk holding one boot sector is 4 MiB of
// block map plus one 1 MiB block.
//
// # Choices
//
//   - Block size 1 MiB: QEMU rejects any other block size ("block size is
//     not 1048576"), and it is VirtualBox's default.
//   - Alignment: the block map and the data area start on 512-byte sector
//     boundaries. QEMU requires sector alignment of both offsets.
//     VirtualBox's vdiValidateHeader requires only offBlocks >= 456 and
//     offData >= offBlocks + 4*cBlocks, with no alignment. Current
//     VirtualBox aligns both to 1 MiB when it creates an image
//     (VDI_DATA_ALIGN, for SSD pages); older releases aligned them to 512
//     bytes (VDI_GEOMETRY_SECTOR_SIZE), and both kinds open.
//     1 MiB alignment would add up to 2 MiB of padding; sector alignment
//     keeps a one-block image at 1,049,600 bytes, the size qemu-img writes.
//   - UUIDs: VirtualBox refuses an image whose create or modify UUID is
//     null. Both derive from SHA-256 of the disk's content and size (with
//     a different label for each), with RFC 4122 version 5 and variant
//     bits, so identical inputs give identical files. The link and parent
//     UUIDs stay null, as QEMU requires for a base image.
//   - Text: "<<< tinyvm-oci VirtualBox Disk Image >>>\n"; readers ignore it.
//   - Geometry: legacy and LCHS geometry are left "not calculated" (zero
//     cylinders, heads and sectors, 512-byte sectors), as VirtualBox's
//     vdiInitHeader does; VirtualBox computes a geometry when it opens the
//     disk.
//   - Maximum size: QEMU's limit of 536,870,784 blocks (about 512 TiB).
package vdi
