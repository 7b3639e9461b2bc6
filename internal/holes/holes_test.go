package holes

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// TestData makes a file with data at 0 and at 1 MiB and a hole between
// and after, and checks that the extents cover the data and skip most of
// the holes (file systems allocate in blocks, so extents are rounded out).
func TestData(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 4 << 20
	for _, off := range []int64{0, 1 << 20} {
		if _, err := f.WriteAt([]byte("data"), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	ext, ok := Data(context.Background(), f, size)
	if !ok {
		if runtime.GOOS == "linux" {
			// CI's file systems report them: a skip there would hide it.
			tooltest.Missing(t, "the temp directory's file system does not report holes (SEEK_DATA): use ext4, xfs, btrfs or tmpfs")
		}
		return
	}
	var covered int64
	for _, want := range []int64{0, 1 << 20} {
		found := false
		for _, e := range ext {
			found = found || (e.Off <= want && want+4 <= e.End)
		}
		if !found {
			t.Errorf("data at %d not in the extents %v", want, ext)
		}
	}
	for _, e := range ext {
		covered += e.End - e.Off
	}
	if covered >= size/2 {
		t.Errorf("extents %v cover %d of %d bytes: the holes were not seen", ext, covered, size)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ext, _ := Data(ctx, f, size); len(ext) != 1 || ext[0] != (Extent{0, size}) {
		t.Errorf("a done context gave %v, want the whole file as data", ext)
	}
}
