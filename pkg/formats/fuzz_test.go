package formats_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// FuzzDetectInspect drives what `tinyvm-oci inspect` does with a file:
// detect the format by its magic, then inspect it. Corrupt or truncated
// input must give an error, never a panic. Seeded with every writer's
// output (the format packages fuzz their own readers in depth).
func FuzzDetectInspect(f *testing.F) {
	s, err := sector.Build(sector.Options{})
	if err != nil {
		f.Fatal(err)
	}
	d, err := disk.New(s.Bytes(), 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	for _, ft := range formats.Types {
		var buf bytes.Buffer
		if err := ft.Write(&buf, d, formats.Options{}); err != nil {
			f.Fatal(err)
		}
		b := buf.Bytes()
		// Keep seeds small enough for the fuzzer to mutate quickly; a
		// cut file is a good seed for the truncation paths too.
		f.Add(b[:min(len(b), 256<<10)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		ft, err := formats.Detect(r, int64(len(b)))
		if err != nil {
			return
		}
		inf, err := ft.Inspect(r, int64(len(b)))
		if err != nil {
			if ft.Type != "raw" && !errors.Is(err, info.ErrCorrupt) {
				t.Errorf("%s: error %v does not wrap info.ErrCorrupt", ft.Type, err)
			}
			return
		}
		if inf.VirtualSize < 0 || inf.Allocated < 0 {
			t.Errorf("%s: negative sizes %+v", ft.Type, inf)
		}
	})
}
