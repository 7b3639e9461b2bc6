package build

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
	"github.com/tinyvm-oci/tinyvm-oci/internal/txn/txntest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

var update = flag.Bool("update", false, "rewrite the golden digests in testdata/")

// goldenSums pins the SHA-256 of every default output. Changing it is a
// conscious act: run go test ./pkg/build -update and say why in the commit.
const goldenSums = "../../testdata/SHA256SUMS"

func TestGoldenDigests(t *testing.T) {
	dir := t.TempDir()
	if _, err := Files(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(goldenSums, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenSums)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/build -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("default outputs changed:\ngot:\n%s\nwant:\n%s\nIf the change is intended, run go test ./pkg/build -update and give the reason in the commit message.", got, want)
	}
	if n := strings.Count(string(got), "\n"); n != len(formats.Types) {
		t.Errorf("SHA256SUMS has %d lines, want one per format (%d)", n, len(formats.Types))
	}
}

// TestSourceDateEpoch: the time changes only through SOURCE_DATE_EPOCH.
func TestSourceDateEpoch(t *testing.T) {
	def, err := ParseEpoch("")
	if err != nil || !def.Equal(formats.DefaultTime) {
		t.Errorf("empty SOURCE_DATE_EPOCH = %v, %v", def, err)
	}
	got, err := ParseEpoch("1700000000")
	if err != nil || !got.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("ParseEpoch = %v, %v", got, err)
	}
	for _, bad := range []string{"yesterday", "-5", "1.5"} {
		if _, err := ParseEpoch(bad); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
			t.Errorf("ParseEpoch(%q) = %v", bad, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"512": 512, "1MiB": 1 << 20, "10GiB": 10 << 30, "2TiB": 2 << 40, "64K": 64 << 10, "1m": 1 << 20, "4096B": 4096,
	}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "1000", "1.5MiB", "10MB", "lots", "99999999999TiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

func TestFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	res, err := Files(dir, Options{Size: 512, Firmware: []Firmware{BIOS}, Sector: sector.Options{Then: sector.PowerOff}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) == 0 {
		t.Error("a 512-byte disk gives no warning")
	}
	for _, f := range res.Files {
		if f.SHA256 == "" || f.Size == 0 {
			t.Errorf("%s: size %d, sha256 %q", f.Format.Type, f.Size, f.SHA256)
		}
	}
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		if strings.Contains(n.Name(), ".tmp-") || strings.HasPrefix(n.Name(), txn.Prefix) {
			t.Errorf("temp file %s left behind", n.Name())
		}
	}
}

// TestCancelled: a build whose context ends, before or during the writes,
// returns the context's error and leaves the directory as it was.
func TestCancelled(t *testing.T) {
	dir := t.TempDir()
	if _, err := Files(dir, Options{Formats: []formats.Format{mustLookup(t, "raw")}}); err != nil {
		t.Fatal(err)
	}
	before := txntest.Snapshot(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := FilesContext(ctx, dir, Options{Sector: sector.Options{Message: "other"}, OCILayout: true, ImageRepo: "r.example/vm"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled build: %v, want context.Canceled", err)
	}
	// Cancelled in the middle of a write: a fixed VHD writes its zeros.
	ctx, cancel = context.WithCancel(context.Background())
	w := &cancelAfter{n: 3, cancel: cancel}
	vhd := mustLookup(t, "vhd")
	vhd.Write = func(out io.Writer, d disk.Disk, o formats.Options) error {
		return mustLookup(t, "vhd").Write(io.MultiWriter(w, out), d, o)
	}
	_, err := FilesContext(ctx, dir, Options{Size: 64 << 20, Formats: []formats.Format{vhd}, Format: formats.Options{VHDType: "fixed"}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("build cancelled mid-write: %v, want context.Canceled", err)
	}
	if after := txntest.Snapshot(t, dir); after != before {
		t.Errorf("a cancelled build changed the directory:\n%s", after)
	}
}

// cancelAfter cancels after n writes.
type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return len(p), nil
}

func mustLookup(t *testing.T, name string) formats.Format {
	t.Helper()
	f, err := formats.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func BenchmarkRaw(b *testing.B) {
	for _, size := range []int64{1 << 20, 1 << 40} {
		b.Run(sizeName(size), func(b *testing.B) {
			raw, _ := formats.Lookup("raw")
			for b.Loop() {
				if _, err := Files(b.TempDir(), Options{Size: size, Formats: []formats.Format{raw}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func sizeName(n int64) string {
	if n >= 1<<40 {
		return "1TiB"
	}
	return "1MiB"
}
