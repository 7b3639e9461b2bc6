package efi

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"unicode/utf16"
)

// Offsets the probes use into the UEFI tables and protocols (UEFI
// Specification 2.10, sections 4.4, 7.2, 7.3, 9.1, 12.3 and 13.9), the same
// on both 64-bit architectures. The entries named in efi.go are not
// repeated here.
const (
	// EFI_SIMPLE_TEXT_INPUT_PROTOCOL
	conInReadKeyStroke = 0x08 // (This, *EFI_INPUT_KEY)
	// EFI_BOOT_SERVICES
	bsAllocatePages      = 0x28  // (Type, MemoryType, Pages, *Memory)
	bsHandleProtocol     = 0x98  // (Handle, *Guid, **Interface)
	bsConnectController  = 0x108 // (Handle, *DriverImage, *RemainingPath, Recursive)
	bsLocateDevicePath   = 0xB8  // (*Guid, **DevicePath, *Handle)
	bsLocateHandleBuffer = 0x138 // (SearchType, *Guid, SearchKey, *NoHandles, **Buffer)
	// EFI_LOADED_IMAGE_PROTOCOL
	liDeviceHandle = 0x18 // the handle of the volume the image came from
	// EFI_BLOCK_IO_PROTOCOL
	bioMedia       = 0x08 // *EFI_BLOCK_IO_MEDIA
	bioReadBlocks  = 0x18 // (This, MediaId, LBA, BufferSize, *Buffer)
	bioWriteBlocks = 0x20 // (This, MediaId, LBA, BufferSize, *Buffer)
	bioFlushBlocks = 0x28 // (This)
	// EFI_BLOCK_IO_MEDIA
	mediaID               = 0x00 // UINT32
	mediaRemovable        = 0x04 // BOOLEAN
	mediaPresent          = 0x05 // BOOLEAN
	mediaLogicalPartition = 0x06 // BOOLEAN: a partition, not a whole disk
	mediaReadOnly         = 0x07 // BOOLEAN
	mediaBlockSize        = 0x0C // UINT32
	// EFI_INPUT_KEY
	keyUnicodeChar = 0x02 // CHAR16
	// EFI_DEVICE_PATH_PROTOCOL node header (section 10.2)
	dpType    = 0x00 // UINT8
	dpSubType = 0x01 // UINT8
	dpLength  = 0x02 // UINT16, the node's length including this header
)

// Values passed to or read from the firmware by the probes.
const (
	allHandles       = 0 // EFI_LOCATE_SEARCH_TYPE AllHandles
	byProtocol       = 2 // EFI_LOCATE_SEARCH_TYPE ByProtocol
	allocateAnyPages = 0 // EFI_ALLOCATE_TYPE AllocateAnyPages
	loaderData       = 2 // EFI_MEMORY_TYPE EfiLoaderData
	pageSize         = 4096
	// Device path node types and subtypes: MEDIA_DEVICE_PATH's hard
	// drive and CD-ROM nodes start a partition's part of the path.
	dpMedia        = 0x04
	dpMediaHD      = 0x01
	dpMediaCDROM   = 0x02
	dpEnd          = 0x7F
	dpEndEntire    = 0xFF
	dpEndNodeBytes = 4
)

// The protocols' GUIDs (EFI_GUID: a little-endian UINT32, two UINT16 and
// eight bytes).
var (
	guidBlockIo     = guid("964e5b21-6459-11d2-8e39-00a0c969723b") // EFI_BLOCK_IO_PROTOCOL_GUID
	guidLoadedImage = guid("5b1b31a1-9562-11d2-8e3f-00a0c969723b") // EFI_LOADED_IMAGE_PROTOCOL_GUID
	guidDevicePath  = guid("09576e91-6d3f-11d2-8e39-00a0c969723b") // EFI_DEVICE_PATH_PROTOCOL_GUID
)

// guid encodes a GUID in its registry form as the 16 bytes of an EFI_GUID.
func guid(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("efi: bad GUID " + s)
	}
	out := make([]byte, 16)
	binary.LittleEndian.PutUint32(out[0:], binary.BigEndian.Uint32(b[0:]))
	binary.LittleEndian.PutUint16(out[4:], binary.BigEndian.Uint16(b[4:]))
	binary.LittleEndian.PutUint16(out[6:], binary.BigEndian.Uint16(b[6:]))
	copy(out[8:], b[8:])
	return out
}

// ucs2 is s as NUL-terminated UCS-2, the CHAR16 strings OutputString takes.
func ucs2(s string) []byte {
	u := utf16.Encode(append([]rune(s), 0))
	b := make([]byte, 0, 2*len(u))
	for _, c := range u {
		b = append(b, byte(c), byte(c>>8))
	}
	return b
}
