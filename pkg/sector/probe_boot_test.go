package sector_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/idletest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/probetest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/qcow2"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// probeDisk builds the universal disk with the program's second stage
// and boot counter in the gap before the ESP, as the build does; the ESP
// holds only a note, these tests boot SeaBIOS.
func probeDisk(t *testing.T, o sector.Options) disk.Disk {
	t.Helper()
	return probetest.UniversalDisk(t, o, fat.File{Path: "EFI/BOOT/README.TXT", Data: []byte("BIOS boots the MBR\r\n")})
}

// probeFile writes probeDisk as a raw file.
func probeFile(t *testing.T, o sector.Options) string {
	t.Helper()
	return writeRaw(t, probeDisk(t, o))
}

// vmOptions are the parts of a probe boot's command line.
type vmOptions struct {
	machine  string   // pc (default) or q35, with any machine options
	drives   []string // -drive and -device pairs, already written
	incoming string   // -incoming URI
	socket   bool     // serial on a unix socket instead of stdio
}

// startVM starts SeaBIOS on o.machine; Cleanup kills it.
func startVM(t *testing.T, o vmOptions) *probetest.VM {
	t.Helper()
	machine := o.machine
	if machine == "" {
		machine = "pc"
	}
	return probetest.Start(t, probetest.Options{
		Binary:   tooltest.Require(t, qemu.Binary, tooltest.QemuSystem),
		Args:     []string{"-machine", machine, "-m", "64"},
		Drives:   o.drives,
		Incoming: o.incoming,
		Socket:   o.socket,
		Timeout:  3 * bootTimeout,
	})
}

// bootDrive attaches path as the boot disk on virtio.
func bootDrive(path, format string) []string {
	return probetest.Drive("virtio-blk-pci", "d0", path, format, 0, "")
}

// extraDisk attaches path as another virtio disk, without a boot index.
func extraDisk(i int, path, format string) []string {
	return probetest.Drive("virtio-blk-pci", fmt.Sprintf("x%d", i), path, format, -1, "")
}

// heartbeatProbe is a heartbeat every half second, alone.
var heartbeatProbe = sector.Options{Probes: sector.Probes{Heartbeat: 500 * time.Millisecond}}

// TestHeartbeatStopCont pauses the guest over QMP (probetest.StopCont).
func TestHeartbeatStopCont(t *testing.T) {
	probetest.StopCont(t, startVM(t, vmOptions{drives: bootDrive(probeFile(t, heartbeatProbe), "raw")}), marker)
}

// TestHeartbeatMigration live-migrates the guest between two QEMUs on
// loopback (probetest.Migration).
func TestHeartbeatMigration(t *testing.T) {
	path := probeFile(t, heartbeatProbe)
	probetest.Migration(t, func(incoming string) *probetest.VM {
		return startVM(t, vmOptions{drives: bootDrive(path, "raw"), incoming: incoming})
	}, marker)
}

// bootOnce boots path until it powers off and returns its boot count.
func bootOnce(t *testing.T, path, format string) int {
	t.Helper()
	v := startVM(t, vmOptions{machine: "q35", drives: bootDrive(path, format)})
	m := v.WaitFor(probetest.BootRE, "bootcount")
	v.Exits("--then poweroff")
	return probetest.Atoi(t, m[1])
}

