package iso

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/probetest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// probeDisk lays s out as pkg/build does: on the bare disk, the sector
// and its Reserved chunks at their LBAs; on the universal disk, the
// Reserved chunks in the gap before the ESP.
func probeDisk(t testing.TB, s *sector.Sector, l sector.Layout) disk.Disk {
	t.Helper()
	if l == sector.Bare {
		chunks := []disk.Chunk{{Off: 0, Data: s.Bytes()}}
		for _, r := range s.Reserved() {
			chunks = append(chunks, disk.Chunk{Off: r.LBA * disk.SectorSize, Data: r.Data})
		}
		d, err := disk.NewSparse(mib, chunks...)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	var opts []universal.Option
	for _, r := range s.Reserved() {
		opts = append(opts, universal.WithReserved(r.LBA, r.Data))
	}
	files := []fat.File{{Path: "EFI/BOOT/README.TXT", Data: []byte("BIOS boots the MBR\r\n")}}
	d, err := universal.New(s.Code(), files, mib, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// bootImage returns the initial entry's sector count and the bytes it
// loads, found through the catalog as a BIOS finds them.
func bootImage(t testing.TB, iso []byte) (int, []byte) {
	t.Helper()
	e := iso[catalogLBA*BlockSize+initOffset:]
	n := int(binary.LittleEndian.Uint16(e[initCountOffset:]))
	lba := int64(binary.LittleEndian.Uint32(e[initLBAOffset:]))
	return n, iso[lba*BlockSize : lba*BlockSize+int64(n)*loadUnit]
}

// mbrCode is the part of a boot sector that is program on both layouts:
// bytes 440-509 are the universal disk's partition table.
const mbrCode = universal.BootCodeSize

// The no-emulation entry loads exactly Sector.BootImage, for every length
// of second stage (the message sweeps its last sector through every fill,
// so a stage whose last sector holds only zero variables is covered), and
// the system area holds the stage at its LBA for the hybrid hard disk.
func TestProbesBootImage(t *testing.T) {
	for _, l := range []sector.Layout{sector.Bare, sector.Partitioned} {
		for n := range 520 {
			o := sector.Options{Layout: l, Message: strings.Repeat("m", n),
				Probes: sector.Probes{ID: true, Disks: true, Heartbeat: time.Second, Echo: true}}
			s, err := sector.Build(o)
			if err != nil {
				t.Fatal(err)
			}
			want := s.BootImage()
			file := build(t, probeDisk(t, s, l), Options{Time: stamp})
			count, got := bootImage(t, file)
			if count != len(want)/loadUnit || !bytes.Equal(got[:mbrCode], want[:mbrCode]) || !bytes.Equal(got[bootSectorSize:], want[bootSectorSize:]) {
				t.Fatalf("layout %d, message of %d: the entry loads %d sectors, not BootImage's %d (or other bytes)", l, n, count, len(want)/loadUnit)
			}
			lba := l.Stage2LBA() * bootSectorSize
			if !bytes.Equal(file[lba:lba+int64(len(s.Stage2()))], s.Stage2()) {
				t.Fatalf("layout %d, message of %d: the system area lacks the second stage at LBA %d", l, n, l.Stage2LBA())
			}
			if l == sector.Partitioned && !disk.IsZero(file[bootSectorSize:lba]) {
				t.Fatalf("layout %d: the system area holds the disk's GPT", l)
			}
		}
	}
}

// The boot counter's sector is data in the system area too: a library
// caller that writes a bootcount disk gets it loaded, the CD cannot write
// it (pkg/build refuses bootcount with the iso), and the hybrid hard disk
// has it at LBA 63.
func TestProbesBootCountSector(t *testing.T) {
	s, err := sector.Build(sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}})
	if err != nil {
		t.Fatal(err)
	}
	file := build(t, probeDisk(t, s, sector.Bare), Options{Time: stamp})
	if count, _ := bootImage(t, file); count != sector.BootCountLBA+1 {
		t.Errorf("the entry loads %d sectors, want %d (through the counter)", count, sector.BootCountLBA+1)
	}
	n, ok, err := sector.ReadBootCount(bytes.NewReader(file))
	if err != nil || !ok || n != 0 {
		t.Errorf("ReadBootCount of the hybrid disk: %d, %v, %v; want 0, true", n, ok, err)
	}
}

// xorriso and isoinfo read a probes ISO's catalog: the sector count is
// the boot image's, and BOOT.IMG is its bytes; qemu-img takes the file.
func TestProbesTools(t *testing.T) {
	xorriso := tooltest.Require(t, "xorriso", tooltest.Xorriso)
	isoinfo := tooltest.Require(t, "isoinfo", tooltest.Genisoimage)
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, l := range []sector.Layout{sector.Bare, sector.Partitioned} {
		t.Run(fmt.Sprintf("layout-%d", l), func(t *testing.T) {
			s, err := sector.Build(sector.Options{Layout: l, Probes: sector.Probes{ID: true, Disks: true, Heartbeat: time.Second, Echo: true}})
			if err != nil {
				t.Fatal(err)
			}
			data := build(t, probeDisk(t, s, l), Options{Time: stamp, VolumeLabel: "cidata"})
			file := writeTemp(t, "probes.iso", data)
			sectors := len(s.BootImage()) / loadUnit
			r := runXorriso(t, file)
			if r.SectorCount != sectors || r.ImagePath != "/BOOT.IMG" || r.Emulation != "none" || !r.Bootable {
				t.Errorf("xorriso reports %+v; want %d sectors of /BOOT.IMG, no emulation, bootable", r, sectors)
			}
			dir := t.TempDir()
			out, err := exec.Command(xorriso, "-osirrox", "on", "-indev", file, "-extract", "/BOOT.IMG", filepath.Join(dir, "img"), "-pvd_info").CombinedOutput()
			if err != nil {
				t.Fatalf("xorriso: %v\n%s", err, out)
			}
			img, err := os.ReadFile(filepath.Join(dir, "img"))
			want := s.BootImage()
			if err != nil || len(img) != len(want) || !bytes.Equal(img[:mbrCode], want[:mbrCode]) || !bytes.Equal(img[bootSectorSize:], want[bootSectorSize:]) {
				t.Errorf("BOOT.IMG is %d bytes (%v), not BootImage's %d", len(img), err, len(want))
			}
			if !strings.Contains(string(out), "Volume Id    : cidata") {
				t.Errorf("xorriso -pvd_info lacks the label cidata:\n%s", out)
			}
			out, err = exec.Command(isoinfo, "-d", "-i", file).CombinedOutput()
			if err != nil {
				t.Fatalf("isoinfo -d: %v\n%s", err, out)
			}
			for _, w := range []string{"Volume id: cidata", fmt.Sprintf("Nsect %x", sectors), "Bootid 88 (bootable)"} {
				if !strings.Contains(string(out), w) {
					t.Errorf("isoinfo -d lacks %q:\n%s", w, out)
				}
			}
			out, err = exec.Command(qemuImg, "info", file).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "file format: raw") || !strings.Contains(string(out), fmt.Sprintf("(%d bytes)", len(data))) {
				t.Errorf("qemu-img info: %v\n%s", err, out)
			}
		})
	}
}

