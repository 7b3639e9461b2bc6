package vhd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/span"
)

// Detect reports whether a file is a VHD: the footer cookie at offset 0
// (dynamic, or a footer copy) or in the last 512 bytes (fixed).
func Detect(head []byte, r io.ReaderAt, size int64) bool {
	if bytes.HasPrefix(head, []byte(footerCookie)) {
		return true
	}
	if r == nil || size < footerSize {
		return false
	}
	var c [8]byte
	if _, err := r.ReadAt(c[:], size-footerSize); err != nil {
		return false
	}
	return string(c[:]) == footerCookie
}

// corrupt wraps info.ErrCorrupt with what is wrong.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("vhd: %w: %s", info.ErrCorrupt, fmt.Sprintf(format, args...))
}

// readFooter reads and checks a footer at off.
func readFooter(r io.ReaderAt, off int64) (*Footer, error) {
	b := make([]byte, footerSize)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, corrupt("read footer at %d: %v", off, err)
	}
	if string(b[:8]) != footerCookie {
		return nil, corrupt("no footer at %d", off)
	}
	var f Footer
	if _, err := binary.Decode(b, binary.BigEndian, &f); err != nil {
		return nil, corrupt("footer: %v", err)
	}
	binary.BigEndian.PutUint32(b[footerChecksumOffset:], 0)
	if sum := checksum(b); sum != f.Checksum {
		return nil, corrupt("footer checksum %#08x, computed %#08x", f.Checksum, sum)
	}
	return &f, nil
}

