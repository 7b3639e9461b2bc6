package vdi

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"slices"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

// Detect reports whether head, the start of a file, carries the VDI
// signature at offset 0x40 (what QEMU probes) followed by a version
// VirtualBox reads (major 1, or the old 0.2), which keeps four bytes of
// another format that happen to match from being taken for a VDI.
func Detect(head []byte, _ io.ReaderAt, _ int64) bool {
	if len(head) < versionOffset+4 || binary.LittleEndian.Uint32(head[signatureOffset:]) != Signature {
		return false
	}
	v := binary.LittleEndian.Uint32(head[versionOffset:])
	return v>>16 == 1 || v == 0x00000002
}

// corrupt wraps info.ErrCorrupt with what is wrong.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("vdi: %w: %s", info.ErrCorrupt, fmt.Sprintf(format, args...))
}

// Inspect reads a VDI image's header and block map. It checks what QEMU
// and VirtualBox check when they open the file, and that every stored
// block lies inside the file.
func Inspect(r io.ReaderAt, size int64) (*info.Info, error) {
	if size < headerOffset+header1Size {
		return nil, corrupt("file of %d bytes is too small for a header", size)
	}
	buf := make([]byte, headerEnd)
	n, err := r.ReadAt(buf[:min(int64(len(buf)), size)], 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("vdi: read header: %w", err)
	}
	clear(buf[n:]) // a 1.1 header of 384 bytes has no LCHS geometry
	var h Header
	if _, err := binary.Decode(buf, binary.LittleEndian, &h); err != nil {
		return nil, corrupt("header: %v", err)
	}
	switch {
	case h.Signature != Signature:
		return nil, corrupt("bad signature %#08x", h.Signature)
	case h.Version != Version:
		return nil, corrupt("unsupported version %d.%d", h.Version>>16, h.Version&0xffff)
	case h.HeaderSize < header1Size:
		return nil, corrupt("header size %d is smaller than %d", h.HeaderSize, header1Size)
	case h.ImageType != TypeDynamic && h.ImageType != TypeFixed:
		return nil, corrupt("unsupported image type %d", h.ImageType)
	case h.BlocksOffset < headerOffset+max(header1Size, h.HeaderSize) || h.BlocksOffset%sectorSize != 0:
		return nil, corrupt("bad block map offset %d", h.BlocksOffset)
	case h.DataOffset%sectorSize != 0 ||
		int64(h.DataOffset) < int64(h.BlocksOffset)+4*int64(h.Blocks):
		return nil, corrupt("bad data offset %d", h.DataOffset)
	case h.LegacyGeometry.SectorLen != sectorSize:
		return nil, corrupt("sector size %d is not %d", h.LegacyGeometry.SectorLen, sectorSize)
	case h.BlockSize == 0 || bits.OnesCount32(h.BlockSize) != 1:
		return nil, corrupt("block size %d is not a power of two", h.BlockSize)
	case h.BlockExtra != 0 && bits.OnesCount32(h.BlockExtra) != 1:
		return nil, corrupt("block extra size %d is not a power of two", h.BlockExtra)
	case h.DiskSize == 0 || h.Blocks == 0 || h.DiskSize > uint64(h.Blocks)*uint64(h.BlockSize):
		return nil, corrupt("disk size %d does not fit %d blocks of %d bytes", h.DiskSize, h.Blocks, h.BlockSize)
	case h.DiskSize > 1<<62:
		return nil, corrupt("disk size %d is too large", h.DiskSize)
	case h.BlocksAllocated > h.Blocks:
		return nil, corrupt("%d blocks allocated of %d", h.BlocksAllocated, h.Blocks)
	case h.UUIDCreate == [16]byte{} || h.UUIDModify == [16]byte{}:
		return nil, corrupt("null create or modify UUID")
	}
	if end := int64(h.BlocksOffset) + 4*int64(h.Blocks); end > size {
		return nil, corrupt("block map ends at %d, past the end of the %d-byte file", end, size)
	}
	stride := int64(h.BlockSize) + int64(h.BlockExtra)
	count, err := scanBlockMap(r, int64(h.BlocksOffset), h.Blocks, func(i, v uint32) error {
		if v >= h.Blocks {
			return corrupt("block %d points to data block %d of %d", i, v, h.Blocks)
		}
		if end := int64(h.DataOffset) + (int64(v)+1)*stride; end > size {
			return corrupt("block %d ends at %d, past the end of the %d-byte file", i, end, size)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if count != h.BlocksAllocated {
		return nil, corrupt("block map holds %d blocks, header says %d", count, h.BlocksAllocated)
	}
	sub := "dynamic"
	if h.ImageType == TypeFixed {
		sub = "fixed"
	}
	return &info.Info{
		Format:      Type,
		Subformat:   sub,
		VirtualSize: int64(h.DiskSize),
		FileSize:    size,
		BlockSize:   int64(h.BlockSize),
		Allocated:   int64(count) * int64(h.BlockSize),
	}, nil
}

// scanBlockMap reads n entries at off in chunks, calls fn for each stored
// block and returns how many there are. A data block used twice is an
// error, as qemu-img check reports it. The stored indexes are kept in a
// slice, four bytes per entry read, and sorted at the end; a repeat of
// the entry before fails at once, so a block map in a hole (zeros, all
// pointing at block 0) costs two entries, not the map's size.
func scanBlockMap(r io.ReaderAt, off int64, n uint32, fn func(i, v uint32) error) (uint32, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	var used []uint32
	for i := uint32(0); i < n; {
		k := min(int64(n-i)*4, chunk)
		if m, err := r.ReadAt(buf[:k], off+int64(i)*4); int64(m) < k {
			return 0, corrupt("read block map: %v", err)
		}
		for j := int64(0); j < k; j, i = j+4, i+1 {
			v := binary.LittleEndian.Uint32(buf[j:])
			if v >= BlockZero {
				continue
			}
			if err := fn(i, v); err != nil {
				return 0, err
			}
			if len(used) > 0 && used[len(used)-1] == v {
				return 0, corrupt("data block %d is used twice", v)
			}
			used = append(used, v)
		}
	}
	slices.Sort(used)
	for i := 1; i < len(used); i++ {
		if used[i] == used[i-1] {
			return 0, corrupt("data block %d is used twice", used[i])
		}
	}
	return uint32(len(used)), nil
}
