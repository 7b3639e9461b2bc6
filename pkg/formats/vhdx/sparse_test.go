package vhdx

import (
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
)

// TestSparseCost inspects the writer's 64 TiB disk as a sparse file: its
// 512 MiB BAT is almost all zeros, holes on a sparse host file, and the
// bytes read follow the bytes stored, not the BAT's size.
func TestSparseCost(t *testing.T) {
	var w formattest.SparseWriter
	if err := Write(&w, formattest.BootDisk(t, MaxSize), Options{}); err != nil {
		t.Fatal(err)
	}
	f := &w.File
	c := &formattest.Counter{R: f}
	inf, err := Inspect(c, f.Len)
	if err != nil {
		t.Fatal(err)
	}
	if inf.VirtualSize != MaxSize || inf.Allocated != inf.BlockSize {
		t.Errorf("info %+v, want 64 TiB with one block", inf)
	}
	if c.Bytes > 2*f.Stored()+mib {
		t.Errorf("read %d bytes of a file storing %d (apparent size %d)", c.Bytes, f.Stored(), f.Len)
	}
	t.Logf("read %d bytes in %d calls; the file stores %d of %d", c.Bytes, c.Calls, f.Stored(), f.Len)
}