// TestBootCount boots the same disk repeatedly: the guest's own int 13h
// writes count 1, 2, ...; qemu-img snapshots and overlays give back the
// count they were taken at, and the raw file's counter reads offline.
func TestBootCount(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}}
	d := probeDisk(t, o)
	t.Run("raw", func(t *testing.T) {
		path := writeRaw(t, d)
		if n := probetest.OfflineCount(t, path, "raw"); n != 0 {
			t.Fatalf("a fresh disk counts %d, want 0", n)
		}
		for want := 1; want <= 3; want++ {
			if got := bootOnce(t, path, "raw"); got != want {
				t.Fatalf("boot %d printed tinyvm boot %d", want, got)
			}
		}
		if n := probetest.OfflineCount(t, path, "raw"); n != 3 {
			t.Errorf("after three boots the file counts %d, want 3", n)
		}
	})
	t.Run("ephemeral", func(t *testing.T) {
		// A containerDisk's writes go to a throw-away overlay, as QEMU's
		// snapshot=on does: every boot counts 1.
		path := probetest.WriteQcow2(t, d, qcow2.Options{Compress: false})
		for range 2 {
			v := startVM(t, vmOptions{drives: probetest.Drive("virtio-blk-pci", "d0", path, "qcow2", 0, ",snapshot=on")})
			m := v.WaitFor(probetest.BootRE, "bootcount")
			v.Exits("--then poweroff")
			if m[1] != "1" {
				t.Errorf("an ephemeral boot counts %s, want 1", m[1])
			}
		}
	})
	for name, compress := range map[string]bool{"qcow2": false, "qcow2-compressed": true} {
		t.Run(name, func(t *testing.T) {
			path := probetest.WriteQcow2(t, d, qcow2.Options{Compress: compress})
			if got := bootOnce(t, path, "qcow2"); got != 1 {
				t.Fatalf("first boot: %d, want 1", got)
			}
			probetest.Img(t, "snapshot", "-c", "after1", path)
			if got := bootOnce(t, path, "qcow2"); got != 2 {
				t.Fatalf("second boot: %d, want 2", got)
			}
			// A clone made now (an overlay on the disk as it is) goes
			// on from 2; the base does not see the clone's boots.
			clone := filepath.Join(t.TempDir(), "clone.qcow2")
			probetest.Img(t, "create", "-f", "qcow2", "-F", "qcow2", "-b", path, clone)
			if got := bootOnce(t, clone, "qcow2"); got != 3 {
				t.Errorf("clone's first boot: %d, want 3", got)
			}
			if got := bootOnce(t, clone, "qcow2"); got != 4 {
				t.Errorf("clone's second boot: %d, want 4", got)
			}
			probetest.Img(t, "snapshot", "-a", "after1", path)
			if got := bootOnce(t, path, "qcow2"); got != 2 {
				t.Errorf("after reverting to the snapshot taken after boot 1: %d, want 2", got)
			}
		})
	}
}

// TestDisks attaches 0, 1 and 2 more virtio disks to the boot disk and
// sees the BIOS's count, then a cidata ISO as a CD and as a disk and
// sees its label.
func TestDisks(t *testing.T) {
	path := probeFile(t, sector.Options{Then: sector.PowerOff, Probes: sector.Probes{Disks: true}})
	for extra := 0; extra <= 2; extra++ {
		t.Run(fmt.Sprintf("%d-disks", extra+1), func(t *testing.T) {
			drives := bootDrive(path, "raw")
			for i := range extra {
				drives = append(drives, extraDisk(i, probetest.BlankDisk(t), "raw")...)
			}
			v := startVM(t, vmOptions{machine: "q35", drives: drives})
			m := v.WaitFor(probetest.DisksRE, "disks")
			v.Exits("--then poweroff")
			if got := probetest.Atoi(t, m[1]); got != extra+1 {
				t.Errorf("tinyvm disks %d, want %d", got, extra+1)
			}
			if probetest.VolumeRE.MatchString(v.Serial.String()) {
				t.Errorf("a volume line without any ISO: %q", v.Serial.String())
			}
		})
	}
	iso, drive := probetest.LabelledISO(t, "cidata"), probetest.LabelledISO(t, "config-2")
	for _, c := range []struct {
		name, machine string
		drives        []string
		disks         int
		label         string
	}{
		{"cidata-cd-pc", "pc", probetest.CD("ide-cd,bus=ide.1", "cd", iso, -1), 1, "cidata"},
		{"cidata-cd-q35", "q35", probetest.CD("ide-cd,bus=ide.2", "cd", iso, -1), 1, "cidata"},
		{"cidata-disk", "q35", extraDisk(0, iso, "raw"), 2, "cidata"},       // KubeVirt's cloudInitNoCloud
		{"config-2-disk", "q35", extraDisk(0, drive, "raw"), 2, "config-2"}, // an OpenStack config drive
	} {
		t.Run(c.name, func(t *testing.T) {
			v := startVM(t, vmOptions{machine: c.machine, drives: append(bootDrive(path, "raw"), c.drives...)})
			m := v.WaitFor(probetest.DisksRE, "disks")
			v.Exits("--then poweroff")
			if got := probetest.Atoi(t, m[1]); got != c.disks {
				t.Errorf("tinyvm disks %d, want %d", got, c.disks)
			}
			vols := probetest.VolumeRE.FindAllStringSubmatch(v.Serial.String(), -1)
			if len(vols) != 1 || vols[0][1] != c.label {
				t.Errorf("volume lines %q, want one for %s; serial %q", vols, c.label, v.Serial.String())
			}
		})
	}
}

