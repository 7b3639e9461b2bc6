package efi_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/efi"
)

// The probe tests boot universal disks on each UEFI firmware under TCG;
// every boot costs seconds (an AAVMF one about 7), so each test boots
// few times and a check that fits an existing boot joins it.

// probeFirmware is one UEFI firmware the probe tests boot on: the
// application it starts, its emulator, machine and firmware files, and
// the buses of its disks, CDs and keyboard.
type probeFirmware struct {
	name       string
	arch       efi.Arch
	binary     string   // the emulator
	args       []string // machine, CPU and memory
	code, vars string   // the firmware's code and its variables template
	diskDevice string   // the -device of a disk, taking drive=ID
	// cdBus is the -device of the controller of the n-th CD (a %d), ""
	// if the machine has one; cdDevice is the CD's own (a %d too).
	cdBus, cdDevice string
	keyboard        []string // the devices of a keyboard, none if built in
	// poweroffEnd ends the line poweroff in TestProbeEcho: CR on one
	// firmware, LF on the other, so both endings power off at one boot
	// each.
	poweroffEnd string
}

// ovmf is OVMF on q35 with virtio disks, SATA CDs and the PS/2 keyboard.
var ovmf = probeFirmware{
	name:        "ovmf",
	arch:        efi.AMD64,
	binary:      qemu.Binary,
	args:        []string{"-machine", "q35", "-m", "128"},
	code:        qemu.OVMFCode,
	vars:        qemu.OVMFVars,
	diskDevice:  "virtio-blk-pci",
	cdDevice:    "ide-cd,bus=ide.%d",
	poweroffEnd: "\n",
}

// aavmf is AAVMF on virt with virtio disks, CDs on virtio-scsi (virt has
// no IDE) and a USB keyboard.
var aavmf = probeFirmware{
	name:        "aavmf",
	arch:        efi.ARM64,
	binary:      qemu.BinaryARM,
	args:        []string{"-machine", "virt", "-cpu", "cortex-a57", "-m", "128"},
	code:        qemu.AAVMFCode,
	vars:        qemu.AAVMFVars,
	diskDevice:  "virtio-blk-pci",
	cdBus:       "virtio-scsi-pci,id=scsi%d",
	cdDevice:    "scsi-cd,bus=scsi%d.0",
	keyboard:    []string{"-device", "qemu-xhci,id=usb", "-device", "usb-kbd,bus=usb.0"},
	poweroffEnd: "\r",
}

// probeFirmwares are the firmwares every table-driven probe test runs on.
var probeFirmwares = []probeFirmware{ovmf, aavmf}

// requireFirmware skips (fails under TINYVM_REQUIRE_TOOLS=1) without the
// emulator and firmware files.
func requireFirmware(t *testing.T, fw probeFirmware) {
	t.Helper()
	if fw.arch == efi.ARM64 {
		tooltest.Require(t, fw.binary, tooltest.QemuSystemARM)
		tooltest.RequireFile(t, fw.code, tooltest.AAVMF)
		tooltest.RequireFile(t, fw.vars, tooltest.AAVMF)
		return
	}
	tooltest.Require(t, fw.binary, tooltest.QemuSystem)
	tooltest.RequireFile(t, fw.code, tooltest.OVMF)
	tooltest.RequireFile(t, fw.vars, tooltest.OVMF)
}

// forEachFirmware runs f as a subtest on each probe firmware.
func forEachFirmware(t *testing.T, f func(t *testing.T, fw probeFirmware)) {
	for _, fw := range probeFirmwares {
		t.Run(fw.name, func(t *testing.T) { f(t, fw) })
	}
}

// probeDisk builds the universal disk as the build composes it: the BIOS
// program with its second stage and counter in the gap before the ESP,
// and both EFI applications on the ESP.
func probeDisk(t *testing.T, o sector.Options) disk.Disk {
	t.Helper()
	var files []fat.File
	for _, arch := range efi.Arches {
		app, err := efi.Build(o, arch)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fat.File{Path: arch.BootPath(), Data: app})
	}
	return probetest.UniversalDisk(t, o, files...)
}

