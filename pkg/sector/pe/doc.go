// Package pe writes the smallest PE32+ image that UEFI firmware loads: one
// section holding position-independent code and data, no relocations, no
// imports, no debug data.
//
// The layout follows the Microsoft Portable Executable and Common Object
// File Format Specification (PE Format, revision 11, 2023), sections 2 to
// 4, and the UEFI Specification 2.10, section 2.1.1 (UEFI images):
//
//	0x000  MS-DOS header: "MZ" and, at 0x3C, the offset of the PE signature
//	0x040  "PE\0\0"
//	0x044  COFF file header (20 bytes)
//	0x058  PE32+ optional header (112 bytes) and 6 data directories (48)
//	0x0F8  one section header (40 bytes)
//	0x120  the section: code and data
//
// File and section alignment are both 16 bytes, so every file offset equals
// its relative virtual address and the file is the image as loaded. OVMF and
// AAVMF (EDK II's PE/COFF loader) load this; Windows would not, as it wants
// 512-byte file alignment.
package pe
