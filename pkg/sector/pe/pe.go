package pe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Machine is the COFF machine type.
type Machine uint16

// The machine types of UEFI applications this package writes.
const (
	AMD64 Machine = 0x8664 // IMAGE_FILE_MACHINE_AMD64
	ARM64 Machine = 0xAA64 // IMAGE_FILE_MACHINE_ARM64
)

// SubsystemEFIApplication is IMAGE_SUBSYSTEM_EFI_APPLICATION.
const SubsystemEFIApplication = 10

// Layout constants: offsets in the file, which equal the relative virtual
// addresses.
const (
	// dosHeaderSize is the MS-DOS header, with no stub program after it.
	dosHeaderSize = 64
	// lfanewOffset holds the file offset of the PE signature.
	lfanewOffset = 0x3C
	// peOffset is where the PE signature starts: right after the DOS header.
	peOffset = dosHeaderSize
	// numDirectories is how many data directories follow the optional
	// header: up to the base relocation table (index 5), which EDK II
	// reads to learn that there are no relocations.
	numDirectories = 6
	// optionalHeaderSize is the PE32+ optional header with its directories.
	optionalHeaderSize = 112 + numDirectories*8
	// sectionHeaderOffset is where the one section header starts.
	sectionHeaderOffset = peOffset + 4 + 20 + optionalHeaderSize
	// HeaderSize is the size of every header: the section starts here.
	HeaderSize = sectionHeaderOffset + 40
	// Align is the file and section alignment.
	Align = 16
	// minFileSize is the smallest file EDK II loads: it reads the whole
	// IMAGE_NT_HEADERS64, with all 16 data directories, from e_lfanew in
	// one go and refuses a file shorter than that (measured: a 320-byte
	// image fails with "Not Found", a 336-byte one boots).
	minFileSize = peOffset + 4 + 20 + 112 + 16*8
	// imageBase is the preferred load address, a multiple of 64 KiB.
	// Firmware loads the image wherever it likes; the code does not care.
	imageBase = 0x10000
)

// COFF characteristics and section flags used.
const (
	fileExecutableImage   = 0x0002 // IMAGE_FILE_EXECUTABLE_IMAGE
	fileLargeAddressAware = 0x0020 // IMAGE_FILE_LARGE_ADDRESS_AWARE
	scnCntCode            = 0x00000020
	scnCntInitializedData = 0x00000040
	scnMemExecute         = 0x20000000
	scnMemRead            = 0x40000000
	magicPE32Plus         = 0x20B
)

// ErrNoCode is returned for an empty program.
var ErrNoCode = errors.New("pe: no code")

// dosHeader is IMAGE_DOS_HEADER. Only Magic and Lfanew matter to UEFI.
type dosHeader struct {
	Magic  [2]byte    // e_magic: "MZ"
	_      [29]uint16 // e_cblp .. e_res2: unused
	Lfanew uint32     // e_lfanew at 0x3C: file offset of the PE signature
}

// fileHeader is the COFF file header (IMAGE_FILE_HEADER), after "PE\0\0".
type fileHeader struct {
	Machine              uint16 // target CPU
	NumberOfSections     uint16
	TimeDateStamp        uint32 // 0: reproducible
	PointerToSymbolTable uint32 // 0: no COFF symbols in an image
	NumberOfSymbols      uint32
	SizeOfOptionalHeader uint16
	Characteristics      uint16
}

