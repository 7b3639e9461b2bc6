// Package disk is the raw virtual disk that every format is written from:
// a boot sector followed by zeros up to the virtual size (Image), or chunks
// of data at offsets, such as a partition table at each end (Sparse).
//
// A Disk is an io.ReaderAt with a size. Writers never scan the whole virtual
// size: they ask Extents for the ranges that may hold data and treat every
// other byte as zero, so a 1 TiB disk costs as much as a 1 MiB one.
package disk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// SectorSize is the logical sector size of every disk this project writes.
const SectorSize = 512

// ErrSize is returned for a virtual size that is not a positive multiple of
// SectorSize.
var ErrSize = errors.New("disk: size must be a positive multiple of 512 bytes")

// Disk is a raw virtual disk.
type Disk interface {
	io.ReaderAt
	// Size is the virtual size in bytes, a multiple of SectorSize.
	Size() int64
}

// Extent is a byte range of a disk that may hold non-zero data.
type Extent struct {
	Off, Len int64
}

// Extenter is implemented by disks that know where their data is, like
// SEEK_DATA on a sparse file. Bytes outside every extent read as zero.
type Extenter interface {
	Extents() []Extent
}

// Extents returns the ranges of d that may hold data, in ascending order. A
// disk that does not implement Extenter is one extent covering all of it.
func Extents(d Disk) []Extent {
	if e, ok := d.(Extenter); ok {
		return e.Extents()
	}
	return []Extent{{0, d.Size()}}
}

// Image is an in-memory disk: data at offset 0, zeros up to size.
type Image struct {
	data []byte
	size int64
}

// New returns a disk of the given virtual size whose first bytes are data.
// The size must be a multiple of SectorSize and at least len(data).
func New(data []byte, size int64) (*Image, error) {
	if size <= 0 || size%SectorSize != 0 {
		return nil, fmt.Errorf("%w, got %d", ErrSize, size)
	}
	if int64(len(data)) > size {
		return nil, fmt.Errorf("disk: %d bytes of data do not fit in a %d-byte disk", len(data), size)
	}
	return &Image{data: data, size: size}, nil
}

// Size returns the virtual size in bytes.
func (d *Image) Size() int64 { return d.size }

// Extents returns the one range that holds data.
func (d *Image) Extents() []Extent {
	if len(d.data) == 0 {
		return nil
	}
	return []Extent{{0, int64(len(d.data))}}
}

// ReadAt reads the disk's bytes; everything past the data is zero.
func (d *Image) ReadAt(p []byte, off int64) (int, error) {
	q, err := window(p, off, d.size)
	if len(q) > 0 && off < int64(len(d.data)) {
		copy(q, d.data[off:])
	}
	return len(q), err
}

// window is the io.ReaderAt bookkeeping the disks here share: it returns
// the part of p that a read at off of a size-byte disk fills, zeroed, and
// io.EOF when the read reaches past the end.
func window(p []byte, off, size int64) ([]byte, error) {
	if off < 0 {
		return nil, errors.New("disk: negative offset")
	}
	if off >= size {
		return nil, io.EOF
	}
	var eof error
	if rem := size - off; int64(len(p)) > rem {
		p, eof = p[:rem], io.EOF
	}
	clear(p)
	return p, eof
}

// Blocks returns the indexes of the blockSize-byte blocks of d that hold at
// least one non-zero byte, in ascending order. Only the extents are read,
// through one small buffer, so the cost follows the data, not the virtual
// size or the block size. The last block may be partial when the size is
// not a multiple of blockSize.
func Blocks(d Disk, blockSize int64) ([]int64, error) {
	if blockSize <= 0 {
		return nil, errors.New("disk: block size must be positive")
	}
	var out []int64
	buf := make([]byte, min(blockSize, scanSize))
	for _, e := range Extents(d) {
		end := min(e.Off+e.Len, d.Size())
		for off := e.Off; off < end; {
			b := off / blockSize
			if len(out) > 0 && out[len(out)-1] == b {
				// Already known to hold data: skip to the next block.
				off = (b + 1) * blockSize
				continue
			}
			p := buf[:min(int64(len(buf)), end-off, (b+1)*blockSize-off)]
			if _, err := d.ReadAt(p, off); err != nil && err != io.EOF {
				return nil, fmt.Errorf("disk: read block %d: %w", b, err)
			}
			if !IsZero(p) {
				out = append(out, b)
			}
			off += int64(len(p))
		}
	}
	return out, nil
}

