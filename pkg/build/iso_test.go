package build

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/iso"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

func isoFormat(t *testing.T) formats.Format {
	t.Helper()
	f, err := formats.Lookup(iso.Type)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Every probe but bootcount works from the iso: its El Torito entry loads
// the program's whole BootImage. bootcount is refused, one line from
// Probes.CheckReadOnly: the CD cannot take its counter.
func TestProbesISO(t *testing.T) {
	f := isoFormat(t)
	p, err := sector.ParseProbes("id,disks,heartbeat,echo")
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Sector: sector.Options{Probes: p}, Formats: []formats.Format{f}}
	if err := o.Validate(); err != nil {
		t.Fatalf("probes %v with --format iso: %v", p, err)
	}
	res, err := Files(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 1 || res.Files[0].Format.Type != iso.Type {
		t.Fatalf("files %+v, want the iso", res.Files)
	}
	b, err := os.ReadFile(res.Files[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	inf, err := iso.Inspect(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(res.Sector.BootImage()) / 512; inf.ElTorito == nil || inf.ElTorito.SectorCount != want || want < 2 {
		t.Errorf("El Torito entry %+v, want %d sectors (BootImage)", inf.ElTorito, want)
	}

	floppy := o
	floppy.Format.ISOBoot = iso.BootFloppy
	if err := floppy.Validate(); !errors.Is(err, ErrProbe) || !strings.Contains(err.Error(), "use --iso-boot noemul") {
		t.Errorf("probes with --iso-boot floppy: %v, want the floppy error", err)
	}
	floppy.Formats = nil // the default list holds the iso too
	if err := floppy.Validate(); !errors.Is(err, ErrProbe) {
		t.Errorf("probes with --iso-boot floppy and every format: %v, want the floppy error", err)
	}

	o.Sector.Probes.BootCount = true
	err = o.Validate()
	if !errors.Is(err, ErrProbe) || !errors.Is(err, sector.ErrReadOnly) || !strings.Contains(err.Error(), "iso is read-only") || strings.Contains(err.Error(), "\n") {
		t.Errorf("bootcount with --format iso: %v, want the one-line read-only error", err)
	}
}

// With the default format list the iso is written with probes, and left
// out with a warning for bootcount.
func TestProbesISODefaultFormats(t *testing.T) {
	for _, c := range []struct {
		probes string
		iso    bool
	}{{"id", true}, {"id,bootcount", false}} {
		p, err := sector.ParseProbes(c.probes)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		res, err := Files(dir, Options{Sector: sector.Options{Probes: p}})
		if err != nil {
			t.Fatalf("%s: %v", c.probes, err)
		}
		has := slices.ContainsFunc(res.Files, func(f File) bool { return f.Format.Type == iso.Type })
		warned := slices.ContainsFunc(res.Warnings, func(w string) bool {
			return strings.HasPrefix(w, "iso left out: ") && strings.Contains(w, "iso is read-only")
		})
		_, statErr := os.Stat(filepath.Join(dir, formats.BaseName+".iso"))
		if has != c.iso || warned == c.iso || (statErr == nil) != c.iso {
			t.Errorf("%s: iso written %v (file: %v), warned %v (%q); want written %v", c.probes, has, statErr, warned, res.Warnings, c.iso)
		}
	}
}
