package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
)

// A VHDX file is at least 4 MiB, mostly zeros, which the fuzzer cannot
// mutate at any useful speed. So FuzzInspect's input is the file in a
// sparse encoding: records of (uvarint zero-run length, uvarint literal
// length, literal bytes). The seeds are the writer's own outputs encoded
// this way, and mutations still reach every field of every structure.

// maxFuzzFile bounds the decoded size so a mutated run length cannot make
// a file of exabytes (Inspect only reads inside the size it is given).
const maxFuzzFile = 1 << 42

// sparseFile is a decoded fuzz input: literal segments, zeros elsewhere.
type sparseFile struct {
	size int64
	segs []patch
}

func decodeSparse(b []byte) (*sparseFile, bool) {
	f := &sparseFile{}
	for len(b) > 0 {
		gap, n := binary.Uvarint(b)
		if n <= 0 || gap > maxFuzzFile {
			return nil, false
		}
		b = b[n:]
		lit, n := binary.Uvarint(b)
		if n <= 0 || lit > uint64(len(b)-n) {
			return nil, false
		}
		b = b[n:]
		f.size += int64(gap)
		if f.size > maxFuzzFile {
			return nil, false
		}
		f.segs = append(f.segs, patch{off: f.size, data: b[:lit]})
		f.size += int64(lit)
		b = b[lit:]
	}
	return f, true
}

func (f *sparseFile) ReadAt(p []byte, off int64) (int, error) {
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
	for _, s := range f.segs {
		lo, hi := max(off, s.off), min(off+int64(n), s.off+int64(len(s.data)))
		if lo < hi {
			copy(p[lo-off:hi-off], s.data[lo-s.off:hi-s.off])
		}
	}
	return n, err
}

// encodeSparse turns a file into the fuzz encoding, keeping zero runs of
// 32 bytes or more as gaps.
func encodeSparse(b []byte) []byte {
	var out []byte
	const minGap = 32
	i := 0
	for i < len(b) {
		gapStart := i
		for i < len(b) && b[i] == 0 {
			i++
		}
		gap := i - gapStart
		litStart := i
		for i < len(b) {
			j := i
			for j < len(b) && b[j] == 0 && j-i < minGap {
				j++
			}
			if j-i >= minGap || j == len(b) {
				if j == len(b) && j-i < minGap {
					i = j
				}
				break
			}
			i = j + 1
		}
		out = binary.AppendUvarint(out, uint64(gap))
		out = binary.AppendUvarint(out, uint64(i-litStart))
		out = append(out, b[litStart:i]...)
	}
	return out
}

func TestSparseEncoding(t *testing.T) {
	for _, b := range [][]byte{
		write(t, bootDisk(t, mib), Options{}),
		write(t, bootDisk(t, 1<<40), Options{}),
		{0, 0, 1, 0, 2},
		{1},
		make([]byte, 100),
	} {
		f, ok := decodeSparse(encodeSparse(b))
		if !ok || f.size != int64(len(b)) {
			t.Fatalf("round trip of %d bytes failed", len(b))
		}
		got := make([]byte, len(b))
		if _, err := f.ReadAt(got, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("round trip of %d bytes changed them", len(b))
		}
	}
}

func FuzzInspect(f *testing.F) {
	f.Add(encodeSparse(write(f, bootDisk(f, mib), Options{})))
	f.Add(encodeSparse(write(f, bootDisk(f, 1<<30), Options{})))
	f.Add(encodeSparse(write(f, bootDisk(f, 1<<40), Options{})))
	f.Add(encodeSparse(write(f, bootDisk(f, 512), Options{BlockSize: 2 * mib})))
	f.Fuzz(func(t *testing.T, enc []byte) {
		file, ok := decodeSparse(enc)
		if !ok {
			return
		}
		got, err := Inspect(file, file.size)
		if err != nil {
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("error does not wrap info.ErrCorrupt: %v", err)
			}
			return
		}
		if got.VirtualSize <= 0 || got.BlockSize < mib || got.Allocated < 0 || got.Allocated > align.Up(got.VirtualSize, got.BlockSize) {
			t.Fatalf("implausible facts %+v for a %d-byte file", got, file.size)
		}
	})
}
