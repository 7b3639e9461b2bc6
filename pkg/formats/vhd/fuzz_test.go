package vhd

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

// Inspect reads only the start of a VHD (footer copy, header and BAT), its
// last 512 bytes and the file's size, yet the files are megabytes of
// mostly data blocks, which the fuzzer cannot mutate at speed. So FuzzInspect's input encodes a
// file as its size, its first bytes and its last bytes, with zeros in
// between: uvarint size, uvarint head length, head, tail. The seeds are
// the writer's outputs encoded this way, whole as far as Inspect can
// tell.

// maxFuzzFile bounds a decoded file, and with it the BAT a mutated header
// can make Inspect scan, so every input runs in about a millisecond. The
// outputs larger than that (fixed 1 GiB, scattered) are left out; the
// smaller ones of the same types stand for them.
const maxFuzzFile = 4 << 20

// decodeFuzz decodes an input; false means it is not an encoding.
func decodeFuzz(b []byte) (*formattest.Sparse, bool) {
	return formattest.DecodeHeadTail(b, maxFuzzFile)
}

// encodeWrite writes d and returns the fuzz encoding of the file.
func encodeWrite(t testing.TB, d disk.Disk, o Options) []byte {
	// Only what Inspect reads: the footer copy, header and the BAT of up to 1 GiB; the footer.
	// Short inputs keep the fuzzer's minimization quick.
	h := &formattest.HeadTail{HeadN: 2<<10 + 2<<10, TailN: 512}
	if err := Write(h, d, o); err != nil {
		t.Fatal(err)
	}
	return h.Encode()
}

func TestFuzzEncoding(t *testing.T) {
	for _, c := range cases(t) {
		if _, ok := decodeFuzz(encodeWrite(t, c.d, Options{Type: c.typ})); !ok {
			continue // larger than maxFuzzFile
		}
		var whole bytes.Buffer
		if err := Write(&whole, c.d, Options{Type: c.typ}); err != nil {
			t.Fatal(err)
		}
		formattest.SameThroughEncoding(t, c.name, whole.Bytes(), encodeWrite(t, c.d, Options{Type: c.typ}), maxFuzzFile, Inspect)
	}
}

// FuzzInspect feeds Inspect mutations of the writer's outputs; it must
// never panic and must reject what it cannot read with info.ErrCorrupt.
func FuzzInspect(f *testing.F) {
	for _, c := range cases(f) {
		enc := encodeWrite(f, c.d, Options{Type: c.typ})
		if _, ok := decodeFuzz(enc); ok {
			f.Add(enc)
		}
	}
	empty, err := disk.New(nil, 4<<20)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeWrite(f, empty, Options{}))
	f.Fuzz(func(t *testing.T, enc []byte) {
		file, ok := decodeFuzz(enc)
		if !ok {
			return
		}
		in, err := Inspect(file, file.Len)
		if err != nil {
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if in.VirtualSize <= 0 || in.Allocated < 0 || in.Subformat == Fixed && in.VirtualSize > file.Len {
			t.Fatalf("implausible facts for a %d-byte file: %+v", file.Len, in)
		}
	})
}
