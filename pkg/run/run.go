// Package run boots the VM in local QEMU: a disk file in any of the
// formats, or a fresh build of one. It is the library behind `tinyvm-oci
// run`: the first stop asks the guest to power off (the ACPI power
// button), a second one kills QEMU, and the guest's screen can be saved
// as a PNG.
package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/inspect"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/efi"
)

// DefaultGrace is how long a stop waits for the guest to power off after
// the power button before it kills QEMU. The VM answers in milliseconds;
// the rest is room for a loaded host under TCG.
const DefaultGrace = 10 * time.Second

// RepressEvery is how often, within the grace, the power button is
// pressed again while the guest has not powered off.
const RepressEvery = time.Second

// Options describe one run.
type Options struct {
	// Qemu is how to boot. File, Driver, Offset and Length, and the bus
	// when none is set, come from the disk file.
	Qemu qemu.Options
	// Screenshot, when set, is where the guest's screen is saved as a PNG:
	// when Marker appears on the serial port, or when the guest powers
	// off, whichever comes first.
	Screenshot string
	// Marker is the serial line the VM writes once its screen is drawn;
	// empty means sector.DefaultSerial.
	Marker string
	// Grace is how long a stop waits for the guest to power off; 0 means
	// DefaultGrace.
	Grace time.Duration
	// Kill, once closed, kills QEMU at once: a second Ctrl-C.
	Kill <-chan struct{}
	// Notify, when set, is told in one line what a stop is doing.
	Notify func(string)
}

// Errors of a disk that cannot boot as asked.
var (
	// ErrBus is a bus the format cannot boot from.
	ErrBus = errors.New("run: format cannot boot from this bus")
	// ErrFirmware is firmware the disk holds no program for.
	ErrFirmware = errors.New("run: the disk cannot boot on this firmware")
)

// Build writes the single format in bo.Formats to a temporary directory
// (see txn.Scratch) and boots it as File does. It returns the build's
// warnings and the run's error.
func Build(ctx context.Context, bo build.Options, o Options) ([]string, error) {
	if len(bo.Formats) != 1 {
		return nil, fmt.Errorf("run boots one format, got %d", len(bo.Formats))
	}
	if err := CheckBus(o.Qemu.Bus, bo.Formats[0]); err != nil {
		return nil, err
	}
	if err := CheckBuild(bo, o.Qemu); err != nil {
		return nil, err
	}
	if o.Marker == "" && bo.SectorFile == nil && bo.Sector.Serial != nil {
		o.Marker = *bo.Sector.Serial
	}
	// A killed run leaves this behind; the next one removes it.
	dir, release, err := txn.Scratch("")
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := build.FilesContext(ctx, dir, bo)
	if err != nil {
		return nil, err
	}
	if o.Qemu, err = ForFormat(o.Qemu, res.Files[0].Path, bo.Formats[0]); err != nil {
		return res.Warnings, err
	}
	return res.Warnings, boot(ctx, o)
}

// File boots the disk file at path, in whichever format inspect finds.
// It returns once the guest powers off. When ctx ends, it presses the
// power button and waits up to o.Grace for the guest to power off, which
// is a success; after that, or once o.Kill is closed, it kills QEMU and
// returns ctx's error.
func File(ctx context.Context, path string, o Options) error {
	qo, err := Prepare(path, o.Qemu)
	if err != nil {
		return err
	}
	o.Qemu = qo
	return boot(ctx, o)
}

// Prepare returns qo set up to boot the disk file at path: its format
// found by inspect, the driver and bus for it, and the firmware checked
// against what the disk holds (an ESP for UEFI).
func Prepare(path string, qo qemu.Options) (qemu.Options, error) {
	inf, err := inspect.File(path)
	if err != nil {
		if errors.Is(err, info.ErrNotDisk) || errors.Is(err, info.ErrCorrupt) {
			return qo, fmt.Errorf("run: %w: give a disk file that build or pull wrote", err)
		}
		return qo, fmt.Errorf("run: %w", err)
	}
	f, err := formats.Lookup(inf.Format)
	if err != nil {
		return qo, fmt.Errorf("run: %w", err)
	}
	if err := CheckBus(qo.Bus, f); err != nil {
		return qo, err
	}
	if qo, err = ForFormat(qo, path, f); err != nil {
		return qo, err
	}
	if uefi(qo) {
		if err := checkESP(path, f, inf, qo); err != nil {
			return qo, err
		}
	}
	return qo, nil
}

// uefi reports whether qo boots on UEFI firmware.
func uefi(qo qemu.Options) bool { return qo.Firmware == "uefi" || qo.Arch == "arm64" }

// firmwareName is the firmware qo boots on, for messages.
func firmwareName(qo qemu.Options) string {
	switch {
	case qo.Arch == "arm64":
		return "UEFI (AAVMF)"
	case uefi(qo):
		return "UEFI (OVMF)"
	}
	return "BIOS (SeaBIOS)"
}

