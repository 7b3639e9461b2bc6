// Package raw writes a disk as a raw image: its bytes, nothing more.
//
// When the destination can seek (an *os.File), runs of zeros become holes,
// so a 2 TiB raw image is written instantly and takes no space on disk.
package raw

import (
	"errors"
	"fmt"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

// Type is the format's name, as qemu-img calls it.
const Type = "raw"

// chunkSize is how much is copied at a time, and the granularity of holes.
const chunkSize = 64 << 10

// truncater is implemented by *os.File.
type truncater interface {
	Truncate(size int64) error
}

// Write writes the virtual disk d to w byte for byte. It returns the number
// of bytes the image spans, which is always d.Size().
//
// If w is an io.WriteSeeker with a Truncate method (an *os.File), zero
// ranges are skipped with Seek and the file is extended with Truncate, so
// they become holes. Otherwise zeros are written out.
func Write(w io.Writer, d disk.Disk) (int64, error) {
	size := d.Size()
	ws, seekable := w.(io.WriteSeeker)
	if seekable {
		if _, ok := w.(truncater); !ok {
			seekable = false
		}
	}
	var start int64
	if seekable {
		var err error
		if start, err = ws.Seek(0, io.SeekCurrent); err != nil {
			seekable = false
		}
	}
	zeros := make([]byte, chunkSize)
	buf := make([]byte, chunkSize)
	var pos int64 // bytes emitted so far, relative to start
	emitZeros := func(n int64) error {
		if seekable {
			_, err := ws.Seek(n, io.SeekCurrent)
			pos += n
			return err
		}
		for n > 0 {
			k := min(n, chunkSize)
			if _, err := w.Write(zeros[:k]); err != nil {
				return err
			}
			n -= k
			pos += k
		}
		return nil
	}
	for _, e := range disk.Extents(d) {
		if e.Off < pos {
			return pos, errors.New("raw: disk extents overlap or are out of order")
		}
		if err := emitZeros(e.Off - pos); err != nil {
			return pos, fmt.Errorf("raw: %w", err)
		}
		for off := e.Off; off < e.Off+e.Len; off += chunkSize {
			p := buf[:min(chunkSize, e.Off+e.Len-off)]
			if _, err := d.ReadAt(p, off); err != nil && err != io.EOF {
				return pos, fmt.Errorf("raw: read disk: %w", err)
			}
			if seekable && disk.IsZero(p) {
				if err := emitZeros(int64(len(p))); err != nil {
					return pos, fmt.Errorf("raw: %w", err)
				}
				continue
			}
			if _, err := w.Write(p); err != nil {
				return pos, fmt.Errorf("raw: %w", err)
			}
			pos += int64(len(p))
		}
	}
	if err := emitZeros(size - pos); err != nil {
		return pos, fmt.Errorf("raw: %w", err)
	}
	if seekable {
		if err := w.(truncater).Truncate(start + size); err != nil {
			return pos, fmt.Errorf("raw: extend file: %w", err)
		}
	}
	return size, nil
}

// Inspect reports a raw file's facts: its virtual size is its size. Which
// bytes are allocated is the file system's business; see pkg/inspect.
func Inspect(_ io.ReaderAt, size int64) (*info.Info, error) {
	return &info.Info{Format: Type, VirtualSize: size, FileSize: size, Allocated: size}, nil
}
