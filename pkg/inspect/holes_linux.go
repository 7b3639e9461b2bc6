package inspect

import (
	"context"
	"errors"
	"os"
	"syscall"
)

// lseek whence values for holes (Linux, since 3.1).
const (
	seekData = 3
	seekHole = 4
)

// maxExtents bounds the extent list; past it the rest of the file counts
// as data, which is always correct, only slower.
const maxExtents = 1 << 20

// dataExtents lists where f holds data, with SEEK_DATA and SEEK_HOLE. It
// reports false when the file system cannot tell.
func dataExtents(ctx context.Context, f *os.File, size int64) ([]extent, bool) {
	var out []extent
	for off := int64(0); off < size; {
		if ctx.Err() != nil || len(out) == maxExtents {
			return append(out, extent{off, size}), true
		}
		d, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return nil, false
		}
		h, err := f.Seek(d, seekHole)
		if err != nil {
			return nil, false
		}
		if h <= d {
			return nil, false
		}
		out = append(out, extent{d, h})
		off = h
	}
	return out, true
}