// probeFile writes probeDisk as a raw file.
func probeFile(t *testing.T, o sector.Options) string {
	t.Helper()
	return probetest.WriteRaw(t, probeDisk(t, o))
}

// vmOptions are the parts of a probe boot's command line.
type vmOptions struct {
	fw       probeFirmware
	drives   []string // -drive and -device pairs, already written
	incoming string   // -incoming URI
	socket   bool     // serial on a unix socket instead of stdio
	bios     bool     // SeaBIOS on q35 instead of fw
	reboot   bool     // let a guest reset restart it (no -no-reboot)
}

// drive attaches path to fw's disk bus; bootindex < 0 gives none.
func (fw probeFirmware) drive(id, path, format string, bootindex int) []string {
	return probetest.Drive(fw.diskDevice, id, path, format, bootindex, "")
}

// boot attaches the raw file path as the disk with bootindex 0.
func (fw probeFirmware) boot(path string) []string { return fw.drive("d0", path, "raw", 0) }

// cd attaches an ISO as the n-th CD.
func (fw probeFirmware) cd(n int, path string) []string {
	var ctl []string
	if fw.cdBus != "" {
		ctl = []string{"-device", fmt.Sprintf(fw.cdBus, n)}
	}
	return append(ctl, probetest.CD(fmt.Sprintf(fw.cdDevice, n), fmt.Sprintf("cd%d", n), path, -1)...)
}

// startVM starts QEMU on fw (or SeaBIOS) with its own copy of the
// firmware variables; Cleanup kills it.
func startVM(t *testing.T, o vmOptions) *probetest.VM {
	t.Helper()
	po := probetest.Options{Drives: o.drives, Incoming: o.incoming, Socket: o.socket, Reboot: o.reboot, Timeout: 3 * bootTimeout}
	if o.bios {
		po.Binary = tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
		po.Args = []string{"-machine", "q35", "-m", "64"}
	} else {
		requireFirmware(t, o.fw)
		po.Binary, po.Args, po.Code, po.Vars = o.fw.binary, o.fw.args, o.fw.code, o.fw.vars
	}
	return probetest.Start(t, po)
}

// allProbes turns on every probe.
var allProbes = sector.Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}

