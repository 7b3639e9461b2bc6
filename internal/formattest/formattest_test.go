package formattest

import (
	"bytes"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
)

// TestHeadTail checks that the fuzz encoding keeps a file's size, head and
// tail and zeros the middle, as the vdi and vhd fuzz tests assume.
func TestHeadTail(t *testing.T) {
	file := bytes.Repeat([]byte{1, 2, 3, 4}, 1000)
	h := &HeadTail{HeadN: 10, TailN: 7}
	for p := file; len(p) > 0; p = p[min(len(p), 333):] {
		h.Write(p[:min(len(p), 333)])
	}
	f, ok := DecodeHeadTail(h.Encode(), 1<<20)
	if !ok || f.Size() != int64(len(file)) {
		t.Fatalf("decode: %v, size %d", ok, f.Size())
	}
	got := make([]byte, len(file))
	if n, err := f.ReadAt(got, 0); n != len(file) || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	want := make([]byte, len(file))
	copy(want, file[:10])
	copy(want[len(file)-7:], file[len(file)-7:])
	if !bytes.Equal(got, want) {
		t.Fatal("decoded file is not head, zeros, tail")
	}
	if _, ok := DecodeHeadTail(h.Encode(), 100); ok {
		t.Fatal("a file over the limit decoded")
	}
	if ext := f.Extents(); !reflect.DeepEqual(ext, []disk.Extent{{Off: 0, Len: 10}, {Off: 3993, Len: 7}}) {
		t.Fatalf("Extents = %v", ext)
	}
}

// TestScattered checks the spots land where they are placed.
func TestScattered(t *testing.T) {
	d := Scattered(1024, map[int64]byte{0: 1, 1023: 2})
	p := make([]byte, 1024)
	if _, err := d.ReadAt(p, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if p[0] != 1 || p[1023] != 2 || !disk.IsZero(p[1:1023]) {
		t.Fatal("spots misplaced")
	}
	if _, ok := d.(disk.Extenter); ok {
		t.Fatal("Scattered must not know its extents")
	}
}

func TestSparseWriter(t *testing.T) {
	var w SparseWriter
	want := make([]byte, 5*sparseBlock+100)
	want[10] = 1
	want[3*sparseBlock+5] = 2
	want[3*sparseBlock+sparseBlock-1] = 3
	want[5*sparseBlock+99] = 4
	// Written in odd pieces, so blocks arrive split.
	for b := want; len(b) > 0; {
		k := min(len(b), 777)
		w.Write(b[:k])
		b = b[k:]
	}
	f := &w.File
	got := make([]byte, f.Len)
	if _, err := f.ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the sparse file reads back differently")
	}
	if f.Stored() > 3*sparseBlock+100 {
		t.Errorf("stores %d bytes for three blocks of data", f.Stored())
	}
	if f.NextData(sparseBlock) != 3*sparseBlock || f.NextData(0) != 0 {
		t.Errorf("NextData: %d, %d", f.NextData(sparseBlock), f.NextData(0))
	}
}

// TestMutate: the same seed gives the same mutants, which differ from the
// input and leave it untouched, so a failing mutant can be reproduced.
func TestMutate(t *testing.T) {
	in := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 1024)
	orig := bytes.Clone(in)
	a, b := rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(1, 2))
	changed := 0
	for range 200 {
		x, y := Mutate(a, in, []int{4096}), Mutate(b, in, []int{4096})
		if !bytes.Equal(x, y) {
			t.Fatal("the same seed gave different mutants")
		}
		if !bytes.Equal(x, in) {
			changed++
		}
	}
	if !bytes.Equal(in, orig) {
		t.Error("Mutate changed its input")
	}
	if changed < 150 {
		t.Errorf("only %d of 200 mutants differ from the input", changed)
	}
}
