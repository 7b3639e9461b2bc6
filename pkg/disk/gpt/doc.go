// Package gpt writes and reads GUID partition tables with a protective MBR.
//
// The structures mirror the UEFI Specification, version 2.10 (August
// 2022), chapter 5 "GUID Partition Table (GPT) Disk Layout": LEGACY_MBR and
// its partition records (§5.2.1, table 5-1 and 5-2), the protective MBR
// (§5.2.3, table 5-3 and 5-4), EFI_PARTITION_TABLE_HEADER (§5.3.2, table
// 5-5) and EFI_PARTITION_ENTRY (§5.3.3, table 5-6). All fields are
// little-endian; CRCs are CRC-32 with the IEEE polynomial.
//
// A disk of N sectors written here is laid out as:
//
//	LBA 0          protective MBR: boot code 0-439, one 0xEE record at 446
//	LBA 1          primary header
//	LBA 2-33       primary partition entry array: 128 entries of 128 bytes
//	LBA 34..N-34   usable space for partitions
//	LBA N-33..N-2  backup partition entry array
//	LBA N-1        backup header
//
// GUIDs are not random: HashGUID derives them from bytes the caller
// chooses, so the same disk gets the same GUIDs on every machine.
package gpt
