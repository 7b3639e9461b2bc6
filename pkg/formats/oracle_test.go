package formats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/inspect"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// variant is one set of options every applicable format is checked with.
type variant struct {
	name string
	size int64
	opts formats.Options
	only string // the one format the options are for; "" for all
	bare bool   // the classic bare BIOS disk (--firmware bios), not the universal one
}

var variants = []variant{
	{name: "default", size: 1 << 20},
	{name: "bare", size: 1 << 20, bare: true},
	{name: "1GiB", size: 1 << 30},
	{name: "qcow2-compress", size: 1 << 20, opts: formats.Options{Qcow2Compress: true}, only: "qcow2"},
	{name: "cluster-512", size: 1 << 20, opts: formats.Options{ClusterSize: 512}, only: "qcow2"},
	{name: "streamOptimized", size: 1 << 20, opts: formats.Options{VMDKSubformat: "streamOptimized"}, only: "vmdk"},
	{name: "fixed", size: 1 << 20, opts: formats.Options{VHDType: "fixed"}, only: "vhd"},
	{name: "floppy", size: 1 << 20, opts: formats.Options{ISOBoot: "floppy"}, only: "iso"},
}

const marker = "Hello World!\r\n"

// image is one format written for one variant, beside the raw disk it
// was written from.
type image struct {
	f          formats.Format
	v          variant
	path, raw  string
	virtualLen int64
}

func writeImages(t *testing.T, v variant) []image {
	t.Helper()
	d := formattest.UniversalDisk(t, v.size)
	if v.bare {
		d = formattest.BootDisk(t, v.size)
	}
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "source.raw")
	formattest.WriteRaw(t, rawPath, d, raw.Write)
	var out []image
	for _, f := range formats.Types {
		if v.only != "" && v.only != f.Type {
			continue
		}
		path := filepath.Join(dir, f.FileName())
		formattest.WriteFile(t, path, func(w io.Writer) error { return f.Write(w, d, v.opts) })
		out = append(out, image{f: f, v: v, path: path, raw: rawPath, virtualLen: v.size})
	}
	return out
}