// TestEcho talks to the guest over a serial socket: what is sent comes
// back, and the line "poweroff" powers it off.
func TestEcho(t *testing.T) {
	v := startVM(t, vmOptions{socket: true, drives: bootDrive(probeFile(t, sector.Options{Probes: sector.Probes{Echo: true}}), "raw")})
	v.WaitFor(regexp.MustCompile(regexp.QuoteMeta(marker)), "marker")
	if _, err := v.Conn.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	v.WaitFor(regexp.MustCompile(regexp.QuoteMeta(marker)+`hello\r\n`), "echo")
	// Not a power-off: a longer word, and the word inside a line.
	for _, line := range []string{"poweroffx\r", "xpoweroff\r", "power\r"} {
		if _, err := v.Conn.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	v.WaitFor(regexp.MustCompile(`power\r\n`), "echo of the non-matching lines")
	v.Alive(time.Second, "lines that are not exactly poweroff")
	if _, err := v.Conn.Write([]byte("poweroff\r")); err != nil {
		t.Fatal(err)
	}
	v.Exits("the line poweroff")
	if !strings.Contains(v.Serial.String(), "poweroff\r\n") {
		t.Errorf("poweroff was not echoed: %q", v.Serial.String())
	}
}

// TestIDBootOrder boots two disks, in both boot orders: the id printed is the
// one of the disk with bootindex 0.
func TestIDBootOrder(t *testing.T) {
	a := sector.Options{Then: sector.PowerOff, Serial: new("disk A"), Probes: sector.Probes{ID: true}}
	b := sector.Options{Then: sector.PowerOff, Serial: new("disk B"), Probes: sector.Probes{ID: true}}
	if a.ID() == b.ID() {
		t.Fatalf("two option sets share id %s", a.ID())
	}
	pa, pb := probeFile(t, a), probeFile(t, b)
	for _, c := range []struct {
		first, second string
		want          string
	}{{pa, pb, a.ID()}, {pb, pa, b.ID()}} {
		drives := append(probetest.Drive("virtio-blk-pci", "d1", c.second, "raw", 1, ""), bootDrive(c.first, "raw")...)
		v := startVM(t, vmOptions{machine: "q35", drives: drives})
		m := v.WaitFor(probetest.IDRE, "id")
		v.Exits("--then poweroff")
		if m[1] != c.want {
			t.Errorf("booted id %s, want %s (the disk with bootindex 0)", m[1], c.want)
		}
	}
}

// allProbes turns on every probe.
var allProbes = sector.Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}

// TestProbesKeepBehaviour boots with every probe on: the power button, a
// key press and the timeout still power off, and waiting stays idle.
func TestProbesKeepBehaviour(t *testing.T) {
	for _, machine := range []string{"pc", "q35"} {
		t.Run("powerbutton-"+machine, func(t *testing.T) {
			v := startVM(t, vmOptions{machine: machine, drives: bootDrive(probeFile(t, sector.Options{Probes: allProbes}), "raw")})
			v.WaitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
			v.Exec("system_powerdown")
			v.Exits("system_powerdown")
		})
	}
	t.Run("key", func(t *testing.T) {
		v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, sector.Options{Probes: allProbes}), "raw")})
		v.WaitFor(probetest.BootRE, "boot line")
		v.Alive(500*time.Millisecond, "waiting")
		v.SendKey("a")
		v.Exits("key press")
	})
	t.Run("timeout", func(t *testing.T) {
		v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, sector.Options{Timeout: 3 * time.Second, Probes: allProbes}), "raw")})
		v.WaitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
		v.Exits("--timeout 3s")
		if n := len(probetest.HeartbeatRE.FindAllString(v.Serial.String(), -1)); n < 2 || n > 4 {
			t.Errorf("%d heartbeats in a 3s timeout, want about 3: %q", n, v.Serial.String())
		}
		// Every probe line the guest printed has the golden's format:
		// id, boot, disks and at least two heartbeats.
		if n := sector.CheckLines(t, v.Serial.String()); n < 5 {
			t.Errorf("%d probe lines, want at least 5: %q", n, v.Serial.String())
		}
	})
	t.Run("idle", func(t *testing.T) {
		v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, sector.Options{Probes: allProbes}), "raw")})
		v.WaitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
		idletest.Check(t, v.Pid(), 4*time.Second, "idle guest with every probe on")
	})
	for _, then := range []sector.Then{sector.Halt, sector.Reboot} {
		t.Run(string(then), func(t *testing.T) {
			p := allProbes
			p.Heartbeat, p.Echo = 0, false
			v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, sector.Options{Then: then, Probes: p}), "raw")})
			v.WaitFor(probetest.DisksRE, "disks line")
			if then == sector.Reboot {
				v.Exits("--then reboot under -no-reboot")
				return
			}
			v.Exec("system_powerdown")
			v.Alive(2*time.Second, "--then halt ignores the power button")
		})
	}
}

