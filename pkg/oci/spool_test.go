package oci_test

import (
	"errors"
	"io"
	"os"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// TestSpoolFails: a blob whose writer fails leaves nothing behind.
func TestSpoolFails(t *testing.T) {
	dir := t.TempDir()
	boom := errors.New("boom")
	_, _, _, err := oci.Spool(dir, func(w io.Writer) error {
		w.Write(make([]byte, 200<<10))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the writer's error", err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Errorf("left behind: %v", es)
	}
}
