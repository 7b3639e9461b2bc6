package iso_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/iso"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// TestTableRow checks iso's row in formats.Types and that it passes
// ISOBoot and the SOURCE_DATE_EPOCH time through.
func TestTableRow(t *testing.T) {
	f, err := formats.Lookup(iso.Type)
	if err != nil {
		t.Fatal(err)
	}
	if f.Ext != "iso" || f.QemuDriver != "raw" || f.MediaType != "application/vnd.tinyvm-oci.disk.iso" ||
		f.FileName() != "512-byte-vm.iso" || f.Detect == nil || f.Inspect == nil {
		t.Errorf("row = %+v", f)
	}
	// Table order: raw, qcow2, vmdk, vdi, vhd, vhdx, iso, ova.
	order := []string{"raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx", "iso", "ova"}
	var present []string
	for _, name := range formats.Names() {
		if slices.Contains(order, name) {
			present = append(present, name)
		}
	}
	if !slices.IsSortedFunc(present, func(a, b string) int {
		return slices.Index(order, a) - slices.Index(order, b)
	}) {
		t.Errorf("table order %v, want the order %v", formats.Names(), order)
	}

	s, err := sector.Build(sector.Options{Then: sector.PowerOff})
	if err != nil {
		t.Fatal(err)
	}
	d, err := disk.New(s.Bytes(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1700000000, 0) // 2023-11-14 22:13:20 UTC
	for _, c := range []struct {
		boot string
		size int
		sub  string
	}{{"", 49152, iso.BootNoEmul}, {"floppy", 1521664, iso.BootFloppy}} {
		var buf bytes.Buffer
		if err := f.Write(&buf, d, formats.Options{ISOBoot: c.boot, Time: epoch}); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != c.size {
			t.Errorf("ISOBoot %q: %d bytes, want %d", c.boot, buf.Len(), c.size)
		}
		if !bytes.Contains(buf.Bytes(), []byte("2023111422132000")) {
			t.Errorf("ISOBoot %q: the PVD does not record Options.Time", c.boot)
		}
		data := buf.Bytes()
		if !f.Detect(data[:min(len(data), 64<<10)], bytes.NewReader(data), int64(len(data))) {
			t.Errorf("ISOBoot %q: Detect misses it", c.boot)
		}
		in, err := f.Inspect(bytes.NewReader(data), int64(len(data)))
		if err != nil || in.Subformat != c.sub {
			t.Errorf("ISOBoot %q: Inspect = %+v, %v", c.boot, in, err)
		}
	}
	err = f.Write(&bytes.Buffer{}, d, formats.Options{ISOBoot: "cdrom"})
	if err == nil || !strings.Contains(err.Error(), "noemul") || !strings.Contains(err.Error(), "floppy") {
		t.Errorf("unknown ISOBoot: err = %v, want one listing noemul and floppy", err)
	}
}