// scanSize bounds the buffers Blocks and CopyBlock read through, so a
// 2 MiB VHD block costs no 2 MiB of fresh memory to fault in and clear.
const scanSize = 64 << 10

// ReadBlock reads block b of len(p) bytes into p, zero-padding past the end
// of the disk. The writers pass one buffer for all their blocks, since a
// new one per block (up to 2 MiB each) was most of a build's allocation.
func ReadBlock(d Disk, b int64, p []byte) error {
	if err := readPadded(d, p, b*int64(len(p))); err != nil {
		return fmt.Errorf("disk: read block %d: %w", b, err)
	}
	return nil
}

// readPadded fills p from d at off, with zeros past the end of the disk.
func readPadded(d Disk, p []byte, off int64) error {
	n := max(0, min(int64(len(p)), d.Size()-off))
	if n > 0 {
		if _, err := d.ReadAt(p[:n], off); err != nil && err != io.EOF {
			return err
		}
	}
	clear(p[n:])
	return nil
}

// CopyBlock writes block b of blockSize bytes of d to w, zero-padded past
// the end of the disk, in pieces of at most 64 KiB that start at multiples
// of 64 KiB within the block, through a pooled buffer. It is ReadBlock for
// blocks too large to hold: a 2 MiB VHD block read whole cost a build more
// in page faults than the hashing or writing that followed.
func CopyBlock(w io.Writer, d Disk, b, blockSize int64) error {
	bp := copyBufs.Get().(*[scanSize]byte)
	defer copyBufs.Put(bp)
	for off := int64(0); off < blockSize; off += scanSize {
		p := bp[:min(scanSize, blockSize-off)]
		if err := readPadded(d, p, b*blockSize+off); err != nil {
			return fmt.Errorf("disk: read block %d: %w", b, err)
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

var copyBufs = sync.Pool{New: func() any { return new([scanSize]byte) }}

// IsZero reports whether every byte of p is zero. It compares a block at
// a time (bytes.Equal is vectorised), as the writers call it on every
// block they store.
func IsZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroBlock))
		if !bytes.Equal(p[:n], zeroBlock[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

var zeroBlock [4096]byte

// Section returns the size bytes of d that start at off as a disk of its
// own. Bytes past the end of d read as zero, so a writer can store the last,
// partial block of a disk as a whole block. The section implements Extenter
// with d's extents clipped to the window, so zero blocks stay cheap.
func Section(d Disk, off, size int64) Disk {
	return &section{d: d, off: off, size: size}
}

// section is the window Section returns.
type section struct {
	d         Disk
	off, size int64
}

// Size returns the window's size.
func (s *section) Size() int64 { return s.size }

// ReadAt reads the window; bytes beyond the underlying disk are zero.
func (s *section) ReadAt(p []byte, off int64) (int, error) {
	q, eof := window(p, off, s.size)
	// Only the part inside the underlying disk is read.
	if in := s.d.Size() - (s.off + off); len(q) > 0 && in > 0 {
		k := min(int64(len(q)), in)
		if _, err := s.d.ReadAt(q[:k], s.off+off); err != nil && err != io.EOF {
			return 0, err
		}
	}
	return len(q), eof
}

// Extents clips the disk's extents to the window.
func (s *section) Extents() []Extent {
	var out []Extent
	for _, e := range Extents(s.d) {
		lo, hi := max(e.Off, s.off), min(e.Off+e.Len, s.off+s.size)
		if lo < hi {
			out = append(out, Extent{Off: lo - s.off, Len: hi - lo})
		}
	}
	return out
}