// Inspect reads a VHD's footer and, for a dynamic disk, its header and
// BAT. It checks what QEMU checks when it opens the file, plus the
// footer at the end of a dynamic disk and that every block lies inside
// the file.
func Inspect(r io.ReaderAt, size int64) (*info.Info, error) {
	if size < footerSize {
		return nil, corrupt("file of %d bytes is too small for a footer", size)
	}
	head := make([]byte, 8)
	if _, err := r.ReadAt(head, 0); err != nil {
		return nil, corrupt("read: %v", err)
	}
	off := int64(0)
	if string(head) != footerCookie {
		off = size - footerSize // a fixed disk has only the footer at the end
	}
	f, err := readFooter(r, off)
	if err != nil {
		return nil, err
	}
	vsize := int64(f.CurrentSize)
	switch {
	case f.CurrentSize%sectorSize != 0 || f.CurrentSize == 0:
		return nil, corrupt("current size %d is not a positive multiple of 512", f.CurrentSize)
	case f.CurrentSize > MaxSize:
		return nil, corrupt("current size %d is over 2040 GiB", f.CurrentSize)
	}
	switch f.DiskType {
	case typeFixed:
		if size < vsize+footerSize {
			return nil, corrupt("fixed disk of %d bytes in a %d-byte file", vsize, size)
		}
		return &info.Info{Format: Type, Subformat: Fixed, VirtualSize: vsize, FileSize: size, Allocated: vsize}, nil
	case typeDynamic:
	case typeDifferencing:
		return nil, corrupt("differencing disks are not supported")
	default:
		return nil, corrupt("unknown disk type %d", f.DiskType)
	}
	if off != 0 {
		return nil, corrupt("dynamic disk without a footer copy at offset 0")
	}
	if _, err := readFooter(r, size-footerSize); err != nil {
		return nil, fmt.Errorf("%w (the end of the file)", err)
	}
	if f.DataOffset > uint64(size-headerSize) {
		return nil, corrupt("dynamic header offset %d past the end of the file", f.DataOffset)
	}
	hb := make([]byte, headerSize)
	if _, err := r.ReadAt(hb, int64(f.DataOffset)); err != nil {
		return nil, corrupt("read dynamic header: %v", err)
	}
	var h DynamicHeader
	if _, err := binary.Decode(hb, binary.BigEndian, &h); err != nil {
		return nil, corrupt("dynamic header: %v", err)
	}
	binary.BigEndian.PutUint32(hb[headerChecksumOffset:], 0)
	switch {
	case string(h.Cookie[:]) != headerCookie:
		return nil, corrupt("bad dynamic header cookie %q", h.Cookie[:])
	case checksum(hb) != h.Checksum:
		return nil, corrupt("dynamic header checksum %#08x, computed %#08x", h.Checksum, checksum(hb))
	case h.BlockSize < sectorSize || bits.OnesCount32(h.BlockSize) != 1:
		return nil, corrupt("block size %d is not a power of two of at least 512", h.BlockSize)
	case uint64(h.MaxTableEntries)*uint64(h.BlockSize) < f.CurrentSize:
		return nil, corrupt("%d blocks of %d bytes do not cover %d bytes", h.MaxTableEntries, h.BlockSize, f.CurrentSize)
	case h.TableOffset > uint64(size) || int64(h.TableOffset)+4*int64(h.MaxTableEntries) > size:
		return nil, corrupt("BAT at %d with %d entries is past the end of the file", h.TableOffset, h.MaxTableEntries)
	}
	bsize := int64(h.BlockSize)
	bmap := (bsize/sectorSize/8 + sectorSize - 1) / sectorSize * sectorSize
	// The structures no block may overlap, checked entry by entry so that
	// a BAT of zeros (every block at offset 0) fails at its first entry.
	fixed := []span.Span{
		{Off: 0, Len: footerSize, What: "footer copy"},
		{Off: int64(f.DataOffset), Len: headerSize, What: "dynamic header"},
		{Off: int64(h.TableOffset), Len: 4 * int64(h.MaxTableEntries), What: "BAT"},
		{Off: size - footerSize, Len: footerSize, What: "footer"},
	}
	var meta span.Set
	for _, s := range fixed {
		meta.Add(s.Off, s.Len, s.What)
	}
	if a, b, ok := meta.Overlap(); ok {
		return nil, corrupt("%s at %d overlaps %s at %d", b.What, b.Off, a.What, a.Off)
	}
	var blocks span.Set
	count, err := scanBAT(r, int64(h.TableOffset), h.MaxTableEntries, func(i, v uint32) error {
		start := int64(v) * sectorSize
		if end := start + bmap + bsize; end > size {
			return corrupt("block %d ends at %d, past the end of the %d-byte file", i, end, size)
		}
		for _, s := range fixed {
			if start < s.End() && s.Off < start+bmap+bsize {
				return corrupt("block %d at %d overlaps the %s at %d", i, start, s.What, s.Off)
			}
		}
		blocks.Add(start, bmap+bsize, "block")
		return nil
	})
	if err == nil {
		if a, b, ok := blocks.Overlap(); ok {
			err = corrupt("the blocks at %d and %d overlap", a.Off, b.Off)
		}
	}
	if err != nil {
		return nil, err
	}
	return &info.Info{
		Format:      Type,
		Subformat:   Dynamic,
		VirtualSize: vsize,
		FileSize:    size,
		BlockSize:   bsize,
		Allocated:   int64(count) * bsize,
	}, nil
}

// scanBAT reads n BAT entries at off in chunks, calls fn for each stored
// block and returns how many there are.
func scanBAT(r io.ReaderAt, off int64, n uint32, fn func(i, v uint32) error) (uint32, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	var count uint32
	for i := uint32(0); i < n; {
		k := min(int64(n-i)*4, chunk)
		if _, err := r.ReadAt(buf[:k], off+int64(i)*4); err != nil {
			return 0, corrupt("read BAT: %v", err)
		}
		for j := int64(0); j < k; j, i = j+4, i+1 {
			v := binary.BigEndian.Uint32(buf[j:])
			if v == unallocated {
				continue
			}
			if err := fn(i, v); err != nil {
				return 0, err
			}
			count++
		}
	}
	return count, nil
}
