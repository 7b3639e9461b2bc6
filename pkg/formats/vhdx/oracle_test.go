package vhdx

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// TestQemuImg is the oracle: qemu-img reads every output as a VHDX of the
// exact virtual size, finds no errors, and gives back the raw disk.
func TestQemuImg(t *testing.T) {
	qimg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	cases := []struct {
		name string
		d    disk.Disk
		full bool // compare and convert the whole disk (cheap enough)
	}{
		{"default-1MiB", formattest.BootDisk(t, mib), true},
		{"512B", formattest.BootDisk(t, 512), true},
		{"1GiB", formattest.BootDisk(t, 1<<30), true},
		{"4GiB-chunks", chunkDisk(t), !testing.Short()},
		{"1TiB", formattest.BootDisk(t, 1<<40), false},
		{"8TiB", formattest.BootDisk(t, 8<<40), false}, // 8 MiB blocks
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFile(t, dir, "ours.vhdx", c.d, Options{})
			rawPath := filepath.Join(dir, "disk.raw")
			formattest.WriteRaw(t, rawPath, c.d, raw.Write)

			var qi formattest.QemuInfo
			if err := json.Unmarshal(formattest.Run(t, qimg, "info", "--output=json", "-f", "vhdx", path), &qi); err != nil {
				t.Fatal(err)
			}
			if bs := BlockSizeFor(c.d.Size()); qi.Format != "vhdx" || qi.VirtualSize != c.d.Size() || qi.ClusterSize != bs {
				t.Fatalf("qemu-img info: %+v, want vhdx of %d bytes with %d-byte blocks", qi, c.d.Size(), bs)
			}
			if out := string(formattest.Run(t, qimg, "check", "-f", "vhdx", path)); !strings.Contains(out, "No errors were found") {
				t.Fatalf("qemu-img check: %s", out)
			}

			// qemu-img's own VHDX of the same raw, for size and map.
			ref := filepath.Join(dir, "qemu.vhdx")
			formattest.Run(t, qimg, "convert", "-f", "raw", "-O", "vhdx", rawPath, ref)
			ours, theirs := formattest.FileSize(t, path), formattest.FileSize(t, ref)
			t.Logf("file size: ours %d, qemu-img convert -O vhdx %d", ours, theirs)
			if ours > theirs {
				t.Fatalf("our file is %d bytes, larger than qemu-img's %d", ours, theirs)
			}
			// QEMU's vhdx driver reports no block status, so qemu-img map
			// says "data" for the whole disk; it must say the same for ours
			// as for qemu-img's own file.
			if a, b := string(formattest.Run(t, qimg, "map", "--output=json", "-f", "vhdx", path)), string(formattest.Run(t, qimg, "map", "--output=json", "-f", "vhdx", ref)); a != b {
				t.Fatalf("qemu-img map differs from qemu-img's own VHDX:\n%s\n%s", a, b)
			}
			if got, err := inspectInfo(ref); err != nil || got.VirtualSize != c.d.Size() {
				t.Fatalf("Inspect of qemu-img's VHDX: %+v, %v", got, err)
			}
			if !c.full {
				return
			}
			if out := string(formattest.Run(t, qimg, "compare", "-f", "raw", "-F", "vhdx", rawPath, path)); !strings.Contains(out, "Images are identical") {
				t.Fatalf("qemu-img compare: %s", out)
			}
			// Strict mode compares allocation too. Against the raw it fails
			// even for qemu-img's own VHDX (the driver has no block status),
			// so the strict oracle is qemu-img's VHDX of the same raw.
			if out := string(formattest.Run(t, qimg, "compare", "-s", "-f", "vhdx", "-F", "vhdx", ref, path)); !strings.Contains(out, "Images are identical") {
				t.Fatalf("qemu-img compare -s: %s", out)
			}
			back := filepath.Join(dir, "back.raw")
			formattest.Run(t, qimg, "convert", "-f", "vhdx", "-O", "raw", path, back)
			if formattest.FileSize(t, back) != c.d.Size() {
				t.Fatalf("convert -O raw gave %d bytes, want %d", formattest.FileSize(t, back), c.d.Size())
			}
			if out := string(formattest.Run(t, qimg, "compare", "-f", "raw", "-F", "raw", rawPath, back)); !strings.Contains(out, "Images are identical") {
				t.Fatalf("qemu-img compare of the converted raw: %s", out)
			}
			if c.d.Size() <= 1<<30 { // reading holes costs seconds per GiB
				formattest.SameFiles(t, rawPath, back)
			}
		})
	}
}

