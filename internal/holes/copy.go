package holes

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// zeros is what a hole reads as, handed to writers without a read(2):
// the kernel's zero-filling copy of a hole costs more than hashing it.
var zeros = make([]byte, 1<<16)

// ZeroWriter is a writer that takes a run of zeros by its length: Copy
// hands it each hole that way, so a compressor that codes zero runs
// itself (pkg/oci/internal/zzstd) never sees a hole's bytes.
type ZeroWriter interface {
	io.Writer
	WriteZeros(n int64) error
}

// readBufs are Copy's buffers for the data extents.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 1<<18); return &b }}

// Copy writes the first size bytes of f to w: the data extents as read,
// the holes from memory, or to a ZeroWriter by their length. It is
// io.Copy of the file for any writer that only looks at the bytes (a
// hash, a compressor), without reading the holes. Where the file system
// cannot tell (Data reports false) the whole file is read. A file
// shorter than size is io.ErrUnexpectedEOF; a done ctx stops the copy
// with its error.
func Copy(ctx context.Context, w io.Writer, f *os.File, size int64) (int64, error) {
	ext, ok := Data(ctx, f, size)
	if !ok {
		ext = []Extent{{0, size}}
	}
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	var off int64
	// hole writes zeros from off up to end.
	hole := func(end int64) error {
		if zw, ok := w.(ZeroWriter); ok && off < end {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := zw.WriteZeros(end - off); err != nil {
				return err
			}
			off = end
			return nil
		}
		for off < end {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := w.Write(zeros[:min(int64(len(zeros)), end-off)])
			off += int64(n)
			if err != nil {
				return err
			}
		}
		return nil
	}
	for _, e := range ext {
		if err := hole(e.Off); err != nil {
			return off, err
		}
		for off < e.End {
			if err := ctx.Err(); err != nil {
				return off, err
			}
			want := buf[:min(int64(len(buf)), e.End-off)]
			m, err := f.ReadAt(want, off)
			if err == io.EOF {
				if m == len(want) {
					err = nil // the file ends exactly here
				} else {
					err = io.ErrUnexpectedEOF
				}
			}
			if m > 0 {
				n, werr := w.Write(buf[:m])
				off += int64(n)
				if werr != nil {
					return off, werr
				}
			}
			if err != nil {
				return off, fmt.Errorf("read %s at %d: %w", f.Name(), off, err)
			}
		}
	}
	// A file that shrank after Data still ends in a hole here: check
	// that the size is still there before inventing its zeros.
	if off < size {
		if st, err := f.Stat(); err != nil {
			return off, err
		} else if st.Size() < size {
			return off, fmt.Errorf("read %s at %d: %w", f.Name(), st.Size(), io.ErrUnexpectedEOF)
		}
	}
	return off, hole(size)
}
