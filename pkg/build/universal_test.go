package build

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/gpt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/efi"
)

// TestDefaultDiskIsUniversal: the default raw disk is the GPT disk whose
// protective MBR holds the 440-byte program and whose ESP holds both EFI
// applications; --firmware bios gives the classic bare sector.
func TestDefaultDiskIsUniversal(t *testing.T) {
	d, p, _, err := Disk(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Sector == nil || p.Sector.Layout() != sector.Partitioned || len(p.EFI) != 2 {
		t.Fatalf("programs %+v, want the 440-byte program and two EFI applications", p)
	}
	tab, err := gpt.Read(d, d.Size())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tab.Find(gpt.ESP); !ok {
		t.Fatal("no ESP in the default disk's GPT")
	}
	if _, err := universal.FindESP(d); err != nil {
		t.Fatal(err)
	}

	bare, p, _, err := Disk(Options{Firmware: []Firmware{BIOS}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Sector.Layout() != sector.Bare || p.EFI != nil {
		t.Fatalf("--firmware bios: %+v", p)
	}
	if _, err := universal.FindESP(bare); err == nil {
		t.Fatal("--firmware bios has an ESP")
	}

	_, p, _, err = Disk(Options{Firmware: []Firmware{UEFI}, Arches: []efi.Arch{efi.ARM64}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Sector != nil || len(p.EFI) != 1 || p.EFI[0].Arch != efi.ARM64 {
		t.Fatalf("--firmware uefi --arch arm64: %+v", p)
	}
}

// TestArchitectures: the architectures the images list follow what the
// disk boots on.
func TestArchitectures(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want []string
	}{
		{Options{}, []string{"amd64", "arm64"}},
		{Options{Firmware: []Firmware{BIOS}}, []string{"amd64"}},
		{Options{Arches: []efi.Arch{efi.AMD64}}, []string{"amd64"}},
		{Options{Firmware: []Firmware{UEFI}, Arches: []efi.Arch{efi.ARM64}}, []string{"arm64"}},
		{Options{Firmware: []Firmware{BIOS, UEFI}, Arches: []efi.Arch{efi.ARM64}}, []string{"amd64", "arm64"}},
	} {
		if got := tc.o.Architectures(); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.o, got, tc.want)
		}
	}
}

// TestSizeBudget: the universal disk stays tiny. The gzip'd qcow2
// containerDisk layer, what a KubeVirt node pulls, stays under 4 KB.
func TestSizeBudget(t *testing.T) {
	dir := t.TempDir()
	qcow2, err := formats.Lookup("qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Files(dir, Options{Formats: []formats.Format{qcow2}, OCILayout: true}); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(filepath.Join(dir, LayoutDir))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] != "qcow2" {
			continue
		}
		cd, err := idx.ImageIndex(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cim, err := cd.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		img, err := cd.Image(cim.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		found = true
		if n := m.Layers[0].Size; n >= 4000 {
			t.Errorf("the qcow2 containerDisk layer is %d bytes, over the 4 KB budget", n)
		} else {
			t.Logf("qcow2 containerDisk layer: %d bytes", n)
		}
	}
	if !found {
		t.Fatal("no qcow2 tag in the layout")
	}
}