// CheckBuild reports whether the disk bo builds holds a program for the
// firmware and architecture qo boots on.
func CheckBuild(bo build.Options, qo qemu.Options) error {
	switch {
	case !uefi(qo) && !bo.Has(build.BIOS):
		return fmt.Errorf("%w: the disk is built without a BIOS program (--firmware %s): boot it with --boot uefi, or build it with bios", ErrFirmware, fwList(bo))
	case uefi(qo) && !bo.Has(build.UEFI):
		return fmt.Errorf("%w: the disk is built without an EFI system partition (--firmware bios): drop --boot uefi, or build it with uefi", ErrFirmware)
	}
	arch := efi.AMD64
	if qo.Arch == "arm64" {
		arch = efi.ARM64
	}
	if uefi(qo) && !slices.Contains(bo.EFIArches(), arch) {
		return fmt.Errorf("%w: the disk holds no %s EFI application: build it with --arch %s, or boot another --guest-arch", ErrFirmware, arch, arch)
	}
	return nil
}

// fwList is bo's --firmware as it was given.
func fwList(bo build.Options) string {
	names := make([]string, len(bo.Firmware))
	for i, fw := range bo.Firmware {
		names[i] = string(fw)
	}
	return strings.Join(names, ",")
}

// checkESP reports whether the disk file holds what UEFI boots: an ISO's
// El Torito entry for UEFI, or an EFI system partition in the disk's GPT.
// A raw disk is read here; any other format's first MiB, where the GPT
// lies, is read by qemu-img dd, and without qemu-img the check is left to
// the firmware.
func checkESP(path string, f formats.Format, inf *info.Info, qo qemu.Options) error {
	if f.Media == formats.MediaCDROM {
		if inf.ElTorito == nil || inf.ElTorito.EFI == nil {
			return fmt.Errorf("%w: %s has no El Torito entry for UEFI, so %s cannot boot it: drop --boot uefi", ErrFirmware, info.Quote(path), firmwareName(qo))
		}
		return nil
	}
	head, size := path, inf.VirtualSize
	if f.Type != raw.Type {
		qemuImg, err := exec.LookPath("qemu-img")
		if err != nil {
			return nil
		}
		dir, release, err := txn.Scratch("")
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		defer release()
		head = filepath.Join(dir, "head.raw")
		src := "if=" + path
		if qo.Length > 0 { // the disk inside an archive
			spec, err := json.Marshal(map[string]any{"driver": qo.Driver, "file": map[string]any{
				"driver": "raw", "offset": qo.Offset, "size": qo.Length,
				"file": map[string]any{"driver": "file", "filename": path},
			}})
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			src = "if=json:" + string(spec)
		}
		args := []string{"dd", "-O", "raw", "bs=1M", "count=1", src, "of=" + head}
		if qo.Length == 0 {
			args = append(args[:1], append([]string{"-f", qo.Driver}, args[1:]...)...)
		}
		if out, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("run: read the GPT of %s with qemu-img: %v: %s", info.Quote(path), err, oneLine(out))
		}
	}
	file, err := os.Open(head)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer file.Close()
	if size == 0 {
		st, err := file.Stat()
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		size = st.Size()
	}
	if _, err := universal.FindESP(fileDisk{file, size}); err != nil {
		return fmt.Errorf("%w: %s has no EFI system partition, so %s cannot boot it: boot it with --boot bios, or build it with --firmware uefi", ErrFirmware, info.Quote(path), firmwareName(qo))
	}
	return nil
}

// oneLine joins a tool's output into one line.
func oneLine(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }

// fileDisk is a raw disk file as a disk.Disk.
type fileDisk struct {
	*os.File
	size int64
}

func (d fileDisk) Size() int64 { return d.size }

var _ disk.Disk = fileDisk{}

// CheckBus reports whether a file of format f boots from bus (empty
// means the default, which always does). Only an iso boots from a
// CD-ROM: SeaBIOS finds no El Torito record on a disk image and waits
// forever for a boot device.
func CheckBus(bus string, f formats.Format) error {
	if bus == "cdrom" && f.Media != formats.MediaCDROM {
		return fmt.Errorf("%w: --bus cdrom boots only an iso, and a %s disk on a CD-ROM drive never boots: use --format iso, or another --bus", ErrBus, f.Type)
	}
	return nil
}

