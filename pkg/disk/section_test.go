package disk

import (
	"bytes"
	"io"
	"reflect"
	"testing"
)

// TestSection checks the window's bytes, its zero tail past the disk's end
// and its clipped extents, which writers rely on to skip zero blocks.
func TestSection(t *testing.T) {
	data := bytes.Repeat([]byte{0xAB}, 1536)
	d, err := New(data, 2048)
	if err != nil {
		t.Fatal(err)
	}

	s := Section(d, 1024, 2048) // half inside the disk, half past its end
	if s.Size() != 2048 {
		t.Fatalf("Size = %d, want 2048", s.Size())
	}
	got := make([]byte, 2048)
	if n, err := s.ReadAt(got, 0); n != 2048 || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	want := make([]byte, 2048)
	copy(want, data[1024:])
	if !bytes.Equal(got, want) {
		t.Fatal("section bytes differ from the disk's, or its tail is not zero")
	}
	if ext := Extents(s); !reflect.DeepEqual(ext, []Extent{{0, 512}}) {
		t.Fatalf("Extents = %v, want [{0 512}]", ext)
	}

	// A read running past the window is cut short with io.EOF.
	p := make([]byte, 100)
	if n, err := s.ReadAt(p, 2000); n != 48 || err != io.EOF {
		t.Fatalf("ReadAt at 2000 = %d, %v; want 48, EOF", n, err)
	}
	if _, err := s.ReadAt(p, 2048); err != io.EOF {
		t.Fatalf("ReadAt at the end = %v, want EOF", err)
	}
	if _, err := s.ReadAt(p, -1); err == nil {
		t.Fatal("ReadAt at -1: want an error")
	}

	// A window wholly past the data has no extents.
	if ext := Extents(Section(d, 2048, 512)); len(ext) != 0 {
		t.Fatalf("Extents past the data = %v, want none", ext)
	}
}
