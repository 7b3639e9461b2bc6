package iso

import (
	"io"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
)

// BenchmarkWrite builds the ISO of a 1 MiB and a 1 TiB disk. Only the
// first 512 bytes (1.44 MB for floppy) are read, so both cost the same.
func BenchmarkWrite(b *testing.B) {
	for _, v := range variants {
		for _, c := range []struct {
			name string
			size int64
		}{{"1MiB", mib}, {"1TiB", tib}} {
			b.Run(v.name+"/"+c.name, func(b *testing.B) {
				d := formattest.BootDisk(b, c.size)
				b.SetBytes(Size(v.o))
				b.ReportAllocs()
				for b.Loop() {
					if err := Write(io.Discard, d, v.o); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(Size(v.o)), "file-bytes")
			})
		}
	}
}
