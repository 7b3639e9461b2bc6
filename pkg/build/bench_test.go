package build

import (
	"fmt"
	"testing"
)

// BenchmarkFiles compares a build of every format with and without the
// OCI layout: the layout should cost little beyond the files (each layer
// compressed once, straight into its blob, while the other formats are
// still being written). Run with -benchtime=20x -count=5 and compare
// medians; with TMPDIR on tmpfs the file system's own costs drop out.
func BenchmarkFiles(b *testing.B) {
	for _, size := range []int64{DefaultSize, 64 << 20} {
		for _, layout := range []bool{false, true} {
			b.Run(fmt.Sprintf("size=%dMiB/layout=%v", size>>20, layout), func(b *testing.B) {
				for b.Loop() {
					if _, err := Files(b.TempDir(), Options{Size: size, OCILayout: layout}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
