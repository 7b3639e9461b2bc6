package kubevirt

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// TestMemoryFloorBootsInQEMU grounds GuestMemory in QEMU and SeaBIOS. It
// boots the boot sector the way KubeVirt's manifest asks for it: q35, a
// modern virtio-blk disk, BIOS output on serial (libvirt turns
// bios.useSerial into -machine graphics=off), and guest RAM rounded up to
// whole MiB as libvirt does on x86.
//
//   - With GuestMemory, it prints the serial marker and powers off.
//   - With 1 MiB, which is what KubeVirt's smallest accepted request (1M)
//     becomes, SeaBIOS cannot read the disk. So no smaller figure works.
func TestMemoryFloorBootsInQEMU(t *testing.T) {
	qemu := tooltest.Require(t, "qemu-system-x86_64", tooltest.QemuSystem)
	s, err := sector.Build(sector.Options{Then: sector.PowerOff})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, s.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, DefaultSize); err != nil {
		t.Fatal(err)
	}

	mem := (GuestMemory.Value() + mib - 1) / mib
	out := bootUntil(t, qemu, img, mem)
	// The marker goes straight to COM1 while SeaBIOS's serial console
	// copies the screen there lazily, so the two can interleave: the
	// marker's characters come in order, not always side by side.
	_, booted, _ := strings.Cut(out, "Booting from Hard Disk...")
	if strings.Contains(out, "Boot failed") || !inOrder(booted, sector.DefaultSerial) {
		t.Errorf("with %d MiB (GuestMemory %s) the VM did not print %q; serial:\n%s", mem, GuestMemory.String(), sector.DefaultSerial, out)
	}

	out = bootUntil(t, qemu, img, 1)
	if strings.Contains(out, sector.DefaultSerial) || !strings.Contains(out, "Boot failed") {
		t.Errorf("with 1 MiB SeaBIOS was expected to fail to read the disk, so a smaller GuestMemory would do; serial:\n%s", out)
	}
}

// inOrder reports whether the characters of sub appear in s in order,
// other output allowed between them.
func inOrder(s, sub string) bool {
	for _, c := range sub {
		i := strings.IndexRune(s, c)
		if i < 0 {
			return false
		}
		s = s[i+len(string(c)):]
	}
	return true
}

// bootUntil boots img with memMiB of RAM and returns the serial output once
// the guest powers off or SeaBIOS reports a failed boot. A minute is far
// more than either takes, even without KVM; reaching it fails the test.
func bootUntil(t *testing.T, qemu, img string, memMiB int64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{
		// TCG: the guest runs a few thousand instructions, and on nested
		// virtualisation KVM's start-up costs more than emulating them.
		"-accel", "tcg", "-machine", "q35,graphics=off", "-display", "none", "-monitor", "none",
		"-serial", "stdio", "-no-reboot", "-m", fmt.Sprintf("%dM", memMiB),
		"-drive", "file=" + img + ",format=raw,if=none,id=d0",
		"-device", "virtio-blk-pci-non-transitional,drive=d0,bootindex=1",
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	out := &watchBuffer{stop: cancel, markers: []string{"Boot failed"}}
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if out.matched() {
		return out.String() // killed on purpose once SeaBIOS gave up
	}
	if ctx.Err() != nil {
		t.Fatalf("QEMU with %d MiB neither powered off nor failed to boot within a minute; serial:\n%s", memMiB, out.String())
	}
	if err != nil {
		t.Fatalf("QEMU with %d MiB: %v: %s", memMiB, err, stderr.String())
	}
	return out.String()
}

// watchBuffer collects output and calls stop when a marker appears.
type watchBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	markers []string
	hit     bool
	stop    func()
}

func (w *watchBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	for _, m := range w.markers {
		if !w.hit && bytes.Contains(w.b.Bytes(), []byte(m)) {
			w.hit = true
			w.stop()
		}
	}
	return len(p), nil
}

func (w *watchBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *watchBuffer) matched() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hit
}

