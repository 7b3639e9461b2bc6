package build

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCtxWriterHoles writes zeros and data through ctxWriter and checks
// the file reads back exactly as written, that zeros past the data became
// holes, and that zeros written over data do overwrite it.
func TestCtxWriterHoles(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &ctxWriter{f: f, ctx: context.Background()}
	var want bytes.Buffer
	put := func(p []byte) {
		t.Helper()
		if n, err := w.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
		want.Write(p)
	}
	data := bytes.Repeat([]byte("tinyvm"), 1000) // 6000 bytes
	put(data)
	put(make([]byte, 1<<20))                      // a hole
	put(append(make([]byte, 3*holeMin), data...)) // a hole, then data
	put(make([]byte, 100))                        // too short for a hole
	// Overwrite the first data with zeros: it must not stay.
	if _, err := w.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, holeMin)); err != nil {
		t.Fatal(err)
	}
	copy(want.Bytes(), make([]byte, holeMin))
	if _, err := w.Seek(int64(want.Len()), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	put(make([]byte, 2*holeMin)) // a hole at the end: finish extends the file
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("file holds %d bytes that differ from the %d written", len(got), want.Len())
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used >= int64(want.Len())/2 {
		t.Errorf("%d bytes allocated for a %d-byte file of mostly zeros: no holes", used, want.Len())
	}
}
