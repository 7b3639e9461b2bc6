package flatepool

import (
	"bytes"
	"compress/flate"
	"io"
	"runtime"
	"testing"
)

// TestSameAsNew: a writer that went back to the pool writes the bytes a
// new one writes, at every level.
func TestSameAsNew(t *testing.T) {
	data := bytes.Repeat([]byte("tinyvm-oci flatepool "), 3000)
	for level := flate.HuffmanOnly; level <= flate.BestCompression; level++ {
		var want bytes.Buffer
		nw, _ := flate.NewWriter(&want, level)
		nw.Write(data)
		nw.Close()
		for i := range 3 {
			var got bytes.Buffer
			fw, err := Get(&got, level)
			if err != nil {
				t.Fatal(err)
			}
			fw.Write(data[:len(data)/(i+1)]) // dirty it differently each time
			fw.Reset(&got)
			got.Reset()
			fw.Write(data)
			fw.Close()
			Put(fw, level)
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("level %d, use %d: %d bytes, a new writer's are %d", level, i, got.Len(), want.Len())
			}
		}
	}
}

// TestReuseAndBound: Get hands back a released writer, and the pool keeps
// no more than GOMAXPROCS of a level.
func TestReuseAndBound(t *testing.T) {
	fw, _ := Get(io.Discard, flate.BestSpeed)
	Put(fw, flate.BestSpeed)
	if again, _ := Get(io.Discard, flate.BestSpeed); again != fw {
		t.Error("a released writer was not reused")
	}
	n := runtime.GOMAXPROCS(0)
	for range n + 3 {
		w, _ := flate.NewWriter(io.Discard, flate.BestSpeed)
		Put(w, flate.BestSpeed)
	}
	if got := len(free[flate.BestSpeed-flate.HuffmanOnly]); got != n {
		t.Errorf("%d writers kept, want GOMAXPROCS %d", got, n)
	}
	if _, err := Get(io.Discard, 42); err == nil {
		t.Error("level 42 accepted")
	}
	Put(nil, flate.BestSpeed) // ignored
}