// ForFormat fills in how QEMU reads file, of format f: its block driver,
// the bus when none is chosen (a CD-ROM for an iso, IDE otherwise, virtio
// on arm64) and, for an archive (ova), where the disk sits inside it.
func ForFormat(qo qemu.Options, file string, f formats.Format) (qemu.Options, error) {
	qo.File = file
	qo.Driver = f.QemuDriver
	if qo.Bus == "" {
		switch {
		case qo.Arch == "arm64":
			qo.Bus = "virtio"
		case f.Media == formats.MediaCDROM:
			qo.Bus = "cdrom"
		default:
			qo.Bus = "ide"
		}
	}
	if f.Media == formats.MediaCDROM && qo.Bus != "cdrom" && qo.Arch == "arm64" {
		return qo, fmt.Errorf("%w: an iso boots from a CD-ROM, which the arm64 virt machine here has none of: boot a disk format on arm64", ErrBus)
	}
	if f.Media == formats.MediaArchive {
		inf, err := inspect.File(file)
		if err != nil {
			return qo, fmt.Errorf("run: %w", err)
		}
		if inf.DiskSize == 0 {
			return qo, fmt.Errorf("run: %s: %w: the archive holds no disk QEMU can boot", info.Quote(file), info.ErrNotDisk)
		}
		qo.Offset, qo.Length = inf.DiskOffset, inf.DiskSize
	}
	return qo, nil
}

// boot runs the prepared o.Qemu; see File.
func boot(ctx context.Context, o Options) error {
	qo := o.Qemu
	marker := o.Marker
	if marker == "" {
		marker = sector.DefaultSerial
	}
	markerSeen := make(chan struct{})
	if o.Screenshot != "" {
		// The guest's power-off must leave its screen to read.
		qo.NoShutdown, qo.Screen = true, true
		seen := &markerWatch{marker: []byte(marker), found: markerSeen}
		switch {
		case qo.Terminal != nil:
			// Serial is drawn on the terminal: the shot comes at power-off.
		case qo.Serial != nil:
			qo.Serial = multiWriter{qo.Serial, seen}
		default:
			qo.Serial = seen
		}
	}
	grace := o.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	// QEMU outlives ctx: ending ctx asks the guest to stop, and only
	// kill, after the grace or a second stop, ends QEMU.
	qctx, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	p, err := qemu.Start(qctx, qo)
	if err != nil {
		return err
	}
	var (
		stopping <-chan struct{} = ctx.Done()
		graceEnd <-chan time.Time
		repress  <-chan time.Time
		poll     <-chan time.Time
		shot     = o.Screenshot == ""
		shotErr  error
	)
	if !shot {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		poll = t.C
	}
	notify := o.Notify
	if notify == nil {
		notify = func(string) {}
	}
	take := func() {
		if !shot {
			shot = true
			if shotErr = p.Screenshot(o.Screenshot); shotErr != nil {
				shotErr = fmt.Errorf("run: --screenshot: %w", shotErr)
			}
		}
	}
	for {
		select {
		case <-p.Done():
			err := p.Wait()
			if err == nil {
				err = shotErr
			}
			if err == nil && !shot {
				err = errors.New("run: --screenshot: QEMU exited before the screen could be read")
			}
			return err
		case <-markerSeen:
			markerSeen = nil
			take()
		case <-poll:
			// With NoShutdown a powered-off guest stops but QEMU stays.
			if st, err := p.Status(); err == nil && st == "shutdown" {
				take()
				poll = nil
				if err := p.Quit(); err != nil {
					p.Kill()
				}
			}
		case <-stopping:
			stopping = nil
			if err := p.Powerdown(); err != nil {
				p.Kill()
				return ctx.Err()
			}
			notify(fmt.Sprintf("pressed the ACPI power button; waiting %s for the guest to power off (Ctrl-C again kills QEMU)", grace))
			graceEnd = time.After(grace)
			// QEMU drops a press the guest has not enabled yet (PWRBTN_EN
			// still clear while it starts), as hardware does: press again
			// each RepressEvery, as a person would, until the grace ends.
			t := time.NewTicker(RepressEvery)
			defer t.Stop()
			repress = t.C
		case <-repress:
			if err := p.Powerdown(); err != nil {
				repress = nil // QEMU is going; Done tells why
			}
		case <-graceEnd:
			notify(fmt.Sprintf("the guest did not power off within %s: killed QEMU", grace))
			p.Kill()
			return ctx.Err()
		case <-o.Kill:
			p.Kill()
			if err := ctx.Err(); err != nil {
				return err
			}
			return context.Canceled
		}
	}
}

// markerWatch closes found once the serial output holds marker. It keeps
// only the bytes a marker split across writes needs, so a long run's
// output is not held in memory.
type markerWatch struct {
	mu     sync.Mutex
	marker []byte
	tail   []byte
	found  chan struct{}
	closed bool
}

func (w *markerWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	buf := append(w.tail, p...)
	if bytes.Contains(buf, w.marker) {
		w.closed, w.tail = true, nil
		close(w.found)
		return len(p), nil
	}
	keep := min(len(buf), len(w.marker)-1)
	w.tail = append(w.tail[:0:0], buf[len(buf)-keep:]...)
	return len(p), nil
}

// multiWriter writes to both; a failing first writer (a closed stdout)
// must not stop the second from seeing the marker.
type multiWriter [2]io.Writer

func (m multiWriter) Write(p []byte) (int, error) {
	_, err := m[0].Write(p)
	_, _ = m[1].Write(p) // a markerWatch never fails
	if err != nil {
		return 0, err
	}
	return len(p), nil
}
