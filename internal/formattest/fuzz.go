package formattest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
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

// Mutate returns a mutant of b, which it does not change: one to four
// changes drawn from rnd, each of the kinds that break image readers: a
// flipped bit, a random byte, a 4- or 8-byte word set to a value that
// is an edge (0, all ones, the file size, 2^50) or a copy of another word
// of the file (an offset now pointing where another does), a 512-byte
// block copied over another (a table aliasing another), a zeroed range,
// and a cut. Half of the changes land in the 4 KiB after one of the hot
// offsets, where the format keeps its headers and tables (offset 0 when
// hot is empty): a random position in a file of megabytes would almost
// always be data.
func Mutate(rnd *rand.Rand, b []byte, hot []int) []byte {
	b = slices.Clone(b)
	if len(hot) == 0 {
		hot = []int{0}
	}
	for range 1 + rnd.IntN(4) {
		if len(b) == 0 {
			return b
		}
		pos := rnd.IntN(len(b))
		if h := hot[rnd.IntN(len(hot))]; rnd.IntN(2) == 0 && h < len(b) {
			pos = h + rnd.IntN(min(len(b)-h, 4096))
		}
		switch rnd.IntN(8) {
		case 0:
			b[pos] ^= 1 << rnd.IntN(8)
		case 1:
			b[pos] = byte(rnd.IntN(256))
		case 2, 3:
			w := 4 << rnd.IntN(2)
			pos &^= w - 1
			if pos+w > len(b) {
				continue
			}
			edges := []uint64{0, 1, 1<<32 - 1, 1<<64 - 1, uint64(len(b)), uint64(len(b) - 512), uint64(len(b)) / 512, 1 << 50, uint64(pos), uint64(pos) / 512}
			v := edges[rnd.IntN(len(edges))]
			if rnd.IntN(2) == 0 && len(b) >= w {
				q := rnd.IntN(len(b)-w+1) &^ (w - 1)
				copy(b[pos:pos+w], b[q:q+w])
				continue
			}
			for i := range w {
				if rnd.IntN(2) == 0 { // either byte order
					b[pos+i] = byte(v >> (8 * i))
				} else {
					b[pos+w-1-i] = byte(v >> (8 * i))
				}
			}
		case 4, 5:
			if len(b) < 1024 {
				continue
			}
			from, to := rnd.IntN(len(b)/512)*512, pos&^511
			n := min(512, len(b)-from, len(b)-to)
			copy(b[to:to+n], b[from:from+n])
		case 6:
			clear(b[pos:min(len(b), pos+1+rnd.IntN(1024))])
		case 7:
			n := rnd.IntN(len(b))
			if rnd.IntN(2) == 0 {
				n &^= 511
			}
			b = b[:n]
		}
	}
	return b
}

// MutationTest is the deterministic counterpart of a FuzzInspect, run on
// every go test: n mutants of the seeds (the writer's own outputs), drawn
// from a fixed seed, each inspected through a Counter. Inspect must not
// panic, must fail only with errors wrapping info.ErrCorrupt, must report
// no negative size, and must read at most budget(size) bytes of a file
// of size bytes, so that its work follows the file and not the sizes it
// claims. hot is passed to Mutate.
func MutationTest(t *testing.T, seeds [][]byte, hot []int, n int, inspect InspectFunc, budget func(size int64) int64) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(12, 2026))
	var failures, corrupt int
	for i := range n {
		b := Mutate(rnd, seeds[rnd.IntN(len(seeds))], hot)
		c := &Counter{R: bytes.NewReader(b)}
		inf, err, panicked := inspectSafely(inspect, c, int64(len(b)))
		var msg string
		switch {
		case panicked != nil:
			msg = fmt.Sprintf("panic: %v", panicked)
		case err != nil && !errors.Is(err, info.ErrCorrupt):
			msg = fmt.Sprintf("error %v does not wrap ErrCorrupt", err)
		case err == nil && (inf.VirtualSize < 0 || inf.Allocated < 0 || inf.BlockSize < 0):
			msg = fmt.Sprintf("negative sizes in %+v", inf)
		case c.Bytes > budget(int64(len(b))):
			msg = fmt.Sprintf("read %d bytes of a %d-byte file, over the budget of %d", c.Bytes, len(b), budget(int64(len(b))))
		}
		if err != nil {
			corrupt++
		}
		if msg != "" {
			failures++
			if failures <= 5 {
				t.Errorf("mutant %d (%d bytes, first 64: %x): %s", i, len(b), b[:min(len(b), 64)], msg)
			}
		}
	}
	if failures > 5 {
		t.Errorf("%d of %d mutants failed in all", failures, n)
	}
	// A mutator that never breaks anything, or breaks everything at the
	// first byte, would test nothing.
	if corrupt == 0 || corrupt == n {
		t.Errorf("%d of %d mutants corrupt: the mutations do not exercise both paths", corrupt, n)
	}
	t.Logf("%d mutants, %d reported corrupt", n, corrupt)
}

func inspectSafely(inspect InspectFunc, r io.ReaderAt, size int64) (inf *info.Info, err error, panicked any) {
	defer func() { panicked = recover() }()
	inf, err = inspect(r, size)
	return inf, err, nil
}
