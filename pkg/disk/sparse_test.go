package disk

import (
	"bytes"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestSparse(t *testing.T) {
	head, tail := bytes.Repeat([]byte{1}, 700), bytes.Repeat([]byte{2}, 512)
	const size = 1 << 40 // the tail sits at the very end of 1 TiB
	d, err := NewSparse(size, Chunk{size - 512, tail}, Chunk{0, head}, Chunk{4096, nil})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Extent{{0, 700}, {size - 512, 512}}; !reflect.DeepEqual(d.Extents(), want) {
		t.Errorf("Extents = %v, want %v (sorted, empty chunk dropped)", d.Extents(), want)
	}
	// A read across the end of the head: data, then zeros.
	p := bytes.Repeat([]byte{0xEE}, 200)
	if n, err := d.ReadAt(p, 600); n != 200 || err != nil || !bytes.Equal(p[:100], head[:100]) || !IsZero(p[100:]) {
		t.Errorf("ReadAt(600) = %d, %v, % x", n, err, p[95:105])
	}
	// A read that starts before the tail and runs past the end of the disk.
	p = bytes.Repeat([]byte{0xEE}, 1024)
	if n, err := d.ReadAt(p, size-768); n != 768 || err != io.EOF || !IsZero(p[:256]) || !bytes.Equal(p[256:768], tail) {
		t.Errorf("ReadAt(size-768) = %d, %v", n, err)
	}
	// Blocks reads only the extents of the 1 TiB disk.
	if got, err := Blocks(d, 64<<10); err != nil || !slices.Equal(got, []int64{0, size/(64<<10) - 1}) {
		t.Errorf("Blocks = %v, %v", got, err)
	}
	// The window of Section keeps the extents.
	if ext := Extents(Section(d, size-4096, 4096)); !reflect.DeepEqual(ext, []Extent{{3584, 512}}) {
		t.Errorf("Section extents = %v", ext)
	}
}

func TestSparseBad(t *testing.T) {
	for _, tt := range []struct {
		size   int64
		chunks []Chunk
		text   string
	}{
		{1000, nil, "multiple of 512"},
		{1024, []Chunk{{0, make([]byte, 600)}, {512, []byte{1}}}, "overlaps"},
		{1024, []Chunk{{1000, make([]byte, 100)}}, "does not fit"},
		{1024, []Chunk{{-1, []byte{1}}}, "does not fit"},
	} {
		if _, err := NewSparse(tt.size, tt.chunks...); err == nil || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("NewSparse(%d, %d chunks) = %v, want %q", tt.size, len(tt.chunks), err, tt.text)
		}
	}
}
