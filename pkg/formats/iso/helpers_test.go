package iso

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
)

// stamp is the fixed time the tests record (2024-01-01, the project's
// default SOURCE_DATE_EPOCH).
var stamp = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
)

// build writes d as an ISO in memory.
func build(tb testing.TB, d disk.Disk, o Options) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, d, o); err != nil {
		tb.Fatalf("Write(%+v): %v", o, err)
	}
	return buf.Bytes()
}

// writeTemp stores data as a file for the external tools.
func writeTemp(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// variants are the option sets every test covers.
var variants = []struct {
	name string
	o    Options
}{
	{"noemul", Options{Time: stamp}},
	{"floppy", Options{Boot: BootFloppy, Time: stamp}},
}
