package oci_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

// BenchmarkWriteLayout writes the layout of every format's file two
// ways: WriteLayout, which gzips each containerDisk layer once, straight
// into its blob (WithBlobDir), and WriteImages of images made without a
// blob directory, which gzips each layer once for its digest and again
// for its blob, as WriteLayout did before. Compare medians of -count 5.
func BenchmarkWriteLayout(b *testing.B) {
	for _, size := range []int64{build.DefaultSize, 64 << 20} {
		files := ocitest.Files(b, b.TempDir(), build.Options{Size: size})
		b.Run(fmt.Sprintf("size=%dMiB/one-pass", size>>20), func(b *testing.B) {
			for b.Loop() {
				if err := oci.WriteLayout(filepath.Join(b.TempDir(), "oci"), files); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("size=%dMiB/two-pass", size>>20), func(b *testing.B) {
			for b.Loop() {
				imgs, err := oci.Images(files)
				if err != nil {
					b.Fatal(err)
				}
				if err := oci.WriteImages(filepath.Join(b.TempDir(), "oci"), imgs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
