package vdi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// bootDisk is the project's VM: the power-off boot sector at offset 0.
func bootDisk(t testing.TB, size int64) disk.Disk {
	t.Helper()
	s, err := sector.Build(sector.Options{Then: sector.PowerOff})
	if err != nil {
		t.Fatal(err)
	}
	d, err := disk.New(s.Bytes(), size)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// scattered is a disk with data in several blocks, including a partial
// last block, to exercise the block map beyond block 0.
type scattered struct {
	size  int64
	spots map[int64]byte // offset -> byte
}

func (s *scattered) Size() int64 { return s.size }

func (s *scattered) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), s.size-off)
	clear(p[:n])
	for o, b := range s.spots {
		if o >= off && o < off+n {
			p[o-off] = b
		}
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// writeFile writes the disk with write into dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, write func(io.Writer) error) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(f); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeRaw writes d as a sparse raw file, the reference for qemu-img.
func writeRaw(t testing.TB, dir string, d disk.Disk) string {
	return writeFile(t, dir, "ref.raw", func(w io.Writer) error {
		_, err := raw.Write(w, d)
		return err
	})
}

// run runs a tool and returns its stdout, failing the test on error.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// qemuInfo is the part of `qemu-img info --output=json` the tests read.
type qemuInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ClusterSize int64  `json:"cluster-size"`
}

func imgInfo(t testing.TB, qemuImg, driver, path string) qemuInfo {
	t.Helper()
	var qi qemuInfo
	if err := json.Unmarshal(run(t, qemuImg, "info", "--output=json", "-f", driver, path), &qi); err != nil {
		t.Fatal(err)
	}
	return qi
}

// mapEntry is one range of `qemu-img map --output=json`.
type mapEntry struct {
	Start  int64  `json:"start"`
	Length int64  `json:"length"`
	Data   bool   `json:"data"`
	Zero   bool   `json:"zero"`
	Offset *int64 `json:"offset"`
}

func imgMap(t testing.TB, qemuImg, driver, path string) []mapEntry {
	t.Helper()
	var m []mapEntry
	if err := json.Unmarshal(run(t, qemuImg, "map", "--output=json", "-f", driver, path), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// sameAsDisk converts path to raw with qemu-img and compares it with d
// byte for byte, over the whole virtual size.
func sameAsDisk(t testing.TB, qemuImg, driver, path string, d disk.Disk) {
	t.Helper()
	out := filepath.Join(filepath.Dir(path), "back.raw")
	run(t, qemuImg, "convert", "-f", driver, "-O", "raw", path, out)
	defer os.Remove(out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != d.Size() {
		t.Fatalf("qemu-img convert -O raw gave %d bytes, want %d", st.Size(), d.Size())
	}
	const chunk = 4 << 20
	got, want := make([]byte, chunk), make([]byte, chunk)
	for off := int64(0); off < d.Size(); off += chunk {
		n := min(chunk, d.Size()-off)
		if _, err := io.ReadFull(io.NewSectionReader(f, off, n), got[:n]); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ReadAt(want[:n], off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:n], want[:n]) {
			t.Fatalf("qemu-img convert -O raw differs from the disk in the %d bytes at %d", n, off)
		}
	}
}

// boot runs the image in QEMU and expects the boot sector's serial marker.
func boot(t *testing.T, path, driver, machine, bus string) {
	t.Helper()
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var serial bytes.Buffer
	err := qemu.Run(ctx, qemu.Options{File: path, Driver: driver, Machine: machine, Bus: bus, Serial: &serial})
	if err != nil {
		t.Fatalf("boot %s on %s+%s: %v (serial %q)", driver, machine, bus, err, serial.String())
	}
	if !strings.Contains(serial.String(), sector.DefaultSerial) {
		t.Fatalf("boot %s on %s+%s: serial %q lacks %q", driver, machine, bus, serial.String(), sector.DefaultSerial)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