// TestProbesWithoutMarker: --serial "" drops the marker, not the
// probes' lines.
func TestProbesWithoutMarker(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Serial: new(""), Probes: sector.Probes{ID: true, BootCount: true}}
	v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, o), "raw")})
	v.WaitFor(probetest.BootRE, "boot line")
	v.Exits("--then poweroff")
	if out := v.Serial.String(); strings.Contains(out, marker) || !strings.Contains(out, "tinyvm id "+o.ID()+"\r\n") {
		t.Errorf("serial %q: want the id line and no marker", out)
	}
}

// TestProbesBareDisk boots the two-stage program from a disk without a
// partition table: the second stage at LBA 1, the counter at LBA 63.
func TestProbesBareDisk(t *testing.T) {
	s, err := sector.Build(sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true, ID: true, Disks: true}})
	if err != nil {
		t.Fatal(err)
	}
	chunks := []disk.Chunk{{Off: 0, Data: s.Bytes()}}
	for _, r := range s.Reserved() {
		chunks = append(chunks, disk.Chunk{Off: r.LBA * disk.SectorSize, Data: r.Data})
	}
	d, err := disk.NewSparse(1<<20, chunks...)
	if err != nil {
		t.Fatal(err)
	}
	path := writeRaw(t, d)
	for _, c := range []struct{ machine, bus string }{{"pc", "ide"}, {"q35", "virtio"}} {
		t.Run(c.machine+"-"+c.bus, func(t *testing.T) {
			p, serial := start(t, path, c.machine, c.bus)
			exits(t, p, bootTimeout, "--then poweroff")
			for _, re := range []*regexp.Regexp{probetest.IDRE, probetest.BootRE, probetest.DisksRE} {
				if !re.MatchString(serial.String()) {
					t.Errorf("no %v: %q", re, serial.String())
				}
			}
		})
	}
	if n := probetest.OfflineCount(t, path, "raw"); n != 2 {
		t.Errorf("after two boots the counter is %d, want 2", n)
	}
}

// TestProbeFailures boots disks whose second stage or counter cannot be
// used: each prints its error line instead.
func TestProbeFailures(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}}
	t.Run("stage2", func(t *testing.T) {
		path := probeFile(t, o)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Another build's stage: the signature's id half differs.
		if _, err := f.WriteAt([]byte{'T', 'V', 0, 0}, 34*disk.SectorSize); err != nil {
			t.Fatal(err)
		}
		f.Close()
		v := startVM(t, vmOptions{drives: bootDrive(path, "raw")})
		v.WaitFor(regexp.MustCompile(`tinyvm error stage2\r\n`), "bad stage 2")
		if strings.Contains(v.Serial.String(), marker) {
			t.Errorf("ran a foreign second stage: %q", v.Serial.String())
		}
		v.Alive(time.Second, "after the stage 2 error")
	})
	t.Run("stage2-missing", func(t *testing.T) {
		// The loader alone on a 512-byte disk (which SeaBIOS boots from
		// pc's IDE): there is no stage after it to read.
		s, err := sector.Build(o)
		if err != nil {
			t.Fatal(err)
		}
		d, err := disk.New(s.Bytes(), 512)
		if err != nil {
			t.Fatal(err)
		}
		v := startVM(t, vmOptions{drives: probetest.Drive("ide-hd,bus=ide.0", "d0", writeRaw(t, d), "raw", 0, "")})
		v.WaitFor(regexp.MustCompile(`tinyvm error stage2\r\n`), "no stage 2 on the disk")
		v.Alive(time.Second, "after the stage 2 error")
	})
	t.Run("counter", func(t *testing.T) {
		path := probeFile(t, o)
		probetest.WipeCounter(t, path)
		v := startVM(t, vmOptions{drives: bootDrive(path, "raw")})
		v.WaitFor(regexp.MustCompile(`tinyvm error bootcount\r\n`), "no counter sector")
		v.Exits("--then poweroff")
	})
	t.Run("read-only", func(t *testing.T) {
		path := probeFile(t, o)
		v := startVM(t, vmOptions{drives: probetest.Drive("virtio-blk-pci", "d0", path, "raw", 0, ",readonly=on")})
		v.WaitFor(regexp.MustCompile(`tinyvm error bootcount\r\n`), "read-only disk")
		v.Exits("--then poweroff")
	})
}