// The probe lines the boots look for (docs/probes.md).
var (
	idLine        = regexp.MustCompile(`tinyvm id ([0-9a-f]{8})\r\n`)
	disksLine     = regexp.MustCompile(`tinyvm disks ([0-9]+)\r\n`)
	volumeLine    = regexp.MustCompile(`tinyvm volume ([ -~]*[!-~])\r\n`)
	heartbeatLine = regexp.MustCompile(`tinyvm heartbeat ([0-9]+)\r\n`)
)

// TestProbesBoot boots a probes ISO with SeaBIOS as a CD (IDE on pc, SATA
// on q35) and, hybrid, as an IDE hard disk on pc, and sees the id, the
// disk count, the ISO's own label, heartbeats and the echo; "poweroff"
// on COM1 then ends QEMU with status 0.
func TestProbesBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	for _, l := range []sector.Layout{sector.Bare, sector.Partitioned} {
		marker := fmt.Sprintf("layout %d", l)
		o := sector.Options{Layout: l, Serial: &marker, Probes: sector.Probes{ID: true, Disks: true, Heartbeat: 200 * time.Millisecond, Echo: true}}
		s, err := sector.Build(o)
		if err != nil {
			t.Fatal(err)
		}
		for _, label := range []string{"", "cidata"} {
			file := writeTemp(t, "probes.iso", build(t, probeDisk(t, s, l), Options{Time: stamp, VolumeLabel: label}))
			wantLabel := label
			if label == "" {
				wantLabel = VolumeID
			}
			for _, c := range []struct {
				machine, bus string
				disks        string
			}{
				{"pc", "cdrom", "0"},
				{"q35", "cdrom", "0"},
				{"pc", "ide", "1"}, // hybrid: the ISO is the one hard disk
			} {
				t.Run(fmt.Sprintf("layout-%d/%s/%s/%s", l, wantLabel, c.machine, c.bus), func(t *testing.T) {
					serial := bootProbes(t, qemu.Options{File: file, Driver: "raw", Machine: c.machine, Bus: c.bus})
					if m := idLine.FindStringSubmatch(serial); m == nil || m[1] != o.ID() {
						t.Errorf("id line %q, want %s", m, o.ID())
					}
					if m := disksLine.FindStringSubmatch(serial); m == nil || m[1] != c.disks {
						t.Errorf("disks line %q, want %s", m, c.disks)
					}
					if m := volumeLine.FindAllStringSubmatch(serial, -1); len(m) != 1 || m[0][1] != wantLabel {
						t.Errorf("volume lines %q, want one of %s", m, wantLabel)
					}
					if !strings.Contains(serial, marker) {
						t.Errorf("serial %q lacks the marker %q", serial, marker)
					}
				})
			}
		}
	}
}

// bootProbes boots o, waits for two heartbeats, types hello and sees it
// echoed, then types poweroff and waits for QEMU to exit 0. It returns
// the serial output.
func bootProbes(t *testing.T, o qemu.Options) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	console, typed, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer typed.Close()
	defer console.Close()
	serial := qemu.NewCapture()
	o.Serial, o.Console = serial, console
	p, err := qemu.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	// Under load TCG is slow; the waits are generous and never asserted
	// as a duration.
	const wait = 90 * time.Second
	if !serial.WaitFor("tinyvm heartbeat 2\r\n", wait, p.Done()) {
		t.Fatalf("no second heartbeat: %q", serial.String())
	}
	if _, err := typed.WriteString("hello\r"); err != nil {
		t.Fatal(err)
	}
	// A heartbeat may come due mid-line: it ends the typed part first.
	if !serial.WaitForMatch(probetest.EchoRE("hello"), wait, p.Done()) {
		t.Fatalf("hello is not echoed: %q", serial.String())
	}
	if _, err := typed.WriteString("poweroff\r"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatalf("poweroff on COM1 did not end QEMU: %q", serial.String())
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("QEMU after poweroff: %v (serial %q)", err, serial.String())
	}
	out := serial.String()
	if hb := heartbeatLine.FindAllStringSubmatch(out, -1); len(hb) < 2 || hb[0][1] != "1" || hb[1][1] != "2" {
		t.Errorf("heartbeats %q, want 1, 2, ...", hb)
	}
	return out
}
