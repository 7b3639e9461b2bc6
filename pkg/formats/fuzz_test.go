package formats_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
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

// TestMutants is FuzzDetectInspect's deterministic counterpart: mutants of
// every writer's output are detected and inspected as `tinyvm-oci
// inspect` does, with the shared checks of formattest.MutationTest.
func TestMutants(t *testing.T) {
	s, err := sector.Build(sector.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := disk.New(s.Bytes(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var seeds [][]byte
	for _, ft := range formats.Types {
		var buf bytes.Buffer
		if err := ft.Write(&buf, d, formats.Options{}); err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, buf.Bytes())
	}
	detectInspect := func(r io.ReaderAt, size int64) (*info.Info, error) {
		ft, err := formats.Detect(r, size)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", info.ErrCorrupt, err)
		}
		return ft.Inspect(r, size)
	}
	formattest.MutationTest(t, seeds, nil, 3000, detectInspect, func(size int64) int64 { return 3*size + 256<<10 })
}