// TestSerialConsole boots with SeaBIOS's serial console on (QEMU's
// -machine graphics=off, which KubeVirt's bios.useSerial turns on): COM1
// input arrives as key presses, yet is echoed rather than powering off,
// and every probe line starts a line of its own after the copied screen.
func TestSerialConsole(t *testing.T) {
	drives := append(bootDrive(probeFile(t, sector.Options{Probes: allProbes}), "raw"), "-cdrom", probetest.LabelledISO(t, "cidata"))
	v := startVM(t, vmOptions{socket: true, machine: "pc,graphics=off", drives: drives})
	v.WaitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
	if _, err := v.Conn.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	v.WaitFor(regexp.MustCompile(`\r\n`+probetest.EchoRE("hello").String()), "echo through the serial console")
	v.Alive(time.Second, "input through the serial console")
	if _, err := v.Conn.Write([]byte("poweroff\r")); err != nil {
		t.Fatal(err)
	}
	v.Exits("the line poweroff")
	out := v.Serial.String()
	if n := sector.CheckLines(t, out); n < 5 {
		t.Errorf("%d probe lines, want at least 5", n)
	}
	if strings.Count(out, "tinyvm ") != strings.Count(out, "\r\ntinyvm ") {
		t.Errorf("a probe line does not start a line: %q", out)
	}
	if !strings.Contains(out, "\r\ntinyvm volume cidata\r\n") {
		t.Errorf("no cidata line: %q", out)
	}
}

// TestProbesFromCD boots the program from an El Torito no-emulation CD
// made by xorriso from BootImage: the loader finds the second stage among
// the sectors the firmware loaded, in both layouts.
func TestProbesFromCD(t *testing.T) {
	tooltest.Require(t, "xorriso", tooltest.Xorriso)
	for _, l := range []sector.Layout{sector.Bare, sector.Partitioned} {
		t.Run(fmt.Sprintf("layout-%d", l), func(t *testing.T) {
			o := sector.Options{Layout: l, Then: sector.PowerOff, Probes: sector.Probes{ID: true, Disks: true}}
			s, err := sector.Build(o)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			root := filepath.Join(dir, "root")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			img := s.BootImage()
			if err := os.WriteFile(filepath.Join(root, "boot.img"), img, 0o644); err != nil {
				t.Fatal(err)
			}
			iso := filepath.Join(dir, "probes.iso")
			out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-V", "TINYVM_CD", "-b", "boot.img", "-no-emul-boot",
				"-boot-load-size", strconv.Itoa(len(img)/disk.SectorSize), "-o", iso, root).CombinedOutput()
			if err != nil {
				t.Fatalf("xorriso: %v: %s", err, out)
			}
			for _, machine := range []string{"pc", "q35"} {
				bus := "ide.1"
				if machine == "q35" {
					bus = "ide.2"
				}
				v := startVM(t, vmOptions{machine: machine, drives: probetest.CD("ide-cd,bus="+bus, "cd", iso, 0)})
				m := v.WaitFor(probetest.IDRE, machine+" CD boot")
				v.Exits("--then poweroff")
				if m[1] != o.ID() {
					t.Errorf("%s: id %s, want %s", machine, m[1], o.ID())
				}
				if !strings.Contains(v.Serial.String(), "tinyvm volume TINYVM_CD\r\n") {
					t.Errorf("%s: the CD's own label is missing: %q", machine, v.Serial.String())
				}
			}
		})
	}
}
