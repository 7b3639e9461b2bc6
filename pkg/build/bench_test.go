package build

import (
	"fmt"
	"testing"
)

// BenchmarkFiles compares a build of every format with and without the
// OCI layout: the layout should cost about what the files do, not twice
// over (each containerDisk layer gzipped once, straight into its blob).
// Run with -benchtime=10x -count=5 and compare medians.
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
