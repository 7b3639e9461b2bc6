package formattest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
)

// The fuzz tests of the formats whose Inspect reads only the start and the
// end of a file (vdi, vhd) encode an input as the file's size, its first
// bytes and its last bytes, with zeros in between: uvarint size, uvarint
// head length, head, tail. A file of megabytes then fuzzes as a few KiB.

// HeadTail is an io.Writer that keeps the size of what is written, its
// first HeadN and its last TailN bytes: the fuzz encoding of a file.
type HeadTail struct {
	HeadN, TailN int
	size         int64
	head, tail   []byte
}

// Write keeps what the encoding needs of p and counts the rest.
func (h *HeadTail) Write(p []byte) (int, error) {
	n := len(p)
	h.size += int64(n)
	if k := min(h.HeadN-len(h.head), len(p)); k > 0 {
		h.head = append(h.head, p[:k]...)
		p = p[k:]
	}
	h.tail = append(h.tail, p[max(0, len(p)-h.TailN):]...)
	h.tail = h.tail[max(0, len(h.tail)-h.TailN):]
	return n, nil
}

// Encode returns the fuzz encoding of what was written.
func (h *HeadTail) Encode() []byte {
	out := binary.AppendUvarint(nil, uint64(h.size))
	out = binary.AppendUvarint(out, uint64(len(h.head)))
	out = append(out, h.head...)
	return append(out, h.tail...)
}

// DecodeHeadTail decodes a HeadTail encoding into a file of at most
// maxSize bytes. It reports false for an input that is not an encoding,
// which a fuzz test skips.
func DecodeHeadTail(b []byte, maxSize int64) (*Sparse, bool) {
	size, n := binary.Uvarint(b)
	if n <= 0 || size > uint64(maxSize) {
		return nil, false
	}
	b = b[n:]
	hl, n := binary.Uvarint(b)
	if n <= 0 || hl > uint64(len(b)-n) {
		return nil, false
	}
	b = b[n:]
	head, tail := b[:hl], b[hl:]
	if len(head)+len(tail) > int(size) {
		return nil, false
	}
	return &Sparse{Len: int64(size), Patches: []Patch{{0, head}, {int64(size) - int64(len(tail)), tail}}}, true
}

// Patch is a run of bytes at an offset of a Sparse file.
type Patch struct {
	Off  int64
	Data []byte
}

// Sparse is a file or disk of Len bytes holding Patches, zeros elsewhere:
// a decoded fuzz input, or a test disk with data far apart. Patches may
// overlap; a later one wins. It implements disk.Disk and disk.Extenter.
type Sparse struct {
	Len     int64
	Patches []Patch
}

// Size returns Len.
func (s *Sparse) Size() int64 { return s.Len }

// Extents returns the patches' ranges, which is where the data may be.
// Patches must then be in ascending order and not overlap, as
// disk.Extents promises its callers.
func (s *Sparse) Extents() []disk.Extent {
	var out []disk.Extent
	for _, c := range s.Patches {
		if len(c.Data) > 0 {
			out = append(out, disk.Extent{Off: c.Off, Len: int64(len(c.Data))})
		}
	}
	return out
}

// ReadAt reads the file: the patches over zeros.
func (s *Sparse) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= s.Len {
		return 0, io.EOF
	}
	n := len(p)
	var err error
	if rem := s.Len - off; int64(n) > rem {
		n, err = int(rem), io.EOF
	}
	clear(p[:n])
	for _, c := range s.Patches {
		lo, hi := max(off, c.Off), min(off+int64(n), c.Off+int64(len(c.Data)))
		if lo < hi {
			copy(p[lo-off:hi-off], c.Data[lo-c.Off:hi-c.Off])
		}
	}
	return n, err
}

// SameThroughEncoding checks that a HeadTail encoding keeps all that
// inspect reads: enc must decode (within maxSize) to a file as long as
// whole, and inspect must report the same facts for both. name labels
// the case in failures. It is what makes the fuzz seeds stand for the
// writer's real outputs.
func SameThroughEncoding[T any](t testing.TB, name string, whole, enc []byte, maxSize int64, inspect func(io.ReaderAt, int64) (T, error)) {
	t.Helper()
	f, ok := DecodeHeadTail(enc, maxSize)
	if !ok || f.Len != int64(len(whole)) {
		t.Fatalf("%s: encoding of %d bytes does not decode", name, len(whole))
	}
	a, err := inspect(bytes.NewReader(whole), int64(len(whole)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := inspect(f, f.Len)
	if err != nil || !reflect.DeepEqual(a, b) {
		t.Errorf("%s: Inspect of the encoding = %+v, %v; of the file %+v", name, b, err, a)
	}
}

// NextData returns the start of the first patch that holds data at or
// after off, or Len: a Sparse file is an info.SparseReaderAt whose holes
// are where no patch is, as on a sparse host file.
func (s *Sparse) NextData(off int64) int64 {
	next := s.Len
	for _, c := range s.Patches {
		if end := c.Off + int64(len(c.Data)); len(c.Data) > 0 && end > off {
			next = min(next, max(off, c.Off))
		}
	}
	return next
}

// SparseWriter is an io.Writer that keeps only the 4 KiB blocks of what is
// written that are not all zeros, as a Sparse file whose holes are the
// rest: a writer's image of a 64 TiB disk, tables of zeros and all, costs
// the memory of its data. File is the result.
type SparseWriter struct {
	File Sparse
}

// sparseBlock is the granularity of SparseWriter's holes.
const sparseBlock = 4096

// Write keeps the non-zero blocks of p.
func (w *SparseWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		off := w.File.Len
		k := min(len(p), sparseBlock-int(off%sparseBlock))
		piece := p[:k]
		p = p[k:]
		w.File.Len += int64(k)
		if disk.IsZero(piece) {
			continue
		}
		if last := len(w.File.Patches) - 1; last >= 0 && w.File.Patches[last].Off+int64(len(w.File.Patches[last].Data)) == off {
			w.File.Patches[last].Data = append(w.File.Patches[last].Data, piece...)
			continue
		}
		// A block written in pieces keeps its zeros before the piece.
		start := off &^ (sparseBlock - 1)
		if last := len(w.File.Patches) - 1; last >= 0 {
			start = max(start, w.File.Patches[last].Off+int64(len(w.File.Patches[last].Data)))
		}
		w.File.Patches = append(w.File.Patches, Patch{start, append(make([]byte, off-start), piece...)})
	}
	return n, nil
}

// Stored returns the bytes the file keeps: the length of its patches.
func (s *Sparse) Stored() int64 {
	var n int64
	for _, c := range s.Patches {
		n += int64(len(c.Data))
	}
	return n
}