func inspectInfo(path string) (*info.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return Inspect(f, fi.Size())
}

// TestVhdiinfo is a second, independent reader: libyal's libvhdi, which
// follows Windows' behaviour.
func TestVhdiinfo(t *testing.T) {
	tool := tooltest.Require(t, "vhdiinfo", tooltest.Libvhdi)
	for _, size := range []int64{mib, 1 << 30, 1 << 40, 8 << 40} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "ours.vhdx", formattest.BootDisk(t, size), Options{})
			out := string(formattest.Run(t, tool, path))
			for _, re := range []string{
				`Format\s*: VHDX`,
				`Disk type\s*: Dynamic`,
				fmt.Sprintf(`Media size\s*: .*\(%d bytes\)`, size),
				`Bytes per sector\s*: 512 bytes`,
			} {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Fatalf("vhdiinfo output lacks %q:\n%s", re, out)
				}
			}
		})
	}
}

// TestBoot boots the default VHDX in QEMU with the vhdx driver.
func TestBoot(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	path := writeFile(t, t.TempDir(), "512-byte-vm.vhdx", formattest.BootDisk(t, mib), Options{})
	for _, c := range []struct{ machine, bus string }{{"pc", "ide"}, {"q35", "virtio"}} {
		t.Run(c.machine+"-"+c.bus, func(t *testing.T) {
			formattest.Boot(t, qemu.Options{File: path, Driver: "vhdx", Machine: c.machine, Bus: c.bus})
		})
	}
}

// TestVhdimount reads the disk back through libvhdi (vhdimount, FUSE), an
// implementation independent of QEMU that follows Windows, and compares
// every stored block, the blocks around the first sector bitmap entry and
// the partial last block with the source disk.
func TestVhdimount(t *testing.T) {
	tool := formattest.Vhdimount(t)
	for _, c := range []struct {
		name string
		d    disk.Disk
		// ranges to compare: [off, off+len)
		ranges [][2]int64
	}{
		{"default", formattest.BootDisk(t, mib), [][2]int64{{0, mib}}},
		{"4GiB-chunks", chunkDisk(t), [][2]int64{{0, mib}, {4094 * mib, 4*mib + 4096}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, stderr := formattest.Mount(t, tool, writeFile(t, t.TempDir(), "ours.vhdx", c.d, Options{}))
			var fi os.FileInfo
			var err error
			for i := 0; i < 100; i++ {
				if fi, err = os.Stat(img); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("vhdimount did not serve the disk: %v\n%s", err, stderr.String())
			}
			if fi.Size() != c.d.Size() {
				t.Fatalf("libvhdi sees %d bytes, want %d", fi.Size(), c.d.Size())
			}
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, r := range c.ranges {
				got, want := make([]byte, r[1]), make([]byte, r[1])
				if _, err := f.ReadAt(got, r[0]); err != nil && err != io.EOF {
					t.Fatal(err)
				}
				if _, err := c.d.ReadAt(want, r[0]); err != nil && err != io.EOF {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("libvhdi reads different bytes in [%d, %d)", r[0], r[0]+r[1])
				}
			}
		})
	}
}

// TestQemuWrites opens the file read-write in QEMU (qemu-io), which bumps
// the header sequence, journals BAT updates through our log region and
// appends blocks. The result must still check clean, read back what was
// written, and inspect with one more block.
func TestQemuWrites(t *testing.T) {
	qio := tooltest.Require(t, "qemu-io", tooltest.QemuUtils)
	qimg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	path := writeFile(t, t.TempDir(), "ours.vhdx", formattest.BootDisk(t, 1<<30), Options{})
	formattest.Run(t, qio, "-f", "vhdx",
		"-c", "write -P 0xab 5M 4k", // an unallocated block: allocate + log
		"-c", "write -P 0xcd 100k 1k", // the stored block, in place
		path)
	if out := string(formattest.Run(t, qimg, "check", "-f", "vhdx", path)); !strings.Contains(out, "No errors were found") {
		t.Fatalf("qemu-img check after writes: %s", out)
	}
	out := string(formattest.Run(t, qio, "-f", "vhdx", "-r",
		"-c", "read -P 0xab 5M 4k",
		"-c", "read -P 0xcd 100k 1k",
		"-c", "read -P 0 6M 1M",
		path))
	if strings.Contains(out, "failed") {
		t.Fatalf("qemu-io read back: %s", out)
	}
	in, err := inspectInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	if in.Allocated != 2*mib {
		t.Fatalf("Inspect after QEMU's writes: %d bytes allocated, want 2 MiB", in.Allocated)
	}
}