// heartbeat matches heartbeat n.
func heartbeat(n int) *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat %d\r\n`, n))
}

// TestProbeLines boots every probe with a cidata CD: each line is a line
// of its own, matches the golden's regexp, and they come in the BIOS
// program's order (id, boot, disks, volume, then heartbeats) right
// after the marker.
func TestProbeLines(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		o := sector.Options{Timeout: 3 * time.Second, Probes: sector.Probes{Heartbeat: 500 * time.Millisecond, Disks: true, BootCount: true, ID: true}}
		v := startVM(t, vmOptions{fw: fw, drives: append(fw.boot(probeFile(t, o)), fw.cd(2, probetest.LabelledISO(t, "cidata"))...)})
		v.Exits("--timeout 3s")
		out := v.Serial.String()
		_, after, ok := strings.Cut(out, marker)
		if !ok {
			t.Fatalf("no marker: %q", tail(out))
		}
		want := []string{"tinyvm id " + o.ID(), "tinyvm boot 1", "tinyvm disks 1", "tinyvm volume cidata", "tinyvm heartbeat 1", "tinyvm heartbeat 2"}
		lines := strings.Split(after, "\r\n")
		if len(lines) < len(want) {
			t.Fatalf("lines after the marker %q, want %q first", lines, want)
		}
		for i, w := range want {
			if lines[i] != w {
				t.Errorf("line %d after the marker is %q, want %q", i, lines[i], w)
			}
		}
		for _, l := range lines[:len(lines)-1] {
			if !goldenMatch(t, l) {
				t.Errorf("line %q matches no regexp of testdata/probes/lines.txt", l)
			}
		}
	})
}

// goldenMatch reports whether line matches one of the regexps in
// testdata/probes/lines.txt, the versioned line format.
func goldenMatch(t *testing.T, line string) bool {
	t.Helper()
	b, err := os.ReadFile("../../../testdata/probes/lines.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# "+sector.LinesVersion+"\n") {
		t.Fatalf("lines.txt is not %s", sector.LinesVersion)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if re, ok := strings.CutPrefix(l, "re "); ok && regexp.MustCompile(re).MatchString(line) {
			return true
		}
	}
	return false
}

// TestProbeHeartbeatStopCont pauses the guest over QMP (probetest.StopCont).
func TestProbeHeartbeatStopCont(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		o := sector.Options{Probes: sector.Probes{Heartbeat: 500 * time.Millisecond}}
		probetest.StopCont(t, startVM(t, vmOptions{fw: fw, drives: fw.boot(probeFile(t, o))}), marker)
	})
}

// TestProbeHeartbeatMigration live-migrates the guest between two QEMUs
// on loopback, each with the same firmware code and its own variables
// (probetest.Migration).
func TestProbeHeartbeatMigration(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		path := probeFile(t, sector.Options{Probes: sector.Probes{Heartbeat: 500 * time.Millisecond}})
		probetest.Migration(t, func(incoming string) *probetest.VM {
			return startVM(t, vmOptions{fw: fw, drives: fw.boot(path), incoming: incoming})
		}, marker)
	})
}

// bootOnce boots path until it powers off and returns its boot count.
func bootOnce(t *testing.T, o vmOptions, path, format string) int {
	t.Helper()
	o.drives = o.fw.drive("d0", path, format, 0)
	v := startVM(t, o)
	m := v.WaitFor(probetest.BootRE, "bootcount")
	v.Exits("--then poweroff")
	return probetest.Atoi(t, m[1])
}

// TestProbeBootCount counts boots through BlockIo: a raw disk booted on
// SeaBIOS and then on the firmware counts 1 then 2 in the one sector
// both programs use; a qcow2 counts 1, 2, a qemu-img overlay made then
// goes on from 2 without changing its base, and reverting to a snapshot
// taken after boot 1 gives back 1, whose next boot counts 2.
func TestProbeBootCount(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}}
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		vo := vmOptions{fw: fw}
		d := probeDisk(t, o)
		t.Run("raw-bios-then-uefi", func(t *testing.T) {
			// SeaBIOS is x86's, but the universal disk is one: the BIOS
			// program's count goes on on either application.
			path := probetest.WriteRaw(t, d)
			if n := probetest.OfflineCount(t, path, "raw"); n != 0 {
				t.Fatalf("a fresh disk counts %d, want 0", n)
			}
			if n := bootOnce(t, vmOptions{fw: fw, bios: true}, path, "raw"); n != 1 {
				t.Fatalf("SeaBIOS boot: tinyvm boot %d, want 1", n)
			}
			if n := bootOnce(t, vo, path, "raw"); n != 2 {
				t.Errorf("%s boot after the SeaBIOS one: tinyvm boot %d, want 2", fw.name, n)
			}
			if n := probetest.OfflineCount(t, path, "raw"); n != 2 {
				t.Errorf("ReadBootCount after two boots: %d, want 2", n)
			}
		})
		t.Run("qcow2", func(t *testing.T) {
			base := probetest.WriteQcow2(t, d, qcow2.Options{})
			if n := bootOnce(t, vo, base, "qcow2"); n != 1 {
				t.Fatalf("first boot: tinyvm boot %d, want 1", n)
			}
			probetest.Img(t, "snapshot", "-c", "after1", base)
			if n := bootOnce(t, vo, base, "qcow2"); n != 2 {
				t.Errorf("second boot: tinyvm boot %d, want 2", n)
			}
			clone := filepath.Join(t.TempDir(), "clone.qcow2")
			probetest.Img(t, "create", "-f", "qcow2", "-b", base, "-F", "qcow2", clone)
			if n := bootOnce(t, vo, clone, "qcow2"); n != 3 {
				t.Errorf("the clone's boot: tinyvm boot %d, want 3", n)
			}
			if n := probetest.OfflineCount(t, base, "qcow2"); n != 2 {
				t.Errorf("the clone's boot changed its base: count %d, want 2", n)
			}
			probetest.Img(t, "snapshot", "-a", "after1", base)
			if n := probetest.OfflineCount(t, base, "qcow2"); n != 1 {
				t.Errorf("reverted to the snapshot after boot 1: count %d, want 1", n)
			}
			if n := bootOnce(t, vo, base, "qcow2"); n != 2 {
				t.Errorf("boot after the revert: tinyvm boot %d, want 2", n)
			}
		})
		if fw.arch != efi.AMD64 {
			return // SATA is q35's
		}
		t.Run("sata", func(t *testing.T) {
			// The device path runs through the AHCI port, not virtio.
			sata := fw
			sata.diskDevice = "ide-hd,bus=ide.0"
			if n := bootOnce(t, vmOptions{fw: sata}, probeFile(t, o), "raw"); n != 1 {
				t.Errorf("SATA boot disk: tinyvm boot %d, want 1", n)
			}
		})
	})
}

// TestProbeDisks attaches 1, 2 and 3 more virtio disks without a boot
// index (the firmware connects only the boot order's devices; the
// application connects the rest): with the first a cidata and a
// config-2 CD, which are not counted; with the last a config-2 ISO as a
// read-only virtio disk, which is. Each label prints once.
func TestProbeDisks(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		path := probeFile(t, sector.Options{Then: sector.PowerOff, Probes: sector.Probes{Disks: true}})
		cidata, config2 := probetest.LabelledISO(t, "cidata"), probetest.LabelledISO(t, "config-2")
		for _, c := range []struct {
			name   string
			blanks int      // blank virtio disks
			more   []string // labelled ISOs
			disks  int
			labels []string
		}{
			{"2-disks-cidata-config-2-cds", 1, append(fw.cd(1, cidata), fw.cd(2, config2)...), 2, []string{"cidata", "config-2"}},
			{"3-disks", 2, nil, 3, nil},
			{"4-disks-config-2-disk", 2, probetest.Drive(fw.diskDevice, "iso", config2, "raw", -1, ",readonly=on"), 4, []string{"config-2"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				drives := fw.boot(path)
				for i := range c.blanks {
					drives = append(drives, fw.drive(fmt.Sprintf("x%d", i), probetest.BlankDisk(t), "raw", -1)...)
				}
				v := startVM(t, vmOptions{fw: fw, drives: append(drives, c.more...)})
				m := v.WaitFor(probetest.DisksRE, "disks")
				v.Exits("--then poweroff")
				if got := probetest.Atoi(t, m[1]); got != c.disks {
					t.Errorf("tinyvm disks %d, want %d (CDs are not counted)", got, c.disks)
				}
				var got []string
				for _, m := range probetest.VolumeRE.FindAllStringSubmatch(v.Serial.String(), -1) {
					got = append(got, m[1])
				}
				if strings.Join(got, ",") != strings.Join(c.labels, ",") {
					t.Errorf("volume lines %q, want %q; serial %q", got, c.labels, tail(v.Serial.String()))
				}
			})
		}
	})
}

// TestProbeEcho talks to the guest over a serial socket: what is sent
// comes back, CR as CR LF; an LF ends a line too, as on BIOS; and only
// the line "poweroff" powers it off.
func TestProbeEcho(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		o := sector.Options{Probes: sector.Probes{Echo: true}}
		v := startVM(t, vmOptions{fw: fw, socket: true, drives: fw.boot(probeFile(t, o))})
		v.WaitFor(regexp.MustCompile(regexp.QuoteMeta(marker)), "marker")
		v.Write("hello\r")
		v.WaitFor(regexp.MustCompile(regexp.QuoteMeta(marker)+`hello\r\n`), "echo")
		// Not a power-off: a longer word, the word inside a line, a prefix.
		v.Write("poweroffx\rxpoweroff\rpower\r")
		v.WaitFor(regexp.MustCompile(`xpoweroff\r\npower\r\n`), "echo of the non-matching lines")
		v.Alive(time.Second, "lines that are not exactly poweroff")
		// "x" is a line of its own, so the next one is exactly poweroff.
		v.Write("x\npoweroff" + fw.poweroffEnd)
		v.Exits("the line poweroff")
		echo := "power\r\nx\npoweroff" + strings.ReplaceAll(fw.poweroffEnd, "\r", "\r\n")
		if !strings.HasSuffix(v.Serial.String(), echo) {
			t.Errorf("poweroff was not echoed last, want %q: %q", echo, tail(v.Serial.String()))
		}
	})
}

// TestProbeIDBootOrder boots two disks, in both boot orders: the id
// printed is the one of the disk with bootindex 0.
func TestProbeIDBootOrder(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		a := sector.Options{Then: sector.PowerOff, Serial: new("disk A"), Probes: sector.Probes{ID: true}}
		b := sector.Options{Then: sector.PowerOff, Serial: new("disk B"), Probes: sector.Probes{ID: true}}
		if a.ID() == b.ID() {
			t.Fatalf("two option sets share id %s", a.ID())
		}
		pa, pb := probeFile(t, a), probeFile(t, b)
		for _, c := range []struct{ first, second, want string }{{pa, pb, a.ID()}, {pb, pa, b.ID()}} {
			// The second disk comes first on the bus, so the boot index,
			// not the bus order, decides.
			drives := append(fw.drive("d1", c.second, "raw", 1), fw.drive("d0", c.first, "raw", 0)...)
			v := startVM(t, vmOptions{fw: fw, drives: drives})
			m := v.WaitFor(probetest.IDRE, "id")
			v.Exits("--then poweroff")
			if m[1] != c.want {
				t.Errorf("booted id %s, want %s (the disk with bootindex 0)", m[1], c.want)
			}
		}
	})
}

// TestProbesKeepBehaviourUEFI boots with every probe on: waiting stays
// idle, a keyboard key is echoed instead of powering off (ConIn merges
// the keyboard with the serial terminal) and the power button still
// powers off; the timeout still ends the wait after its heartbeats; and
// without echo a key on the serial console still powers off. On AAVMF
// the power button also works without ACPI.
func TestProbesKeepBehaviourUEFI(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		t.Run("idle-key-powerbutton", func(t *testing.T) {
			v := startVM(t, vmOptions{fw: fw, drives: append(fw.boot(probeFile(t, sector.Options{Probes: allProbes})), fw.keyboard...)})
			v.WaitFor(heartbeat(2), "heartbeat")
			idletest.Check(t, v.Pid(), 5*time.Second, "idle "+fw.name+" guest with every probe")
			v.SendKey("q")
			v.WaitFor(regexp.MustCompile(`tinyvm heartbeat [0-9]+\r\nq`), "the keyboard key echoed")
			v.Alive(time.Second, "a keyboard key with echo")
			v.Exec("system_powerdown")
			v.Exits("system_powerdown")
		})
		t.Run("timeout", func(t *testing.T) {
			v := startVM(t, vmOptions{fw: fw, drives: fw.boot(probeFile(t, sector.Options{Timeout: 3 * time.Second, Probes: allProbes}))})
			v.WaitFor(heartbeat(1), "heartbeat")
			v.Exits("--timeout 3s")
			out := v.Serial.String()
			if n := len(probetest.HeartbeatRE.FindAllString(out, -1)); n != 2 {
				// The timeout's tick 30 comes before heartbeat 3, as on BIOS.
				t.Errorf("%d heartbeats in a 3s timeout with a 1s heartbeat, want 2: %q", n, tail(out))
			}
			for _, re := range []*regexp.Regexp{probetest.DisksRE, probetest.BootRE, probetest.IDRE} {
				if !re.MatchString(out) {
					t.Errorf("no %v: %q", re, tail(out))
				}
			}
		})
		t.Run("serial-key-without-echo", func(t *testing.T) {
			p := allProbes
			p.Echo = false
			v := startVM(t, vmOptions{fw: fw, socket: true, drives: fw.boot(probeFile(t, sector.Options{Probes: p}))})
			v.WaitFor(heartbeat(1), "heartbeat")
			v.Write("x")
			v.Exits("a key on the serial console without echo")
		})
		if fw.arch != efi.ARM64 {
			return
		}
		t.Run("powerbutton-acpi-off", func(t *testing.T) {
			// Without ACPI the button is the PL061's line 3.
			v := startVM(t, vmOptions{fw: fw, drives: append(fw.boot(probeFile(t, sector.Options{Probes: allProbes})), "-machine", "virt,acpi=off")})
			v.WaitFor(heartbeat(1), "heartbeat")
			if got := string(v.QMP(map[string]any{"execute": "qom-get", "arguments": map[string]any{"path": "/machine", "property": "acpi"}})); got != `"off"` {
				t.Fatalf("the machine's acpi property is %s, want off", got)
			}
			v.Exec("system_powerdown")
			v.Exits("system_powerdown on the PL061")
		})
	})
}

// TestProbeBootCountFailures: a read-only disk and a counter sector that
// is not ours print the error line in the boot line's place, after the
// id line, and no count; the boot goes on and powers off, and the disk
// is left as it was.
func TestProbeBootCountFailures(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true, ID: true}}
	errLine := regexp.MustCompile(`tinyvm id ` + o.ID() + `\r\n` + regexp.QuoteMeta(sector.LineError+sector.ErrLineBootCount) + `\r\n`)
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		check := func(t *testing.T, drives []string, why string) {
			t.Helper()
			v := startVM(t, vmOptions{fw: fw, drives: drives})
			v.WaitFor(errLine, why)
			v.Exits("--then poweroff")
			if probetest.BootRE.MatchString(v.Serial.String()) {
				t.Errorf("a count was printed besides the error: %q", tail(v.Serial.String()))
			}
		}
		t.Run("readonly", func(t *testing.T) {
			path := probeFile(t, o)
			check(t, probetest.Drive(fw.diskDevice, "d0", path, "raw", 0, ",readonly=on"), "bootcount on a read-only disk")
			if n := probetest.OfflineCount(t, path, "raw"); n != 0 {
				t.Errorf("the read-only disk counts %d, want 0", n)
			}
		})
		t.Run("foreign-sector", func(t *testing.T) {
			path := probeFile(t, o)
			probetest.WipeCounter(t, path)
			check(t, fw.boot(path), "bootcount on a zeroed counter sector")
		})
	})
}

// TestProbesThen runs the once-per-boot probes with --then halt and
// reboot: halt ignores the power button after its lines, and reboot
// restarts the firmware, whose next boot counts 2.
func TestProbesThen(t *testing.T) {
	p := sector.Probes{Disks: true, BootCount: true, ID: true}
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		t.Run("halt", func(t *testing.T) {
			v := startVM(t, vmOptions{fw: fw, drives: fw.boot(probeFile(t, sector.Options{Then: sector.Halt, Probes: p}))})
			v.WaitFor(probetest.IDRE, "id")
			v.Exec("system_powerdown")
			v.Alive(3*time.Second, "--then halt after system_powerdown")
		})
		t.Run("reboot", func(t *testing.T) {
			v := startVM(t, vmOptions{fw: fw, reboot: true, drives: fw.boot(probeFile(t, sector.Options{Then: sector.Reboot, Probes: p}))})
			v.WaitFor(regexp.MustCompile(`tinyvm boot 2\r\n`), "the count after a reboot")
			if n := strings.Count(v.Serial.String(), "tinyvm boot 1\r\n"); n != 1 {
				t.Errorf("tinyvm boot 1 printed %d times, want once before the reboot", n)
			}
		})
	})
}
