package vhdx

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// run runs a tool and returns its standard output, failing the test with
// its error output when it exits non-zero.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func writeRaw(t *testing.T, path string, d disk.Disk) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Write(f, d); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// sameFiles streams both files and reports the first difference.
func sameFiles(t *testing.T, a, b string) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, mib), make([]byte, mib)
	for off := int64(0); ; off += mib {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			t.Fatalf("%s and %s differ in the MiB at %d (read %d and %d bytes)", a, b, off, na, nb)
		}
		if ea != nil || eb != nil {
			return
		}
	}
}

type qemuInfo struct {
	VirtualSize int64  `json:"virtual-size"`
	Format      string `json:"format"`
	ClusterSize int64  `json:"cluster-size"`
}

// TestQemuImg is the oracle: qemu-img reads every output as a VHDX of the
// exact virtual size, finds no errors, and gives back the raw disk.
func TestQemuImg(t *testing.T) {
	qimg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	cases := []struct {
		name string
		d    disk.Disk
		full bool // compare and convert the whole disk (cheap enough)
	}{
		{"default-1MiB", bootDisk(t, mib), true},
		{"512B", bootDisk(t, 512), true},
		{"1GiB", bootDisk(t, 1<<30), true},
		{"4GiB-chunks", chunkDisk(t), !testing.Short()},
		{"1TiB", bootDisk(t, 1<<40), false},
		{"8TiB", bootDisk(t, 8<<40), false}, // 8 MiB blocks
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFile(t, dir, "ours.vhdx", c.d, Options{})
			rawPath := filepath.Join(dir, "disk.raw")
			writeRaw(t, rawPath, c.d)

			var qi qemuInfo
			if err := json.Unmarshal([]byte(run(t, qimg, "info", "--output=json", "-f", "vhdx", path)), &qi); err != nil {
				t.Fatal(err)
			}
			if bs := BlockSizeFor(c.d.Size()); qi.Format != "vhdx" || qi.VirtualSize != c.d.Size() || qi.ClusterSize != bs {
				t.Fatalf("qemu-img info: %+v, want vhdx of %d bytes with %d-byte blocks", qi, c.d.Size(), bs)
			}
			if out := run(t, qimg, "check", "-f", "vhdx", path); !strings.Contains(out, "No errors were found") {
				t.Fatalf("qemu-img check: %s", out)
			}

			// qemu-img's own VHDX of the same raw, for size and map.
			ref := filepath.Join(dir, "qemu.vhdx")
			run(t, qimg, "convert", "-f", "raw", "-O", "vhdx", rawPath, ref)
			ours, theirs := fileSize(t, path), fileSize(t, ref)
			t.Logf("file size: ours %d, qemu-img convert -O vhdx %d", ours, theirs)
			if ours > theirs {
				t.Fatalf("our file is %d bytes, larger than qemu-img's %d", ours, theirs)
			}
			// QEMU's vhdx driver reports no block status, so qemu-img map
			// says "data" for the whole disk; it must say the same for ours
			// as for qemu-img's own file.
			if a, b := run(t, qimg, "map", "--output=json", "-f", "vhdx", path), run(t, qimg, "map", "--output=json", "-f", "vhdx", ref); a != b {
				t.Fatalf("qemu-img map differs from qemu-img's own VHDX:\n%s\n%s", a, b)
			}
			if got, err := inspectInfo(ref); err != nil || got.VirtualSize != c.d.Size() {
				t.Fatalf("Inspect of qemu-img's VHDX: %+v, %v", got, err)
			}
			if !c.full {
				return
			}
			if out := run(t, qimg, "compare", "-f", "raw", "-F", "vhdx", rawPath, path); !strings.Contains(out, "Images are identical") {
				t.Fatalf("qemu-img compare: %s", out)
			}
			// Strict mode compares allocation too. Against the raw it fails
			// even for qemu-img's own VHDX (the driver has no block status),
			// so the strict oracle is qemu-img's VHDX of the same raw.
			if out := run(t, qimg, "compare", "-s", "-f", "vhdx", "-F", "vhdx", ref, path); !strings.Contains(out, "Images are identical") {
				t.Fatalf("qemu-img compare -s: %s", out)
			}
			back := filepath.Join(dir, "back.raw")
			run(t, qimg, "convert", "-f", "vhdx", "-O", "raw", path, back)
			if fileSize(t, back) != c.d.Size() {
				t.Fatalf("convert -O raw gave %d bytes, want %d", fileSize(t, back), c.d.Size())
			}
			if out := run(t, qimg, "compare", "-f", "raw", "-F", "raw", rawPath, back); !strings.Contains(out, "Images are identical") {
				t.Fatalf("qemu-img compare of the converted raw: %s", out)
			}
			if c.d.Size() <= 1<<30 { // reading holes costs seconds per GiB
				sameFiles(t, rawPath, back)
			}
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
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
			path := writeFile(t, t.TempDir(), "ours.vhdx", bootDisk(t, size), Options{})
			out := run(t, tool, path)
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
	path := writeFile(t, t.TempDir(), "512-byte-vm.vhdx", bootDisk(t, mib), Options{})
	for _, c := range []struct{ machine, bus string }{{"pc", "ide"}, {"q35", "virtio"}} {
		t.Run(c.machine+"-"+c.bus, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var serial bytes.Buffer
			err := qemu.Run(ctx, qemu.Options{File: path, Driver: "vhdx", Machine: c.machine, Bus: c.bus, Serial: &serial})
			if err != nil {
				t.Fatalf("boot: %v\nserial: %q", err, serial.String())
			}
			if !strings.Contains(serial.String(), "Hello World!") {
				t.Fatalf("serial output %q lacks Hello World!", serial.String())
			}
		})
	}
}

// TestVhdimount reads the disk back through libvhdi (vhdimount, FUSE), an
// implementation independent of QEMU that follows Windows, and compares
// every stored block, the blocks around the first sector bitmap entry and
// the partial last block with the source disk.
func TestVhdimount(t *testing.T) {
	tool := tooltest.Require(t, "vhdimount", tooltest.Libvhdi)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		tooltest.Missing(t, "vhdimount needs FUSE: "+err.Error())
	}
	for _, c := range []struct {
		name string
		d    disk.Disk
		// ranges to compare: [off, off+len)
		ranges [][2]int64
	}{
		{"default", bootDisk(t, mib), [][2]int64{{0, mib}}},
		{"4GiB-chunks", chunkDisk(t), [][2]int64{{0, mib}, {4094 * mib, 4*mib + 4096}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFile(t, dir, "ours.vhdx", c.d, Options{})
			mnt := filepath.Join(dir, "mnt")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd := exec.Command(tool, "-v", path, mnt) // -v: stay in the foreground
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = exec.Command("umount", mnt).Run()
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}()
			img := filepath.Join(mnt, "vhdi1")
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
	path := writeFile(t, t.TempDir(), "ours.vhdx", bootDisk(t, 1<<30), Options{})
	run(t, qio, "-f", "vhdx",
		"-c", "write -P 0xab 5M 4k", // an unallocated block: allocate + log
		"-c", "write -P 0xcd 100k 1k", // the stored block, in place
		path)
	if out := run(t, qimg, "check", "-f", "vhdx", path); !strings.Contains(out, "No errors were found") {
		t.Fatalf("qemu-img check after writes: %s", out)
	}
	out := run(t, qio, "-f", "vhdx", "-r",
		"-c", "read -P 0xab 5M 4k",
		"-c", "read -P 0xcd 100k 1k",
		"-c", "read -P 0 6M 1M",
		path)
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
