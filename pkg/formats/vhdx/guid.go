package vhdx

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// guid is a GUID as VHDX stores it: the Windows layout, where the first
// three fields (Data1 uint32, Data2 and Data3 uint16) are little-endian and
// the last eight bytes are stored as written.
type guid [16]byte

// mustGUID turns the canonical text form "2dc27766-f623-4200-9d64-
// 115e9bfd4a08" into the on-disk form. It is for the spec's constants.
func mustGUID(s string) guid {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic(fmt.Sprintf("vhdx: bad GUID constant %q", s))
	}
	return fromUUID([16]byte(b))
}

// fromUUID converts a UUID in RFC 9562 (big-endian) byte order to the
// Windows on-disk layout, so that both print as the same text.
func fromUUID(u [16]byte) guid {
	var g guid
	binary.LittleEndian.PutUint32(g[0:], binary.BigEndian.Uint32(u[0:]))
	binary.LittleEndian.PutUint16(g[4:], binary.BigEndian.Uint16(u[4:]))
	binary.LittleEndian.PutUint16(g[6:], binary.BigEndian.Uint16(u[6:]))
	copy(g[8:], u[8:])
	return g
}

// String formats g in the canonical text form.
func (g guid) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]),
		binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16])
}

// hashGUID derives a GUID from a SHA-256 of label and seed: an RFC 9562
// version 8 UUID (the name-based SHA-256 construction of its appendix
// B.2), so that files are reproducible and yet each kind of GUID differs.
func hashGUID(seed []byte, label string) guid {
	h := sha256.New()
	h.Write([]byte("tinyvm-oci vhdx " + label + "\x00"))
	h.Write(seed)
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return fromUUID(u)
}
