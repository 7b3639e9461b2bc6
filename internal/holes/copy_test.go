package holes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestCopy checks Copy against the kernel's own read of the file (io.Copy
// of it): sparse files with data at the start, in the middle, at the very
// end and nowhere, and sizes that are not block multiples.
func TestCopy(t *testing.T) {
	cases := []struct {
		name string
		size int64
		data []int64 // offsets of 5-byte writes
	}{
		{"empty", 0, nil},
		{"all hole", 3<<20 + 7, nil},
		{"data start middle end", 5 << 20, []int64{0, 1<<20 + 3, 5<<20 - 5}},
		{"tail past last hole", 1<<20 + 1000, []int64{1<<20 + 995}},
		{"dense", 300 << 10, func() []int64 {
			var o []int64
			for i := int64(0); i < 300<<10-5; i += 4000 {
				o = append(o, i)
			}
			return o
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := sparseFile(t, c.size, c.data)
			want, err := io.ReadAll(io.NewSectionReader(f, 0, c.size))
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			n, err := Copy(context.Background(), &got, f, c.size)
			if err != nil || n != c.size {
				t.Fatalf("Copy = %d, %v; want %d, nil", n, err, c.size)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("Copy's bytes differ from the file's (sha256 %x, want %x)", sha256.Sum256(got.Bytes()), sha256.Sum256(want))
			}
			// A ZeroWriter gets the holes by length and the same bytes.
			zw := &zeroWriter{}
			if n, err := Copy(context.Background(), zw, f, c.size); err != nil || n != c.size {
				t.Fatalf("Copy to a ZeroWriter = %d, %v; want %d, nil", n, err, c.size)
			}
			if !bytes.Equal(zw.buf.Bytes(), want) {
				t.Fatal("Copy's bytes to a ZeroWriter differ from the file's")
			}
			if ext, ok := Data(context.Background(), f, c.size); ok {
				hole := c.size
				for _, e := range ext {
					hole -= e.End - e.Off
				}
				if zw.zeros != hole {
					t.Errorf("%d bytes came through WriteZeros, want the %d of the holes (extents %v)", zw.zeros, hole, ext)
				}
			}
		})
	}
}

// zeroWriter materializes what it is given, counting the zeros given by
// length.
type zeroWriter struct {
	buf   bytes.Buffer
	zeros int64
}

func (z *zeroWriter) Write(p []byte) (int, error) { return z.buf.Write(p) }

func (z *zeroWriter) WriteZeros(n int64) error {
	z.zeros += n
	z.buf.Write(make([]byte, n))
	return nil
}

// TestCopyShortFile asks for more bytes than the file has, with the file
// ending in data and in a hole: both are io.ErrUnexpectedEOF, not zeros.
func TestCopyShortFile(t *testing.T) {
	for _, data := range [][]int64{{1<<20 - 5}, {0}} {
		f := sparseFile(t, 1<<20, data)
		_, err := Copy(context.Background(), io.Discard, f, 2<<20)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("data at %v: Copy of 2 MiB from a 1 MiB file = %v, want io.ErrUnexpectedEOF", data, err)
		}
	}
}

// TestCopyCanceled stops on a done context.
func TestCopyCanceled(t *testing.T) {
	f := sparseFile(t, 4<<20, []int64{0})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Copy(ctx, io.Discard, f, 4<<20); !errors.Is(err, context.Canceled) {
		t.Errorf("Copy with a done context = %v, want context.Canceled", err)
	}
}

// sparseFile is a size-byte file with "data!" at each offset and holes
// elsewhere.
func sparseFile(t *testing.T, size int64, at []int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	for _, off := range at {
		if _, err := f.WriteAt([]byte("data!"), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f
}
