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
	if !strings.Contains(out, sector.DefaultSerial) {
		t.Errorf("with %d MiB (GuestMemory %s) the VM did not print %q; serial:\n%s", mem, GuestMemory.String(), sector.DefaultSerial, out)
	}

	out = bootUntil(t, qemu, img, 1)
	if strings.Contains(out, sector.DefaultSerial) || !strings.Contains(out, "Boot failed") {
		t.Errorf("with 1 MiB SeaBIOS was expected to fail to read the disk, so a smaller GuestMemory would do; serial:\n%s", out)
	}
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