// uefiShell is what OVMF and AAVMF print on serial when they start their
// built-in UEFI shell, an EFI application: with no disk attached, the
// boot manager falls back to it.
const uefiShell = "UEFI Interactive Shell"

// firmwareCase is one UEFI firmware and the machine it runs on.
type firmwareCase struct {
	name, qemu, install string
	code, vars, pkg     string
	machine             []string
	floor, below        int64  // MiB
	crash               string // what the firmware prints when it faults
}

// TestFirmwareMemoryFloors grounds OVMFMemoryMiB and AAVMFMemoryMiB in
// QEMU and Debian's firmware (ovmf, qemu-efi-aarch64). With the floor,
// the firmware runs its boot manager and starts an EFI application (its
// own shell, as no disk is attached); with less (32 and 64 MiB) it takes
// a CPU exception before it gets there. (The universal disk's own EFI
// programs then boot within the same floor; the boot matrix of issue 8
// runs them.)
func TestFirmwareMemoryFloors(t *testing.T) {
	cases := []firmwareCase{
		{
			name: "OVMF", qemu: "qemu-system-x86_64", install: tooltest.QemuSystem,
			code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: "/usr/share/OVMF/OVMF_VARS_4M.fd", pkg: "ovmf",
			machine: []string{"-machine", "q35"},
			floor:   OVMFMemoryMiB, below: 32, crash: "!!!! X64 Exception",
		},
		{
			name: "AAVMF", qemu: "qemu-system-aarch64", install: "apt-get install qemu-system-arm",
			code: "/usr/share/AAVMF/AAVMF_CODE.fd", vars: "/usr/share/AAVMF/AAVMF_VARS.fd", pkg: "qemu-efi-aarch64",
			machine: []string{"-machine", "virt", "-cpu", "cortex-a57"},
			floor:   AAVMFMemoryMiB, below: 64, crash: "Synchronous Exception",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			qemu := tooltest.Require(t, c.qemu, c.install)
			for _, f := range []string{c.code, c.vars} {
				if _, err := os.Stat(f); err != nil {
					tooltest.Missing(t, fmt.Sprintf("%s firmware: %v: apt-get install %s", c.name, err, c.pkg))
				}
			}
			if out := firmwareUntil(t, qemu, c, c.floor); !strings.Contains(out, uefiShell) {
				t.Errorf("%s with %d MiB did not start an EFI application; serial:\n%s", c.name, c.floor, out)
			}
			if out := firmwareUntil(t, qemu, c, c.below); !strings.Contains(out, c.crash) || strings.Contains(out, uefiShell) {
				t.Errorf("%s with %d MiB was expected to fault before its shell, so a smaller floor might do; serial:\n%s", c.name, c.below, out)
			}
		})
	}
}

// firmwareUntil starts c's firmware with memMiB of RAM and no disk, and
// returns the serial output once it starts its shell or faults. Three
// minutes is far more than either takes under TCG; reaching it fails the
// test.
func firmwareUntil(t *testing.T, qemu string, c firmwareCase, memMiB int64) string {
	t.Helper()
	// The variable store is writable state: each run gets a fresh copy.
	vars := filepath.Join(t.TempDir(), filepath.Base(c.vars))
	b, err := os.ReadFile(c.vars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vars, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := append([]string{"-accel", "tcg"}, c.machine...)
	args = append(args,
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-net", "none",
		"-m", fmt.Sprintf("%dM", memMiB),
		"-drive", "if=pflash,format=raw,readonly=on,file="+c.code,
		"-drive", "if=pflash,format=raw,file="+vars,
	)
	cmd := exec.CommandContext(ctx, qemu, args...)
	out := &watchBuffer{stop: cancel, markers: []string{uefiShell, c.crash}}
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if out.matched() {
		return out.String() // killed on purpose at the marker
	}
	if ctx.Err() != nil {
		t.Fatalf("%s with %d MiB neither started its shell nor faulted within three minutes; serial:\n%s", c.name, memMiB, out.String())
	}
	t.Fatalf("%s with %d MiB exited: %v: %s\nserial:\n%s", c.name, memMiB, err, stderr.String(), out.String())
	return ""
}
