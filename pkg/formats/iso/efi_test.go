package iso

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/disktest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// efiFiles stand in for the EFI applications: the ISO copies the ESP
// whatever it holds.
var efiFiles = []fat.File{
	{Path: "EFI/BOOT/BOOTX64.EFI", Data: []byte("x86-64 application")},
	{Path: "EFI/BOOT/BOOTAA64.EFI", Data: []byte("aarch64 application")},
}

// universalDisk is a 1 MiB GPT disk with the 440-byte BIOS program (or no
// BIOS code when bios is false) and an ESP holding efiFiles.
func universalDisk(t *testing.T, bios bool) *universalParts {
	t.Helper()
	var code []byte
	if bios {
		s, err := sector.Build(sector.Options{Then: sector.PowerOff, Layout: sector.Partitioned})
		if err != nil {
			t.Fatal(err)
		}
		code = s.Code()
	}
	d, err := universal.New(code, efiFiles, mib, universal.WithTime(stamp))
	if err != nil {
		t.Fatal(err)
	}
	esp, err := universal.ESP(efiFiles, universal.WithTime(stamp))
	if err != nil {
		t.Fatal(err)
	}
	return &universalParts{iso: build(t, d, Options{Time: stamp}), esp: esp}
}

type universalParts struct{ iso, esp []byte }

// TestEFIEntry: an ISO made from the universal disk has a second El
// Torito entry, platform UEFI, pointing at /EFI.IMG, which is the disk's
// ESP byte for byte and a FAT volume fsck.fat and mtools accept.
func TestEFIEntry(t *testing.T) {
	xorriso := tooltest.Require(t, "xorriso", tooltest.Xorriso)
	for _, bios := range []bool{true, false} {
		name := map[bool]string{true: "bios+uefi", false: "uefi"}[bios]
		t.Run(name, func(t *testing.T) {
			p := universalDisk(t, bios)
			file := writeTemp(t, "512-byte-vm.iso", p.iso)
			out, err := exec.Command(xorriso, "-indev", file, "-report_el_torito", "plain", "-report_system_area", "plain").CombinedOutput()
			if err != nil {
				t.Fatalf("xorriso: %v\n%s", err, out)
			}
			report := string(out)
			biosFlag := map[bool]string{true: "y", false: "n"}[bios]
			for _, want := range []string{
				"El Torito boot img :   1  BIOS  " + biosFlag + "   none",
				"El Torito boot img :   2  UEFI  y   none  0x0000  0x00     64",
				"El Torito img path :   2  /EFI.IMG",
			} {
				if !strings.Contains(report, want) {
					t.Errorf("xorriso report lacks %q:\n%s", want, report)
				}
			}
			// The ISO holds no GPT, so its MBR has no protective entry.
			if strings.Contains(report, "0xee") {
				t.Errorf("the ISO's MBR keeps the disk's protective GPT entry:\n%s", report)
			}
			img := filepath.Join(t.TempDir(), "efi.img")
			if out, err := exec.Command(xorriso, "-osirrox", "on", "-indev", file, "-extract", "/EFI.IMG", img).CombinedOutput(); err != nil {
				t.Fatalf("xorriso -extract: %v\n%s", err, out)
			}
			got, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, p.esp) {
				t.Fatalf("EFI.IMG (%d bytes) is not the disk's ESP (%d bytes)", len(got), len(p.esp))
			}
			disktest.Fsck(t, img)
			var want []disktest.File
			for _, f := range efiFiles {
				want = append(want, disktest.File{Path: f.Path, Data: f.Data})
			}
			disktest.ReadBack(t, img, want)

			// inspect reads both entries.
			in, err := Inspect(bytes.NewReader(p.iso), int64(len(p.iso)))
			if err != nil {
				t.Fatal(err)
			}
			if e := in.ElTorito; e == nil || e.Bootable != bios || e.EFI == nil || e.EFI.SectorCount != len(p.esp)/512 {
				t.Errorf("inspect: %+v", in.ElTorito)
			}
		})
	}
}

// A BIOS-only disk (no GPT) gets no EFI entry: the ISO is what it was.
func TestNoEFIEntryWithoutESP(t *testing.T) {
	bare := build(t, formattest.BootDisk(t, mib), Options{Time: stamp})
	if int64(len(bare)) != Size(Options{}) {
		t.Errorf("a BIOS-only ISO is %d bytes, want %d", len(bare), Size(Options{}))
	}
	in, err := Inspect(bytes.NewReader(bare), int64(len(bare)))
	if err != nil {
		t.Fatal(err)
	}
	if in.ElTorito.EFI != nil {
		t.Errorf("a BIOS-only ISO has an EFI entry: %+v", in.ElTorito.EFI)
	}
}
