package iso

// Oracles: xorriso (libisofs) and isoinfo (genisoimage) read the volume and
// the boot catalog; qemu-img identifies the file; QEMU's SeaBIOS boots it.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// xorrisoReport is what `xorriso -report_el_torito plain` says about the
// first boot image, and where it finds the catalog and the files.
type xorrisoReport struct {
	CatalogLBA  int64
	CatalogPath string
	Platform    string // "BIOS" for platform 0
	Bootable    bool
	Emulation   string // "none", "fd1.4", ...
	LoadSegment int
	SectorCount int
	ImageLBA    int64
	ImagePath   string
	MBR         bool // the system area summary names an MBR
}

// runXorriso returns xorriso's report on file.
func runXorriso(t *testing.T, file string) xorrisoReport {
	t.Helper()
	bin := tooltest.Require(t, "xorriso", tooltest.Xorriso)
	out, err := exec.Command(bin, "-indev", file, "-report_el_torito", "plain", "-report_system_area", "plain").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	r, err := parseXorriso(string(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return r
}

func parseXorriso(out string) (xorrisoReport, error) {
	var r xorrisoReport
	found := false
	for _, line := range strings.Split(out, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch strings.TrimSpace(key) {
		case "El Torito catalog":
			if len(f) >= 1 {
				r.CatalogLBA, _ = strconv.ParseInt(f[0], 10, 64)
			}
		case "El Torito cat path":
			r.CatalogPath = strings.TrimSpace(val)
		case "El Torito boot img":
			// N Pltf B Emul Ld_seg Hdpt Ldsiz LBA
			if len(f) < 8 || f[0] != "1" {
				continue
			}
			found = true
			seg, err1 := strconv.ParseInt(f[4], 0, 32)
			n, err2 := strconv.Atoi(f[6])
			lba, err3 := strconv.ParseInt(f[7], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				return r, fmt.Errorf("xorriso: cannot parse boot image line %q", line)
			}
			r.Platform, r.Bootable, r.Emulation = f[1], f[2] == "y", f[3]
			r.LoadSegment, r.SectorCount, r.ImageLBA = int(seg), n, lba
		case "El Torito img path":
			if len(f) == 2 && f[0] == "1" {
				r.ImagePath = f[1]
			}
		case "System area summary":
			r.MBR = strings.Contains(val, "MBR")
		}
	}
	if !found {
		return r, fmt.Errorf("xorriso lists no El Torito boot image")
	}
	return r, nil
}

func TestXorrisoReport(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			file := writeTemp(t, "512-byte-vm.iso", build(t, formattest.BootDisk(t, mib), v.o))
			got := runXorriso(t, file)
			want := xorrisoReport{
				CatalogLBA: catalogLBA, CatalogPath: "/BOOT.CAT",
				Platform: "BIOS", Bootable: true, Emulation: "none",
				LoadSegment: 0, SectorCount: 1, ImageLBA: imageLBA, ImagePath: "/BOOT.IMG",
				MBR: true,
			}
			if v.o.Boot == BootFloppy {
				want.Emulation = "fd1.4"
			}
			if got != want {
				t.Errorf("xorriso reports\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// xorriso extracts BOOT.IMG and BOOT.CAT through the directory records, and
// reads the dates and the volume id from the PVD.
func TestXorrisoExtract(t *testing.T) {
	bin := tooltest.Require(t, "xorriso", tooltest.Xorriso)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			data := build(t, formattest.BootDisk(t, mib), v.o)
			file := writeTemp(t, "512-byte-vm.iso", data)
			dir := t.TempDir()
			out, err := exec.Command(bin, "-osirrox", "on", "-indev", file,
				"-extract", "/BOOT.IMG", filepath.Join(dir, "img"),
				"-extract", "/BOOT.CAT", filepath.Join(dir, "cat"),
				"-pvd_info").CombinedOutput()
			if err != nil {
				t.Fatalf("xorriso: %v\n%s", err, out)
			}
			img, err1 := os.ReadFile(filepath.Join(dir, "img"))
			cat, err2 := os.ReadFile(filepath.Join(dir, "cat"))
			if err1 != nil || err2 != nil {
				t.Fatalf("extracted files: %v, %v\n%s", err1, err2, out)
			}
			wantImg := formattest.BootSector(t)
			if v.o.Boot == BootFloppy {
				wantImg = append(wantImg, make([]byte, floppySize-len(wantImg))...)
			}
			if !bytes.Equal(img, wantImg) {
				t.Errorf("BOOT.IMG is %d bytes and not the boot image", len(img))
			}
			if len(cat) != BlockSize || cat[0] != valHeaderID || cat[initOffset] != bootable {
				t.Errorf("BOOT.CAT (%d bytes) is not the boot catalog", len(cat))
			}
			for _, want := range []string{
				"Volume Id    : 512_BYTE_VM",
				"App Id       : TINYVM-OCI",
				"Creation Time: 2024010100000000",
				"Modif. Time  : 2024010100000000",
			} {
				if !strings.Contains(string(out), want) {
					t.Errorf("xorriso -pvd_info lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// isoinfo (genisoimage) is a second, independent reader.
func TestIsoinfo(t *testing.T) {
	bin := tooltest.Require(t, "isoinfo", tooltest.Genisoimage)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			file := writeTemp(t, "512-byte-vm.iso", build(t, formattest.BootDisk(t, mib), v.o))
			out, err := exec.Command(bin, "-d", "-i", file).CombinedOutput()
			if err != nil {
				t.Fatalf("isoinfo -d: %v\n%s", err, out)
			}
			media := "Boot media 0 (No Emulation Boot)"
			if v.o.Boot == BootFloppy {
				media = "Boot media 2 (1.44MB Floppy)"
			}
			for _, want := range []string{
				"Volume id: 512_BYTE_VM",
				"Logical block size is: 2048",
				fmt.Sprintf("Volume size is: %d", Size(v.o)/BlockSize),
				"El Torito VD version 1 found, boot catalog is in sector 22",
				"Arch 0 (x86)",
				"Key 55 AA",
				"Bootid 88 (bootable)",
				media,
				"Load segment 0",
				"Nsect 1",
				"Bootoff 17 23",
			} {
				if !strings.Contains(string(out), want) {
					t.Errorf("isoinfo -d lacks %q:\n%s", want, out)
				}
			}
			out, err = exec.Command(bin, "-l", "-i", file).CombinedOutput()
			if err != nil {
				t.Fatalf("isoinfo -l: %v\n%s", err, out)
			}
			for _, want := range []string{"BOOT.CAT;1", "BOOT.IMG;1", "Jan  1 2024"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("isoinfo -l lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// qemu-img sees an ISO as a raw image of the file's size.
func TestQemuImgInfo(t *testing.T) {
	bin := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, v := range variants {
		file := writeTemp(t, "512-byte-vm.iso", build(t, formattest.BootDisk(t, mib), v.o))
		out, err := exec.Command(bin, "info", "--output=json", file).Output()
		if err != nil {
			t.Fatalf("qemu-img info: %v", err)
		}
		var got struct {
			Format      string `json:"format"`
			VirtualSize int64  `json:"virtual-size"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("qemu-img info: %v\n%s", err, out)
		}
		if got.Format != "raw" || got.VirtualSize != Size(v.o) {
			t.Errorf("%s: qemu-img info says %s, %d bytes; want raw, %d", v.name, got.Format, got.VirtualSize, Size(v.o))
		}
	}
}

// TestBoot boots the ISO in QEMU as a CD-ROM (ide-cd on pc, a CD-ROM on
// q35's AHCI) and, hybrid, as a hard disk. The default ISO is 96 sectors:
// SeaBIOS boots disks under 1008 sectors only from IDE on pc, so its
// hard-disk boot is tested there; the floppy variant is large enough for
// virtio on q35.
func TestBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	files := map[string]string{}
	for _, v := range variants {
		files[v.name] = writeTemp(t, v.name+".iso", build(t, formattest.BootDisk(t, mib), v.o))
	}
	for _, c := range []struct{ variant, machine, bus string }{
		{"noemul", "pc", "cdrom"},
		{"noemul", "q35", "cdrom"},
		{"noemul", "pc", "ide"},
		{"floppy", "pc", "cdrom"},
		{"floppy", "q35", "cdrom"},
		{"floppy", "pc", "ide"},
		{"floppy", "q35", "virtio"},
	} {
		t.Run(c.variant+"/"+c.machine+"/"+c.bus, func(t *testing.T) {
			formattest.Boot(t, qemu.Options{File: files[c.variant], Driver: "raw", Machine: c.machine, Bus: c.bus})
		})
	}
}