func qemuImg(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("qemu-img %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// TestQemuImg checks every disk format against qemu-img itself: info,
// check, compare with the raw source and convert back to raw.
func TestQemuImg(t *testing.T) {
	for _, v := range variants {
		for _, im := range writeImages(t, v) {
			if im.f.Media != formats.MediaDisk {
				continue // iso and ova have their own oracles in their packages
			}
			t.Run(im.f.Type+"/"+v.name, func(t *testing.T) {
				drv := im.f.QemuDriver
				out, err := qemuImg(t, "info", "--output=json", "-f", drv, im.path)
				if err != nil {
					t.Fatal(err)
				}
				var info struct {
					Format      string `json:"format"`
					VirtualSize int64  `json:"virtual-size"`
				}
				if err := json.Unmarshal(out, &info); err != nil {
					t.Fatalf("qemu-img info: %v: %s", err, out)
				}
				if info.Format != drv || info.VirtualSize != im.virtualLen {
					t.Errorf("qemu-img info: format %q, virtual size %d; want %q, %d", info.Format, info.VirtualSize, drv, im.virtualLen)
				}

				out, err = qemuImg(t, "check", "--output=json", "-f", drv, im.path)
				var ee *exec.ExitError
				switch {
				case err == nil:
					var check struct {
						Corruptions int `json:"corruptions"`
						Leaks       int `json:"leaks"`
						CheckErrors int `json:"check-errors"`
					}
					if err := json.Unmarshal(out, &check); err != nil {
						t.Fatalf("qemu-img check: %v: %s", err, out)
					}
					if check.Corruptions+check.Leaks+check.CheckErrors != 0 {
						t.Errorf("qemu-img check: %s", out)
					}
				case errors.As(err, &ee) && ee.ExitCode() == 63 && (drv == "raw" || drv == "vpc"):
					// qemu-img check does not support raw and vpc.
				default:
					t.Errorf("qemu-img check: %v", err)
				}

				// Not -s: a sparse raw reports every block allocated, so
				// strict mode fails even for qemu-img's own qcow2, vmdk and
				// vdi of the same raw (measured with qemu-img 7.2). Format
				// packages check allocation against qemu-img's own output.
				if _, err := qemuImg(t, "compare", "-f", "raw", "-F", drv, im.raw, im.path); err != nil {
					t.Errorf("qemu-img compare: %v", err)
				}

				back := filepath.Join(t.TempDir(), "back.raw")
				if _, err := qemuImg(t, "convert", "-f", drv, "-O", "raw", im.path, back); err != nil {
					t.Fatal(err)
				}
				formattest.SameFiles(t, im.raw, back)
			})
		}
	}
}

// TestBoot boots every format in QEMU with its own block driver: disks on
// SeaBIOS pc+ide and q35+virtio, OVMF q35+virtio (and SATA for raw) and
// AAVMF virt+virtio; the iso as a CD-ROM on SeaBIOS pc and q35, OVMF q35
// and AAVMF virt, and as a hard disk (hybrid). The guest must print the
// marker and power off.
func TestBoot(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	for _, v := range variants {
		for _, im := range writeImages(t, v) {
			var boots []qemu.Options
			switch im.f.Media {
			case formats.MediaDisk:
				boots = []qemu.Options{{Machine: "pc", Bus: "ide"}, {Machine: "q35", Bus: "virtio"}}
				if !v.bare {
					// The same file on UEFI: OVMF, and AAVMF for the
					// default size (TCG emulates arm64 slowly).
					boots = append(boots, qemu.Options{Machine: "q35", Bus: "virtio", Firmware: "uefi"})
					if v.name == "default" {
						boots = append(boots, qemu.Options{Arch: "arm64", Bus: "virtio", Firmware: "uefi"})
					}
					if v.name == "default" && im.f.Type == "raw" {
						boots = append(boots, qemu.Options{Machine: "q35", Bus: "sata", Firmware: "uefi"})
					}
				}
			case formats.MediaCDROM:
				boots = []qemu.Options{{Machine: "pc", Bus: "cdrom"}, {Machine: "q35", Bus: "cdrom"}}
				if !v.bare {
					boots = append(boots, qemu.Options{Machine: "q35", Bus: "cdrom", Firmware: "uefi"})
					if v.name == "default" {
						boots = append(boots, qemu.Options{Arch: "arm64", Bus: "cdrom", Firmware: "uefi"})
					}
				}
				if v.opts.ISOBoot != "floppy" {
					boots = append(boots, qemu.Options{Machine: "pc", Bus: "ide"})
				}
			case formats.MediaArchive:
				// ova: the VMDK inside the tar, in place, as run boots it
				// (its package boots it on SeaBIOS; here the universal
				// disk's UEFI too).
				if v.bare || v.name != "default" {
					continue
				}
				in, err := inspect.File(im.path)
				if err != nil || in.DiskSize == 0 {
					t.Fatalf("inspect %s: %v, %+v", im.path, err, in)
				}
				for _, fw := range []string{"", "uefi"} {
					boots = append(boots, qemu.Options{Machine: "q35", Bus: "virtio", Firmware: fw, Offset: in.DiskOffset, Length: in.DiskSize})
				}
			}
			for _, b := range boots {
				b.File, b.Driver = im.path, im.f.QemuDriver
				fw := b.Firmware
				if fw == "" {
					fw = "bios"
				}
				if b.Arch == "arm64" {
					b.Machine = "virt"
				}
				t.Run(fmt.Sprintf("%s/%s/%s-%s-%s", im.f.Type, v.name, b.Machine, b.Bus, fw), func(t *testing.T) {
					boot(t, b)
				})
			}
		}
	}
}

func boot(t *testing.T, o qemu.Options) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	serial := qemu.NewCapture()
	o.Serial = serial
	p, err := qemu.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(90 * time.Second):
		p.Kill()
		t.Fatalf("the guest did not power off within 90s; serial: %q", serial.String())
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(serial.String(), marker) {
		t.Errorf("no %q on serial; got %q", marker, serial.String())
	}
}
