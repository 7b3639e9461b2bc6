// Package vhdx writes and inspects Hyper-V VHDX disk images (dynamic).
//
// The layout follows [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format",
// pinned to the edition v20180912 (release of September 12, 2018), whose
// section numbers the online edition at
// https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-vhdx/
// still uses. Section references below are to that document. Every
// structure is little-endian and every region is 1 MiB aligned (section 2):
//
//	0        file type identifier "vhdxfile" + UTF-16 creator  (2.1, 2.2.1)
//	64 KiB   header 1, sequence number 1                      (2.2.2)
//	128 KiB  header 2, sequence number 2 (the current header)
//	192 KiB  region table 1                                   (2.2.3)
//	256 KiB  region table 2, identical
//	1 MiB    log, 1 MiB of zeros: empty, log GUID zero         (2.3)
//	2 MiB    metadata region, 1 MiB: table + the five items   (2.6)
//	3 MiB    BAT region, rounded up to 1 MiB                   (2.5)
//	...      payload blocks, only those holding data           (2.4)
//
// Choices, and why:
//
//   - Block size 1 MiB, the smallest the spec allows (2.6.2.1). A payload
//     block is stored whole, so the block size is what one boot sector
//     costs: the default 1 MiB disk is a 5 MiB file (4 MiB of fixed
//     structure plus one block), where qemu-img's default 8 MiB blocks give
//     16 MiB. Microsoft also recommends 1 MiB blocks for Linux guests on
//     Hyper-V. The price is a larger BAT: 9 MiB for 1 TiB, streamed, never
//     held in memory. Over 1 TiB the block size doubles until there are at
//     most 2^20 blocks (BlockSizeFor), so the BAT stays at 9 MiB and the
//     file stays smaller than qemu-img's, whose blocks are 32 or 64 MiB
//     there.
//   - Unallocated blocks are PAYLOAD_BLOCK_NOT_PRESENT (0), "the default
//     state for all new blocks in dynamic and differencing VHDX types"
//     (2.5.1.1), with FileOffsetMB zero as that state reserves it. The spec
//     lets a reader return arbitrary data or zeros for it; QEMU returns
//     zeros, and so does Windows (libyal/libvhdi issue 17 changed libvhdi to
//     return zeros for this state to match what Windows shows). qemu-img
//     create writes PAYLOAD_BLOCK_ZERO (2) instead (block_state_zero=on by
//     default), which QEMU also reads as zeros. Blocks that hold data are
//     PAYLOAD_BLOCK_FULLY_PRESENT (6) with their file offset.
//   - Sector bitmap entries (SB_BLOCK_NOT_PRESENT, 0) are interleaved after
//     every chunk ratio payload entries (2.5). With 1 MiB blocks and 512-byte
//     logical sectors the chunk ratio is 2^23*512/2^20 = 4096, so they appear
//     in disks over 4 GiB.
//   - Logical sector size 512, the sector of every disk this project writes
//     and what qemu-img creates; physical sector size 4096, which Get-VHD
//     reports for the VHDX files Hyper-V creates (QEMU reads but does not
//     use it).
//   - The log is empty (log GUID zero), yet the header still gives a log
//     offset of 1 MiB and a length of 1 MiB: QEMU rejects a log offset that
//     is below 1 MiB or not 1 MiB aligned even when the log is empty.
//   - Region table entries set IsRequired for the BAT and metadata regions,
//     as the spec's table of known regions says (2.2.3.2).
//   - The file-write, data-write and page 83 GUIDs derive from a SHA-256 of
//     the disk's contents and the options (RFC 9562 version 8 UUIDs), never
//     from randomness, so identical inputs give identical files. Two files
//     built from the same inputs are thus the same disk to Hyper-V (same
//     page 83 identifier), exactly as two copies of one file are.
//
// All checksums are CRC-32C (Castagnoli) over the structure with its
// checksum field zeroed (2.2.2, 2.2.3).
package vhdx
