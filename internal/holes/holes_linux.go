package holes

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

// Data lists where f (size bytes) may hold data; everything else is a
// hole and reads as zeros. It reports false when the file system cannot
// tell. It moves f's offset. A done ctx ends the list with the rest of
// the file as data.
func Data(ctx context.Context, f *os.File, size int64) ([]Extent, bool) {
	var out []Extent
	for off := int64(0); off < size; {
		if ctx.Err() != nil || len(out) == maxExtents {
			return append(out, Extent{off, size}), true
		}
		d, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			return nil, false
		}
		h, err := f.Seek(d, seekHole)
		if err != nil || h <= d {
			return nil, false
		}
		out = append(out, Extent{d, min(h, size)})
		off = h
	}
	return out, true
}
