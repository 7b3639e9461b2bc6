package zgzip

import (
	"compress/gzip"
	"io"
	"os"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/internal/ztest"
)

// BenchmarkDisk compresses a 5 MiB disk-like input (mostly zero sectors,
// some data) with this package and with compress/gzip at the same level;
// compare the two lines' ns/op. With TINYVM_BENCH_FILE set it compresses
// that file instead (a built disk, say).
func BenchmarkDisk(b *testing.B) {
	data := make([]byte, 5<<20)
	copy(data[1<<20:], ztest.Sample(3, 256<<10))
	if p := os.Getenv("TINYVM_BENCH_FILE"); p != "" {
		var err error
		if data, err = os.ReadFile(p); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("zgzip", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			z, _ := NewWriterLevel(io.Discard, gzip.DefaultCompression)
			z.Write(data)
			z.Close()
		}
	})
	b.Run("compress-gzip", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			z, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
			z.Write(data)
			z.Close()
		}
	})
}
