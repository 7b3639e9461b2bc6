package vdi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

// Inspect reads only the start of a VDI (header and block map) and the
// file's size, yet the files are megabytes of mostly data blocks, which
// the fuzzer cannot mutate at speed. So FuzzInspect's input encodes a
// file as its size, its first bytes and its last bytes, with zeros in
// between: uvarint size, uvarint head length, head, tail. The seeds are
// the writer's outputs encoded this way, whole as far as Inspect can
// tell.

// maxFuzzFile bounds a decoded file, and with it the block map a mutated
// header can make Inspect scan, so every input runs in about a
// millisecond.
const maxFuzzFile = 4 << 20

// fuzzFile is a decoded input.
type fuzzFile struct {
	size       int64
	head, tail []byte
}

func decodeFuzz(b []byte) (*fuzzFile, bool) {
	size, n := binary.Uvarint(b)
	if n <= 0 || size > maxFuzzFile {
		return nil, false
	}
	b = b[n:]
	hl, n := binary.Uvarint(b)
	if n <= 0 || hl > uint64(len(b)-n) {
		return nil, false
	}
	b = b[n:]
	f := &fuzzFile{size: int64(size), head: b[:hl], tail: b[hl:]}
	if len(f.head)+len(f.tail) > int(f.size) {
		return nil, false
	}
	return f, true
}

func (f *fuzzFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= f.size {
		return 0, io.EOF
	}
	n := len(p)
	var err error
	if rem := f.size - off; int64(n) > rem {
		n, err = int(rem), io.EOF
	}
	clear(p[:n])
	place := func(data []byte, at int64) {
		lo, hi := max(off, at), min(off+int64(n), at+int64(len(data)))
		if lo < hi {
			copy(p[lo-off:hi-off], data[lo-at:hi-at])
		}
	}
	place(f.head, 0)
	place(f.tail, f.size-int64(len(f.tail)))
	return n, err
}

// headTail is an io.Writer that keeps a file's size, its first headN and
// its last tailN bytes: the fuzz encoding of what is written to it.
type headTail struct {
	headN, tailN int
	size         int64
	head, tail   []byte
}

func (h *headTail) Write(p []byte) (int, error) {
	n := len(p)
	h.size += int64(n)
	if k := min(h.headN-len(h.head), len(p)); k > 0 {
		h.head = append(h.head, p[:k]...)
		p = p[k:]
	}
	h.tail = append(h.tail, p[max(0, len(p)-h.tailN):]...)
	h.tail = h.tail[max(0, len(h.tail)-h.tailN):]
	return n, nil
}

func (h *headTail) encode() []byte {
	out := binary.AppendUvarint(nil, uint64(h.size))
	out = binary.AppendUvarint(out, uint64(len(h.head)))
	out = append(out, h.head...)
	return append(out, h.tail...)
}

// encodeWrite writes d and returns the fuzz encoding of the file.
func encodeWrite(t testing.TB, d disk.Disk) []byte {
	// Only what Inspect reads: the header and the block map of up to 1 GiB.
	// Short inputs keep the fuzzer's minimization quick.
	h := &headTail{headN: 512 + 4<<10, tailN: 0}
	if err := Write(h, d); err != nil {
		t.Fatal(err)
	}
	return h.encode()
}

func TestFuzzEncoding(t *testing.T) {
	for _, c := range cases(t) {
		var whole bytes.Buffer
		if err := Write(&whole, c.d); err != nil {
			t.Fatal(err)
		}
		f, ok := decodeFuzz(encodeWrite(t, c.d))
		if !ok || f.size != int64(whole.Len()) {
			t.Fatalf("%s: encoding of %d bytes does not decode", c.name, whole.Len())
		}
		// Everything Inspect reads survives the encoding.
		a, err := Inspect(bytes.NewReader(whole.Bytes()), int64(whole.Len()))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Inspect(f, f.size)
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: Inspect of the encoding = %+v, %v; of the file %+v", c.name, b, err, a)
		}
	}
}

// FuzzInspect feeds Inspect mutations of the writer's outputs; it must
// never panic and must reject what it cannot read with info.ErrCorrupt.
func FuzzInspect(f *testing.F) {
	for _, c := range cases(f) {
		f.Add(encodeWrite(f, c.d))
	}
	empty, err := disk.New(nil, 4<<20)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeWrite(f, empty))
	f.Fuzz(func(t *testing.T, enc []byte) {
		file, ok := decodeFuzz(enc)
		if !ok {
			return
		}
		in, err := Inspect(file, file.size)
		if err != nil {
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if in.VirtualSize <= 0 || in.Allocated < 0 || in.Allocated > file.size {
			t.Fatalf("implausible facts for a %d-byte file: %+v", file.size, in)
		}
	})
}