// optionalHeader is the PE32+ optional header (IMAGE_OPTIONAL_HEADER64)
// without its data directories.
type optionalHeader struct {
	Magic                       uint16 // 0x20B: PE32+
	MajorLinkerVersion          uint8
	MinorLinkerVersion          uint8
	SizeOfCode                  uint32
	SizeOfInitializedData       uint32
	SizeOfUninitializedData     uint32
	AddressOfEntryPoint         uint32 // RVA of the entry point
	BaseOfCode                  uint32
	ImageBase                   uint64
	SectionAlignment            uint32
	FileAlignment               uint32
	MajorOperatingSystemVersion uint16
	MinorOperatingSystemVersion uint16
	MajorImageVersion           uint16
	MinorImageVersion           uint16
	MajorSubsystemVersion       uint16
	MinorSubsystemVersion       uint16
	Win32VersionValue           uint32 // reserved, 0
	SizeOfImage                 uint32 // loaded size, a multiple of SectionAlignment
	SizeOfHeaders               uint32 // a multiple of FileAlignment
	CheckSum                    uint32 // not checked for EFI images
	Subsystem                   uint16
	DllCharacteristics          uint16
	SizeOfStackReserve          uint64
	SizeOfStackCommit           uint64
	SizeOfHeapReserve           uint64
	SizeOfHeapCommit            uint64
	LoaderFlags                 uint32 // reserved, 0
	NumberOfRvaAndSizes         uint32 // data directories that follow
}

// dataDirectory is IMAGE_DATA_DIRECTORY: every one is empty here.
type dataDirectory struct {
	VirtualAddress uint32
	Size           uint32
}

// sectionHeader is IMAGE_SECTION_HEADER.
type sectionHeader struct {
	Name                 [8]byte
	VirtualSize          uint32 // bytes used in memory
	VirtualAddress       uint32 // RVA of the section
	SizeOfRawData        uint32 // bytes in the file, a multiple of FileAlignment
	PointerToRawData     uint32 // file offset
	PointerToRelocations uint32 // 0 in an image
	PointerToLinenumbers uint32
	NumberOfRelocations  uint16
	NumberOfLinenumbers  uint16
	Characteristics      uint32
}

// Write returns a PE32+ EFI application for machine whose single section
// holds code, entered at its first byte. The code must be position
// independent: the image has no relocations. A short program is padded
// with zeros to the smallest file firmware loads, 336 bytes.
func Write(machine Machine, code []byte) ([]byte, error) {
	if len(code) == 0 {
		return nil, ErrNoCode
	}
	if machine != AMD64 && machine != ARM64 {
		return nil, fmt.Errorf("pe: unknown machine 0x%04X: use 0x8664 (AMD64) or 0xAA64 (ARM64)", uint16(machine))
	}
	size := alignUp(max(len(code), minFileSize-HeaderSize))
	opt := optionalHeader{
		Magic:               magicPE32Plus,
		SizeOfCode:          uint32(size),
		AddressOfEntryPoint: HeaderSize,
		BaseOfCode:          HeaderSize,
		ImageBase:           imageBase,
		SectionAlignment:    Align,
		FileAlignment:       Align,
		SizeOfImage:         uint32(HeaderSize + size),
		SizeOfHeaders:       HeaderSize,
		Subsystem:           SubsystemEFIApplication,
		NumberOfRvaAndSizes: numDirectories,
	}
	sec := sectionHeader{
		Name:             [8]byte{'.', 't', 'e', 'x', 't'},
		VirtualSize:      uint32(len(code)),
		VirtualAddress:   HeaderSize,
		SizeOfRawData:    uint32(size),
		PointerToRawData: HeaderSize,
		Characteristics:  scnCntCode | scnCntInitializedData | scnMemExecute | scnMemRead,
	}
	var b bytes.Buffer
	b.Grow(HeaderSize + size)
	for _, v := range []any{
		dosHeader{Magic: [2]byte{'M', 'Z'}, Lfanew: peOffset},
		[4]byte{'P', 'E', 0, 0},
		fileHeader{
			Machine:              uint16(machine),
			NumberOfSections:     1,
			SizeOfOptionalHeader: optionalHeaderSize,
			Characteristics:      fileExecutableImage | fileLargeAddressAware,
		},
		opt,
		[numDirectories]dataDirectory{},
		sec,
	} {
		// Writing to a bytes.Buffer cannot fail.
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	if b.Len() != HeaderSize {
		return nil, fmt.Errorf("pe: headers are %d bytes, want %d", b.Len(), HeaderSize)
	}
	b.Write(code)
	b.Write(make([]byte, size-len(code)))
	return b.Bytes(), nil
}

func alignUp(n int) int { return (n + Align - 1) &^ (Align - 1) }
