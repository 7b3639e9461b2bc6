package zgzip

import (
	"bytes"
	"compress/gzip"
	"io"
	"os/exec"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/internal/ztest"
)

var cases = []struct {
	name string
	data []byte
}{
	{"empty", nil},
	{"one-zero", []byte{0}},
	{"zeros-511", make([]byte, 511)},
	{"zeros-64k-minus-1", make([]byte, minRun-1)},
	{"zeros-64k", make([]byte, minRun)},
	{"zeros-64k-plus-259", make([]byte, minRun+259)},
	{"zeros-1MiB-plus-7", make([]byte, 1<<20+7)},
	{"text", bytes.Repeat([]byte("tinyvm "), 1000)},
	{"mixed-1", ztest.Sample(1, 3<<20)},
	{"mixed-2", ztest.Sample(2, 1<<20+333)},
}

// compress writes data through a Writer in writes of the given size.
func compress(t testing.TB, data []byte, write, level int) []byte {
	var out bytes.Buffer
	z, err := NewWriterLevel(&out, level)
	if err != nil {
		t.Fatal(err)
	}
	for p := data; len(p) > 0; {
		n := min(write, len(p))
		if _, err := z.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func gunzip(t testing.TB, gz []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestRoundTrip decodes with compress/gzip, for many write sizes, and
// checks that the zero runs cost what the design says.
func TestRoundTrip(t *testing.T) {
	for _, c := range cases {
		for _, write := range []int{1, 100, 512, 4097, 1 << 20} {
			if write == 1 && len(c.data) > 1<<16 {
				continue
			}
			for _, level := range []int{gzip.DefaultCompression, gzip.BestCompression} {
				gz := compress(t, c.data, write, level)
				if got := gunzip(t, gz); !bytes.Equal(got, c.data) {
					t.Errorf("%s write=%d level=%d: decoded %d bytes, differ from the %d written", c.name, write, level, len(got), len(c.data))
				}
			}
		}
	}
	// 1 MiB of zeros is one block: about 2 bits per 258 bytes.
	gz := compress(t, make([]byte, 1<<20), 1<<20, gzip.DefaultCompression)
	if len(gz) > 1200 {
		t.Errorf("1 MiB of zeros took %d bytes, want about 1 KiB", len(gz))
	}
}

// TestGzipTool decodes with gzip(1), an independent inflater (zlib's
// algorithm), and checks the trailer with gzip -t.
func TestGzipTool(t *testing.T) {
	tooltest.Require(t, "gzip", tooltest.Gzip)
	for _, c := range cases {
		gz := compress(t, c.data, 4097, gzip.DefaultCompression)
		cmd := exec.Command("gzip", "-dc")
		cmd.Stdin = bytes.NewReader(gz)
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: gzip -dc: %v", c.name, err)
		}
		if !bytes.Equal(got, c.data) {
			t.Errorf("%s: gzip -dc gave %d bytes, differ from the %d written", c.name, len(got), len(c.data))
		}
	}
}

// TestSameAsGzipWithoutZeroRuns checks the header and that data without a
// long zero run is what compress/gzip writes, apart from the block
// framing: same decoded bytes, a size within a few bytes.
func TestSameAsGzipWithoutZeroRuns(t *testing.T) {
	data := bytes.Repeat([]byte("tinyvm-oci "), 5000)
	ours := compress(t, data, len(data), gzip.DefaultCompression)
	var std bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&std, gzip.DefaultCompression)
	zw.Write(data)
	zw.Close()
	if !bytes.Equal(ours[:10], std.Bytes()[:10]) {
		t.Errorf("header % x, compress/gzip writes % x", ours[:10], std.Bytes()[:10])
	}
	if d := len(ours) - std.Len(); d < -8 || d > 8 {
		t.Errorf("%d bytes against compress/gzip's %d", len(ours), std.Len())
	}
}

func TestSticky(t *testing.T) {
	z, _ := NewWriterLevel(io.Discard, gzip.DefaultCompression)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Write([]byte{1}); err != ErrClosed {
		t.Errorf("write after close: %v, want %v", err, ErrClosed)
	}
	if _, err := NewWriterLevel(io.Discard, 42); err == nil {
		t.Error("level 42 accepted")
	}
	fail := &ztest.FailWriter{After: 1}
	z, _ = NewWriterLevel(fail, gzip.DefaultCompression)
	z.Write(make([]byte, 1<<20))
	z.Write([]byte("x"))
	err1 := z.Close()
	if err1 == nil {
		t.Fatal("a failing writer gave no error")
	}
	if _, err := z.Write([]byte("y")); err != err1 {
		t.Errorf("error not sticky: %v then %v", err1, err)
	}
}

// FuzzWriter checks that whatever is written decodes back, seeded with
// the cases above; the fuzzer mutates the data and the write size.
func FuzzWriter(f *testing.F) {
	for _, c := range cases {
		if len(c.data) <= 1<<17 {
			f.Add(c.data, uint16(513))
		}
	}
	f.Add(append(make([]byte, minRun+1000), 1, 2, 3), uint16(1000))
	f.Fuzz(func(t *testing.T, data []byte, write uint16) {
		gz := compress(t, data, int(write)+1, gzip.DefaultCompression)
		if got := gunzip(t, gz); !bytes.Equal(got, data) {
			t.Fatalf("decoded %d bytes, differ from the %d written", len(got), len(data))
		}
	})
}
