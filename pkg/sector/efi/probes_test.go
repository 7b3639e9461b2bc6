package efi

import (
	"bytes"
	"testing"
)

// TestGUID checks the EFI_GUID encoding against the bytes edk2's
// MdePkg declares for EFI_BLOCK_IO_PROTOCOL_GUID ({0x964e5b21, 0x6459,
// 0x11d2, {0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b}}).
func TestGUID(t *testing.T) {
	want := []byte{0x21, 0x5b, 0x4e, 0x96, 0x59, 0x64, 0xd2, 0x11, 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b}
	if got := guidBlockIo; !bytes.Equal(got, want) {
		t.Errorf("BlockIo GUID % x, want % x", got, want)
	}
}

func TestUCS2(t *testing.T) {
	if got, want := ucs2("a═"), []byte{'a', 0, 0x50, 0x25, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("ucs2 % x, want % x", got, want)
	}
}
