package disk

import (
	"cmp"
	"fmt"
	"slices"
)

// Chunk is data at an offset of a disk.
type Chunk struct {
	Off  int64
	Data []byte
}

// Sparse is an in-memory disk made of chunks of data at offsets, zeros
// everywhere else: a partitioned disk whose tables sit at both ends. Each
// chunk is one extent, so a 1 TiB disk costs what its chunks cost.
type Sparse struct {
	chunks []Chunk
	size   int64
}

// NewSparse returns a disk of the given virtual size holding the chunks.
// The size must be a multiple of SectorSize; the chunks must lie inside
// it and must not overlap. Empty chunks are dropped.
func NewSparse(size int64, chunks ...Chunk) (*Sparse, error) {
	if size <= 0 || size%SectorSize != 0 {
		return nil, fmt.Errorf("%w, got %d", ErrSize, size)
	}
	var cs []Chunk
	for _, c := range chunks {
		if len(c.Data) > 0 {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(a, b Chunk) int { return cmp.Compare(a.Off, b.Off) })
	end := int64(0)
	for _, c := range cs {
		if c.Off < 0 || c.Off+int64(len(c.Data)) > size {
			return nil, fmt.Errorf("disk: a chunk of %d bytes at %d does not fit in a %d-byte disk", len(c.Data), c.Off, size)
		}
		if c.Off < end {
			return nil, fmt.Errorf("disk: the chunk at %d overlaps the one before it, which ends at %d", c.Off, end)
		}
		end = c.Off + int64(len(c.Data))
	}
	return &Sparse{chunks: cs, size: size}, nil
}

// Size returns the virtual size in bytes.
func (d *Sparse) Size() int64 { return d.size }

// Extents returns one extent per chunk, in ascending order.
func (d *Sparse) Extents() []Extent {
	out := make([]Extent, len(d.chunks))
	for i, c := range d.chunks {
		out[i] = Extent{Off: c.Off, Len: int64(len(c.Data))}
	}
	return out
}

// ReadAt reads the disk's bytes; everything outside the chunks is zero.
func (d *Sparse) ReadAt(p []byte, off int64) (int, error) {
	q, err := window(p, off, d.size)
	end := off + int64(len(q))
	for _, c := range d.chunks {
		cend := c.Off + int64(len(c.Data))
		if cend <= off || c.Off >= end {
			continue
		}
		lo, hi := max(off, c.Off), min(end, cend)
		copy(q[lo-off:hi-off], c.Data[lo-c.Off:hi-c.Off])
	}
	return len(q), err
}
