package run_test

import (
	"context"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/run"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// files builds every format of the default disk (BIOS program and ESP)
// into a temp directory, with o's program, and returns format -> path.
func files(t *testing.T, so sector.Options, fw ...build.Firmware) map[string]string {
	t.Helper()
	res, err := build.Files(t.TempDir(), build.Options{Sector: so, Firmware: fw})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, f := range res.Files {
		m[f.Format.Type] = f.Path
	}
	if len(m) != len(formats.Types) {
		t.Fatalf("built %d formats, want %d", len(m), len(formats.Types))
	}
	return m
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// TestFile boots each format's file as inspect finds it, on SeaBIOS: the
// iso as a CD-ROM, the ova's disk in place inside the tar.
func TestFile(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	paths := files(t, sector.Options{Then: sector.PowerOff})
	for _, f := range formats.Names() {
		serial := qemu.NewCapture()
		err := run.File(ctx(t), paths[f], run.Options{Qemu: qemu.Options{Machine: "q35", Serial: serial}})
		if err != nil || serial.String() != "Hello World!\r\n" {
			t.Errorf("%s: %v, serial %q", f, err, serial.String())
		}
	}
}

// TestFileUEFI boots files on OVMF and AAVMF, and takes OVMF's
// screenshot on the way.
func TestFileUEFI(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	tooltest.RequireFile(t, qemu.OVMFCode, tooltest.OVMF)
	paths := files(t, sector.Options{Then: sector.PowerOff})
	shot := filepath.Join(t.TempDir(), "ovmf.png")
	for _, c := range []struct {
		format string
		qo     qemu.Options
		shot   string
	}{
		{"raw", qemu.Options{Firmware: "uefi", Machine: "q35", Bus: "virtio"}, shot},
		{"qcow2", qemu.Options{Firmware: "uefi"}, ""},
		{"iso", qemu.Options{Firmware: "uefi", Machine: "q35"}, ""},
	} {
		serial := qemu.NewCapture()
		c.qo.Serial = serial
		err := run.File(ctx(t), paths[c.format], run.Options{Qemu: c.qo, Screenshot: c.shot})
		if err != nil || !strings.Contains(serial.String(), "Hello World!\r\n") {
			t.Errorf("%s on OVMF: %v, serial %q", c.format, err, serial.String())
		}
	}
	img := decode(t, shot)
	if b := img.Bounds(); b.Dx() < 640 || b.Dy() < 480 {
		t.Errorf("OVMF screenshot is %v, want a GOP mode of at least 640x480", b)
	}
	if n := frameLine(img); n < 200 {
		t.Errorf("OVMF screenshot: longest lit horizontal run %d pixels, want the banner's frame (200+)", n)
	}

	tooltest.Require(t, qemu.BinaryARM, tooltest.QemuSystemARM)
	tooltest.RequireFile(t, qemu.AAVMFCode, tooltest.AAVMF)
	serial := qemu.NewCapture()
	armShot := filepath.Join(t.TempDir(), "aavmf.png")
	if err := run.File(ctx(t), paths["qcow2"], run.Options{Qemu: qemu.Options{Arch: "arm64", Serial: serial}, Screenshot: armShot}); err != nil ||
		!strings.Contains(serial.String(), "Hello World!\r\n") {
		t.Errorf("qcow2 on AAVMF: %v, serial %q", err, serial.String())
	}
	// virt has no screen of its own: the shot is of the ramfb run adds.
	if n := frameLine(decode(t, armShot)); n < 200 {
		t.Errorf("AAVMF screenshot: longest lit horizontal run %d pixels, want the banner's frame (200+)", n)
	}
}

// TestScreenshot takes SeaBIOS's VGA text screen: 80x25 cells of 9x16
// pixels, with the banner's frame drawn in box characters, which join
// into one line where letters leave gaps. --then wait: the shot comes at
// the marker, and the stop that follows is the power button's.
func TestScreenshot(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	res, err := build.Files(t.TempDir(), build.Options{Formats: []formats.Format{lookup(t, "raw")}})
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "bios.png")
	c, cancel := context.WithCancel(ctx(t))
	serial := qemu.NewCapture()
	var notes []string
	var mu sync.Mutex
	go func() {
		// The PNG exists once the marker is seen: then stop.
		for range 600 {
			if _, err := os.Stat(shot); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
	}()
	err = run.File(c, res.Files[0].Path, run.Options{Qemu: qemu.Options{Serial: serial}, Screenshot: shot,
		Notify: func(s string) { mu.Lock(); notes = append(notes, s); mu.Unlock() }})
	if err != nil {
		t.Fatalf("run: %v (the power button should end it with success)", err)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "ACPI power button") {
		t.Errorf("no note of the power button: %q", notes)
	}
	img := decode(t, shot)
	if b := img.Bounds(); b.Dx() != 720 || b.Dy() != 400 {
		t.Errorf("screenshot is %v, want 720x400 (VGA text mode)", b)
	}
	if n := frameLine(img); n < 250 {
		t.Errorf("longest lit horizontal run %d pixels, want the banner's frame (30 cells, 270)", n)
	}
}

// TestStop: a guest that ignores the power button (--then halt) is
// killed after the grace, or at once by Kill, and the run reports that
// it was stopped.
func TestStop(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	raw := files(t, sector.Options{Then: sector.Halt}, build.BIOS)["raw"]
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	err := run.File(c, raw, run.Options{Grace: time.Second})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("halt after the grace: %v, want context.Canceled", err)
	}
	kill := make(chan struct{})
	close(kill)
	err = run.File(ctx(t), raw, run.Options{Kill: kill})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("killed: %v, want context.Canceled", err)
	}
}

func TestPrepareRefuses(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "hostname")
	if err := os.WriteFile(text, []byte("box\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run.Prepare(text, qemu.Options{}); !errors.Is(err, info.ErrNotDisk) || strings.Contains(err.Error(), "\n") {
		t.Errorf("a text file: %v, want one line wrapping info.ErrNotDisk", err)
	}
	bios := files(t, sector.Options{}, build.BIOS)
	for _, f := range []string{"raw", "iso"} {
		if _, err := run.Prepare(bios[f], qemu.Options{Firmware: "uefi"}); !errors.Is(err, run.ErrFirmware) {
			t.Errorf("a BIOS-only %s on UEFI: %v, want ErrFirmware", f, err)
		}
	}
	if _, err := run.Prepare(bios["qcow2"], qemu.Options{Bus: "cdrom"}); !errors.Is(err, run.ErrBus) {
		t.Errorf("qcow2 on a CD-ROM: %v, want ErrBus", err)
	}
	if qo, err := run.Prepare(bios["ova"], qemu.Options{}); err != nil || qo.Length == 0 || qo.Driver != "vmdk" || qo.Bus != "ide" {
		t.Errorf("ova: %+v, %v: want the vmdk inside, on ide", qo, err)
	}
	both := files(t, sector.Options{})
	if qo, err := run.Prepare(both["raw"], qemu.Options{Firmware: "uefi"}); err != nil || qo.Driver != "raw" {
		t.Errorf("universal raw on UEFI: %+v, %v", qo, err)
	}
	if _, err := run.Prepare(both["iso"], qemu.Options{Arch: "arm64"}); !errors.Is(err, run.ErrBus) {
		t.Errorf("iso on arm64: %v, want ErrBus", err)
	}
	if err := run.CheckBuild(build.Options{Firmware: []build.Firmware{build.UEFI}}, qemu.Options{}); !errors.Is(err, run.ErrFirmware) {
		t.Errorf("UEFI-only build on SeaBIOS: %v, want ErrFirmware", err)
	}
}

// TestPrepareESP: a disk built for BIOS only is refused on UEFI in every
// format, the GPT read through qemu-img for those only QEMU reads; the
// universal disk is accepted in every format.
func TestPrepareESP(t *testing.T) {
	tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	bios, both := files(t, sector.Options{}, build.BIOS), files(t, sector.Options{})
	for _, f := range formats.Names() {
		_, err := run.Prepare(bios[f], qemu.Options{Firmware: "uefi"})
		if !errors.Is(err, run.ErrFirmware) || strings.Contains(err.Error(), "\n") {
			t.Errorf("BIOS-only %s on UEFI: %v, want one line wrapping ErrFirmware", f, err)
		}
		if _, err := run.Prepare(both[f], qemu.Options{Firmware: "uefi"}); err != nil {
			t.Errorf("universal %s on UEFI: %v", f, err)
		}
	}
}

func lookup(t *testing.T, name string) formats.Format {
	f, err := formats.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func decode(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// frameLine is the longest run of lit pixels in one row: box-drawing
// characters fill their whole cell, letters leave a gap between cells.
func frameLine(img image.Image) int {
	b := img.Bounds()
	best := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		n := 0
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r+g+bl > 3*0x4000 {
				n++
				best = max(best, n)
			} else {
				n = 0
			}
		}
	}
	return best
}
