// Package vmdk writes and inspects VMware virtual disks (VMDK) holding one
// hosted sparse extent, in two subformats.
//
// Specification: VMware Technical Note "Virtual Disk Format 1.1"
// (https://www.vmware.com/app/vmdk/?src=vmdk), sections "Hosted Sparse
// Extents" and "Stream-Optimized Compressed Sparse Extents", checked
// against its 5.0 revision (EN-000777-00, 2011), which vmware/open-vmdk
// ships as vmdk_50_technote.pdf. The spec names RFC 1951 for grains, but
// VMware's writers and QEMU use zlib streams (RFC 1950). QEMU 7.2's
// block/vmdk.c and VMware's open-vmdk (vmdk/sparse.c) were read to learn
// what the real readers require; no code is taken from either.
//
// # monolithicSparse (the default)
//
// The layout qemu-img creates: version 1, flags 3 (valid newline test,
// redundant grain directory), a 64 KiB grain (128 sectors), the descriptor
// at sector 1 (20 sectors) with CID and parentCID=ffffffff (QEMU refuses a
// file without them), the redundant directory and its tables, the
// directory and its tables, then grains from the next grain boundary.
// Only grains holding non-zero bytes are stored.
//
// Every grain table is allocated, even an empty one, as in QEMU's and
// VMware's own files. QEMU cannot add a grain table to an existing file: a
// guest write into a region whose directory entry is 0 fails with EINVAL
// (measured with qemu-io 7.2), so leaving empty tables out would give an
// image that breaks as soon as it is used. The cost is 8 KiB of table per
// 64 MiB of virtual size, all zeros: a 1 TiB disk is a 128 MiB file, the
// size of qemu-img's, written as holes when the destination is a file.
//
// # streamOptimized
//
// For OVA and ESXi import. The header and descriptor are what VMware's
// open-vmdk writes: version 3 (ESXi rejects lower ones), flags 0x30001
// (valid newline test, compressed grains, markers), compressAlgorithm 1,
// a descriptor with encoding, ddb.longContentID, adapterType lsilogic,
// toolsInstallType and toolsVersion. The body is the spec's stream layout,
// which streams in one pass: each grain is a 12-byte {lba, size} header
// and a zlib (RFC 1950) stream padded to a sector; each grain table that
// holds grains follows them behind a GT marker; then a GD marker and the
// directory, a footer marker and the footer (the header with the real
// gdOffset; the header itself says gdOffset = -1, "at end"), and the
// end-of-stream marker. Tables without grains are left out (directory
// entry 0: all their grains are sparse), which QEMU and open-vmdk's reader
// accept and which suits a subformat that is only ever imported, never
// written in place, so a 1 TiB disk is a 144 KiB file. open-vmdk itself pre-writes every table
// after the header, which costs 64 MiB at 1 TiB and needs a seekable
// output; its reader (vmdk-convert) and QEMU both read this layout.
// qemu-img's own streamOptimized layout is not used: it lacks the
// end-of-stream marker and is reported to fail ovftool's validation.
//
// # Capacity
//
// The virtual size must be a multiple of the 64 KiB grain, or Write
// returns ErrSize. The issue asks that the capacity be kept a multiple of
// the grain because VMware's vmdk-convert hangs on smaller disks, and the
// size qemu-img reports must equal the requested size exactly, so
// rounding up is not an option: a clear error is. The default 1 MiB disk
// qualifies.
//
// # Determinism
//
// The CID and ddb.longContentID are the SHA-256 of the options, the
// virtual size and every non-zero grain with its index; no random numbers
// and no clock are used, so identical inputs give identical files.
package vmdk
