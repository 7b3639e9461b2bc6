package universal_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/disktest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/gpt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// TestReserved places the BIOS probes' second stage and boot counter in
// the gap between the primary GPT and the ESP: the bytes land at their
// LBAs, the GPT stays valid for sgdisk and sfdisk, and the ESP is where
// it was.
func TestReserved(t *testing.T) {
	s, err := sector.Build(sector.Options{Layout: sector.Partitioned, Probes: sector.Probes{BootCount: true, Disks: true, ID: true}})
	if err != nil {
		t.Fatal(err)
	}
	var opts []universal.Option
	for _, r := range s.Reserved() {
		opts = append(opts, universal.WithReserved(r.LBA, r.Data))
	}
	d, err := universal.New(s.Code(), espFiles(), 1<<20, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Reserved() {
		got := make([]byte, len(r.Data))
		if _, err := d.ReadAt(got, r.LBA*512); err != nil || !bytes.Equal(got, r.Data) {
			t.Errorf("LBA %d: %d bytes differ (%v)", r.LBA, len(r.Data), err)
		}
	}
	if n := len(d.Extents()); n != 5 {
		t.Errorf("%d extents, want 5 (tables, stage 2, counter, ESP, backup)", n)
	}
	j := disktest.VerifyGPT(t, writeRaw(t, d))
	if len(j.Partitions) != 1 || j.Partitions[0].Start != universal.ESPFirstLBA {
		t.Errorf("sfdisk reads %+v", j.Partitions)
	}
	if e, err := universal.FindESP(d); err != nil || e.Off != universal.ESPFirstLBA*512 {
		t.Errorf("FindESP: %+v, %v", e, err)
	}
	// The reserved bytes are part of what the GUIDs hash.
	plain, _ := universal.New(s.Code(), espFiles(), 1<<20)
	tp, _ := gpt.Read(plain, plain.Size())
	tr, _ := gpt.Read(d, d.Size())
	if tp.DiskGUID == tr.DiskGUID {
		t.Error("the disk with reserved data has the plain disk's GUID")
	}
}

func TestReservedBadInput(t *testing.T) {
	one := make([]byte, 512) // one sector
	for _, c := range []struct {
		name string
		opts []universal.Option
		text string
	}{
		{"in the table", []universal.Option{universal.WithReserved(33, one)}, "at LBA 33; the gap is LBA 34-63 (15360 bytes)"},
		{"into the ESP", []universal.Option{universal.WithReserved(62, make([]byte, 1025))}, "1025 bytes at LBA 62"},
		{"empty", []universal.Option{universal.WithReserved(40, nil)}, "0 bytes at LBA 40"},
		{"overlap", []universal.Option{universal.WithReserved(34, make([]byte, 2048)), universal.WithReserved(37, one)}, "overlap those at LBA 34-37"},
	} {
		_, err := universal.New(nil, espFiles(), 1<<20, c.opts...)
		if !errors.Is(err, universal.ErrReserved) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: %v, want ErrReserved with %q", c.name, err, c.text)
		}
	}
	// The whole gap fits, and so do neighbours.
	if _, err := universal.New(nil, espFiles(), 1<<20, universal.WithReserved(34, make([]byte, 30*512))); err != nil {
		t.Errorf("the whole gap: %v", err)
	}
	if _, err := universal.New(nil, espFiles(), 1<<20, universal.WithReserved(34, one), universal.WithReserved(35, one)); err != nil {
		t.Errorf("adjacent sectors: %v", err)
	}
}
