package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
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

// decodeSparse decodes an input; false means it is not an encoding.
func decodeSparse(b []byte) (*formattest.Sparse, bool) {
	f := &formattest.Sparse{}
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
		f.Len += int64(gap)
		if f.Len > maxFuzzFile {
			return nil, false
		}
		f.Patches = append(f.Patches, formattest.Patch{Off: f.Len, Data: b[:lit]})
		f.Len += int64(lit)
		b = b[lit:]
	}
	return f, true
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
		write(t, formattest.BootDisk(t, mib), Options{}),
		write(t, formattest.BootDisk(t, 1<<40), Options{}),
		{0, 0, 1, 0, 2},
		{1},
		make([]byte, 100),
	} {
		f, ok := decodeSparse(encodeSparse(b))
		if !ok || f.Len != int64(len(b)) {
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
	f.Add(encodeSparse(write(f, formattest.BootDisk(f, mib), Options{})))
	f.Add(encodeSparse(write(f, formattest.BootDisk(f, 1<<30), Options{})))
	f.Add(encodeSparse(write(f, formattest.BootDisk(f, 1<<40), Options{})))
	f.Add(encodeSparse(write(f, formattest.BootDisk(f, 512), Options{BlockSize: 2 * mib})))
	f.Fuzz(func(t *testing.T, enc []byte) {
		file, ok := decodeSparse(enc)
		if !ok {
			return
		}
		got, err := Inspect(file, file.Len)
		if err != nil {
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("error does not wrap info.ErrCorrupt: %v", err)
			}
			return
		}
		if got.VirtualSize <= 0 || got.BlockSize < mib || got.Allocated < 0 || got.Allocated > align.Up(got.VirtualSize, got.BlockSize) {
			t.Fatalf("implausible facts %+v for a %d-byte file", got, file.Len)
		}
	})
}
