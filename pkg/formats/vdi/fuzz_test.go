package vdi

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
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

// decodeFuzz decodes an input; false means it is not an encoding.
func decodeFuzz(b []byte) (*formattest.Sparse, bool) {
	return formattest.DecodeHeadTail(b, maxFuzzFile)
}

// encodeWrite writes d and returns the fuzz encoding of the file.
func encodeWrite(t testing.TB, d disk.Disk) []byte {
	// Only what Inspect reads: the header and the block map of up to 1 GiB.
	// Short inputs keep the fuzzer's minimization quick.
	h := &formattest.HeadTail{HeadN: 512 + 4<<10, TailN: 0}
	if err := Write(h, d); err != nil {
		t.Fatal(err)
	}
	return h.Encode()
}

func TestFuzzEncoding(t *testing.T) {
	for _, c := range cases(t) {
		var whole bytes.Buffer
		if err := Write(&whole, c.d); err != nil {
			t.Fatal(err)
		}
		formattest.SameThroughEncoding(t, c.name, whole.Bytes(), encodeWrite(t, c.d), maxFuzzFile, Inspect)
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
		in, err := Inspect(file, file.Len)
		if err != nil {
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if in.VirtualSize <= 0 || in.Allocated < 0 || in.Allocated > file.Len {
			t.Fatalf("implausible facts for a %d-byte file: %+v", file.Len, in)
		}
	})
}
