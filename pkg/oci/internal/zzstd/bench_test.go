package zzstd

import (
	"io"
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// BenchmarkDisk compresses the outline of a small VM's 1 MiB raw disk
// with this package and with klauspost/compress's streaming encoder as
// KubeVirt's exporter sets it up (SpeedDefault, one goroutine), a fresh
// encoder each time as a layer has; compare the lines' ns/op. With
// TINYVM_BENCH_FILE set it compresses that file instead (a built raw
// disk, say).
func BenchmarkDisk(b *testing.B) {
	data := disk()
	if p := os.Getenv("TINYVM_BENCH_FILE"); p != "" {
		var err error
		if data, err = os.ReadFile(p); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("zzstd", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			z, _ := NewWriter(io.Discard)
			z.Write(data)
			z.Close()
		}
	})
	b.Run("klauspost-stream", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			z, _ := zstd.NewWriter(io.Discard, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
			z.Write(data)
			z.Close()
		}
	})
}
