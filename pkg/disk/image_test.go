package disk

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

func TestNew(t *testing.T) {
	for _, size := range []int64{0, -512, 1000} {
		if _, err := New(nil, size); !errors.Is(err, ErrSize) {
			t.Errorf("New(size %d) = %v, want ErrSize", size, err)
		}
	}
	if _, err := New(make([]byte, 1024), 512); err == nil {
		t.Error("data larger than the disk accepted")
	}
}

func TestReadAt(t *testing.T) {
	d, err := New([]byte{1, 2, 3}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte{0xEE}, 6)
	if n, err := d.ReadAt(p, 1); n != 6 || err != nil || !bytes.Equal(p, []byte{2, 3, 0, 0, 0, 0}) {
		t.Errorf("ReadAt(1) = %d, %v, % x", n, err, p)
	}
	if n, err := d.ReadAt(p, 1020); n != 4 || err != io.EOF || !bytes.Equal(p[:4], []byte{0, 0, 0, 0}) {
		t.Errorf("ReadAt across the end = %d, %v", n, err)
	}
	if _, err := d.ReadAt(p, 1024); err != io.EOF {
		t.Errorf("ReadAt at the end = %v, want EOF", err)
	}
	if _, err := d.ReadAt(p, -1); err == nil {
		t.Error("negative offset accepted")
	}
}

// plain hides Image's Extents, so Blocks must scan the whole disk.
type plain struct{ Disk }

func TestBlocks(t *testing.T) {
	data := make([]byte, 5000)
	data[0], data[4095], data[4999] = 1, 1, 1
	d, err := New(data, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{0, 3, 4} // 1 KiB blocks holding bytes 0, 4095 and 4999
	for _, src := range []Disk{d, plain{d}} {
		got, err := Blocks(src, 1024)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Blocks = %v, %v; want %v", got, err, want)
		}
	}
	// A 1 TiB disk costs what its data costs: only the extent is read.
	big, _ := New(data, 1<<40)
	if got, _ := Blocks(big, 64<<10); !slices.Equal(got, []int64{0}) {
		t.Errorf("Blocks(1 TiB) = %v", got)
	}
	if _, err := Blocks(d, 0); err == nil {
		t.Error("block size 0 accepted")
	}
}

// TestBlocksLargeBlocks scans blocks larger than Blocks' buffer: data
// past the first buffer of a block counts, a block found once is not
// listed twice when two extents fall in it, and a zero extent adds nothing.
func TestBlocksLargeBlocks(t *testing.T) {
	const bs = 4 * scanSize
	far := make([]byte, 100)
	far[99] = 7
	d, err := NewSparse(1<<30,
		Chunk{Off: 0, Data: make([]byte, 3*scanSize)},       // zeros in block 0
		Chunk{Off: 3*scanSize + 10, Data: []byte{1}},        // block 0, last buffer
		Chunk{Off: 3*scanSize + 20, Data: []byte{2}},        // block 0 again
		Chunk{Off: 5*bs - 50, Data: far},                    // spans blocks 4 and 5, data in 5
		Chunk{Off: 9 * bs, Data: make([]byte, bs+scanSize)}, // zeros over blocks 9 and 10
	)
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{0, 5}
	for _, src := range []Disk{d, plain{d}} {
		if got, err := Blocks(src, bs); err != nil || !slices.Equal(got, want) {
			t.Errorf("Blocks = %v, %v; want %v", got, err, want)
		}
	}
}

func TestReadBlock(t *testing.T) {
	d, _ := New([]byte{9}, 1536)
	p := bytes.Repeat([]byte{0xEE}, 1024) // a reused buffer's old bytes
	if err := ReadBlock(d, 1, p); err != nil || !IsZero(p) {
		t.Errorf("ReadBlock half past the end = % x, %v", p[:8], err)
	}
	p = bytes.Repeat([]byte{0xEE}, 1024)
	if err := ReadBlock(d, 2, p); err != nil || !IsZero(p) {
		t.Errorf("ReadBlock past the end = % x, %v", p[:8], err)
	}
	if err := ReadBlock(d, 0, p); err != nil || p[0] != 9 || !IsZero(p[1:]) {
		t.Errorf("ReadBlock(0) = % x, %v", p[:8], err)
	}
}

func BenchmarkBlocks1TiB(b *testing.B) {
	d, _ := New(make([]byte, 512), 1<<40)
	for b.Loop() {
		if _, err := Blocks(d, 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCopyBlock checks CopyBlock against ReadBlock on a block of several
// buffers that runs past the end of the disk, and that a write error
// comes back.
func TestCopyBlock(t *testing.T) {
	data := make([]byte, 3*scanSize+700)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	d, err := NewSparse(4*scanSize+1024, Chunk{Off: scanSize/2 + 512, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	const bs = 3*scanSize + 512 // not a multiple of the buffer
	for b := int64(0); b < 3; b++ {
		want := make([]byte, bs)
		if err := ReadBlock(d, b, want); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := CopyBlock(&got, d, b, bs); err != nil || !bytes.Equal(got.Bytes(), want) {
			t.Errorf("CopyBlock(%d) = %d bytes, %v; differs from ReadBlock", b, got.Len(), err)
		}
	}
	boom := errors.New("boom")
	if err := CopyBlock(failWriter{boom}, d, 0, bs); !errors.Is(err, boom) {
		t.Errorf("CopyBlock into a failing writer = %v, want %v", err, boom)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }
