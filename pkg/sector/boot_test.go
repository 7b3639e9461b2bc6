package sector_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/idletest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// Generous limits: a loaded 2-core machine without KVM boots slowly.
const (
	bootTimeout = 90 * time.Second
	marker      = "Hello World!\r\n"
)

// rawFile writes the sector as a raw disk of the given size.
func rawFile(t *testing.T, o sector.Options, size int64) string {
	t.Helper()
	s, err := sector.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	d, err := disk.New(s.Bytes(), size)
	if err != nil {
		t.Fatal(err)
	}
	return writeRaw(t, d)
}

// gptFile writes the program in the 440-byte layout as the boot code of
// the universal disk's protective MBR, with an ESP beside it.
func gptFile(t *testing.T, o sector.Options, size int64) string {
	t.Helper()
	o.Layout = sector.Partitioned
	s, err := sector.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	files := []fat.File{{Path: "EFI/BOOT/README.TXT", Data: []byte("BIOS boots the MBR\r\n")}}
	d, err := universal.New(s.Code(), files, size)
	if err != nil {
		t.Fatal(err)
	}
	return writeRaw(t, d)
}

// layouts are the two disks every behaviour is booted from: the bare
// 512-byte sector padded to the size, and the GPT disk.
var layouts = []struct {
	name string
	file func(*testing.T, sector.Options, int64) string
}{{"mbr", rawFile}, {"gpt", gptFile}}

// writeRaw writes d as a raw disk file.
func writeRaw(t *testing.T, d disk.Disk) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := raw.Write(f, d); err != nil {
		t.Fatal(err)
	}
	return path
}

// start boots path and waits for the serial marker.
func start(t *testing.T, path, machine, bus string) (*qemu.Process, *qemu.Capture) {
	t.Helper()
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	ctx, cancel := context.WithTimeout(context.Background(), 3*bootTimeout)
	t.Cleanup(cancel)
	serial := qemu.NewCapture()
	p, err := qemu.Start(ctx, qemu.Options{File: path, Machine: machine, Bus: bus, Serial: serial, NoReboot: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-p.Done():
		default:
			p.Kill()
		}
	})
	if !serial.WaitFor(marker, bootTimeout, p.Done()) {
		t.Fatalf("%s+%s: no %q on serial within %v; got %q", machine, bus, marker, bootTimeout, serial.String())
	}
	return p, serial
}

// exits waits for the emulator to end by itself.
func exits(t *testing.T, p *qemu.Process, within time.Duration, why string) {
	t.Helper()
	select {
	case <-p.Done():
		if err := p.Wait(); err != nil {
			t.Fatalf("%s: qemu failed: %v", why, err)
		}
	case <-time.After(within):
		t.Fatalf("%s: the guest did not power off within %v", why, within)
	}
}

// stillRunning fails unless the emulator is alive after d.
func stillRunning(t *testing.T, p *qemu.Process, d time.Duration, why string) {
	t.Helper()
	select {
	case <-p.Done():
		t.Fatalf("%s: the guest stopped, want it running", why)
	case <-time.After(d):
	}
}

func TestBootPowerOff(t *testing.T) {
	for _, l := range layouts {
		path := l.file(t, sector.Options{Then: sector.PowerOff}, 1<<20)
		for _, c := range []struct{ machine, bus string }{
			{"pc", "ide"}, {"pc", "virtio"}, {"q35", "sata"}, {"q35", "virtio"}, {"pc", "scsi"},
		} {
			t.Run(l.name+"/"+c.machine+"-"+c.bus, func(t *testing.T) {
				p, serial := start(t, path, c.machine, c.bus)
				exits(t, p, bootTimeout, "--then poweroff")
				if n := strings.Count(serial.String(), marker); n != 1 {
					t.Errorf("marker printed %d times, want once: %q", n, serial.String())
				}
			})
		}
	}
}

// TestBootSmallestGPT boots the smallest universal disk, 504 KiB, where
// SeaBIOS still reads virtio-blk and AHCI.
func TestBootSmallestGPT(t *testing.T) {
	path := gptFile(t, sector.Options{Then: sector.PowerOff}, universal.MinSize)
	for _, c := range []struct{ machine, bus string }{{"pc", "ide"}, {"q35", "virtio"}, {"q35", "sata"}} {
		t.Run(c.machine+"-"+c.bus, func(t *testing.T) {
			p, _ := start(t, path, c.machine, c.bus)
			exits(t, p, bootTimeout, "504 KiB GPT disk")
		})
	}
}

// TestBootBareSector boots the 512-byte disk, which SeaBIOS boots from IDE
// on pc only.
func TestBootBareSector(t *testing.T) {
	p, _ := start(t, rawFile(t, sector.Options{Then: sector.PowerOff}, 512), "pc", "ide")
	exits(t, p, bootTimeout, "512-byte disk")
}

func TestWaitPowerButton(t *testing.T) {
	for _, l := range layouts {
		for _, machine := range []string{"pc", "q35"} {
			t.Run(l.name+"/"+machine, func(t *testing.T) {
				p, _ := start(t, l.file(t, sector.Options{}, 1<<20), machine, "virtio")
				stillRunning(t, p, 500*time.Millisecond, "--then wait before any event")
				if err := p.Powerdown(); err != nil {
					t.Fatal(err)
				}
				exits(t, p, bootTimeout, "system_powerdown")
			})
		}
	}
}

func TestWaitKeyPress(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			p, _ := start(t, l.file(t, sector.Options{}, 1<<20), "pc", "ide")
			stillRunning(t, p, 500*time.Millisecond, "--then wait before any event")
			if err := p.SendKey("a"); err != nil {
				t.Fatal(err)
			}
			exits(t, p, bootTimeout, "key press")
		})
	}
}

func TestWaitTimeout(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			p, _ := start(t, l.file(t, sector.Options{Timeout: 3 * time.Second}, 1<<20), "q35", "virtio")
			stillRunning(t, p, 500*time.Millisecond, "3s timeout, shortly after boot")
			exits(t, p, bootTimeout, "--timeout 3s")
		})
	}
}

func TestTimeoutOneSecond(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			p, _ := start(t, l.file(t, sector.Options{Timeout: time.Second}, 1<<20), "pc", "ide")
			exits(t, p, bootTimeout, "--timeout 1s")
		})
	}
}

func TestHaltIgnoresPowerButton(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			p, _ := start(t, l.file(t, sector.Options{Then: sector.Halt}, 1<<20), "pc", "ide")
			if err := p.Powerdown(); err != nil {
				t.Fatal(err)
			}
			stillRunning(t, p, 3*time.Second, "--then halt after system_powerdown")
		})
	}
}

func TestReboot(t *testing.T) {
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			// -no-reboot turns the guest's reset into an exit.
			p, _ := start(t, l.file(t, sector.Options{Then: sector.Reboot}, 1<<20), "pc", "ide")
			exits(t, p, bootTimeout, "--then reboot")
		})
	}
}

// TestIdleCPU reads the emulator's CPU time from /proc while the guest
// waits: sti; hlt must leave the host idle.
func TestIdleCPU(t *testing.T) {
	p, _ := start(t, rawFile(t, sector.Options{}, 1<<20), "pc", "ide")
	time.Sleep(time.Second) // let boot work finish
	idletest.Check(t, p.Pid(), 4*time.Second, "idle guest")
}
