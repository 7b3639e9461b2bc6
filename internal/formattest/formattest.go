// Package formattest holds the test helpers the disk-format packages under
// pkg/formats share: the boot disk they write, sparse test disks, running
// the external oracles (qemu-img, QEMU, 7-Zip, libvhdi) and comparing what
// those give back with the source disk.
//
// It is imported only from _test.go files. It must not import pkg/formats
// or any of its sub-packages, which import it from their tests: that would
// be an import cycle. Every external tool is found through
// tooltest.Require, so a missing tool fails under TINYVM_REQUIRE_TOOLS=1.
package formattest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/efi"
)

// BootSector is the project's default VM: the boot sector that prints the
// serial marker and powers off.
func BootSector(t testing.TB) []byte {
	t.Helper()
	s, err := sector.Build(sector.Options{Then: sector.PowerOff})
	if err != nil {
		t.Fatal(err)
	}
	return s.Bytes()
}

// BootDisk is BootSector at offset 0 of a disk of size bytes, zeros after.
func BootDisk(t testing.TB, size int64) disk.Disk {
	t.Helper()
	d, err := disk.New(BootSector(t), size)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// UniversalDisk is the project's default disk of size bytes: the GPT disk
// whose protective MBR holds the 440-byte BIOS program and whose ESP holds
// the x86-64 and AArch64 EFI applications, all printing the serial marker
// and powering off. It boots on SeaBIOS, OVMF and AAVMF.
func UniversalDisk(t testing.TB, size int64) disk.Disk {
	t.Helper()
	o := sector.Options{Then: sector.PowerOff, Layout: sector.Partitioned}
	s, err := sector.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	var files []fat.File
	for _, a := range efi.Arches {
		app, err := efi.Build(o, a)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fat.File{Path: a.BootPath(), Data: app})
	}
	d, err := universal.New(s.Code(), files, size)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Scattered returns a disk of size bytes holding single bytes at the
// offsets of spots, zeros elsewhere. It deliberately does not implement
// disk.Extenter, so writers take the path that reads the whole disk.
func Scattered(size int64, spots map[int64]byte) disk.Disk {
	return &scattered{size: size, spots: spots}
}

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

// WriteFile creates path, fills it with write and closes it, failing the
// test on any error. It returns path so calls can be nested.
func WriteFile(t testing.TB, path string, write func(io.Writer) error) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(f); err != nil {
		f.Close()
		t.Fatalf("write %s: %v", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// RawWriter is raw.Write's signature. The caller passes raw.Write in,
// because this package may not import pkg/formats/raw.
type RawWriter func(io.Writer, disk.Disk) (int64, error)

// WriteRaw writes d to path with write (raw.Write): a sparse raw file, the
// reference the oracles compare images with. It returns path.
func WriteRaw(t testing.TB, path string, d disk.Disk, write RawWriter) string {
	t.Helper()
	return WriteFile(t, path, func(w io.Writer) error {
		_, err := write(w, d)
		return err
	})
}

// Run runs a tool and returns its standard output. A failure fails the
// test with both outputs, so the tool's complaint is in the log.
func Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// QemuInfo is the part of `qemu-img info --output=json` the tests read.
type QemuInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ClusterSize int64  `json:"cluster-size"`
}

// ImgInfo runs `qemu-img info` on path, read with driver.
func ImgInfo(t testing.TB, qemuImg, driver, path string) QemuInfo {
	t.Helper()
	var qi QemuInfo
	if err := json.Unmarshal(Run(t, qemuImg, "info", "--output=json", "-f", driver, path), &qi); err != nil {
		t.Fatal(err)
	}
	return qi
}

// MapEntry is one range of `qemu-img map --output=json`.
type MapEntry struct {
	Start  int64  `json:"start"`
	Length int64  `json:"length"`
	Data   bool   `json:"data"`
	Zero   bool   `json:"zero"`
	Offset *int64 `json:"offset"`
}

// ImgMap runs `qemu-img map` on path, read with driver.
func ImgMap(t testing.TB, qemuImg, driver, path string) []MapEntry {
	t.Helper()
	var m []MapEntry
	if err := json.Unmarshal(Run(t, qemuImg, "map", "--output=json", "-f", driver, path), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// SameAsDisk compares the file at path with d byte for byte, over the
// whole virtual size, and names the first byte that differs.
func SameAsDisk(t testing.TB, path string, d disk.Disk) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != d.Size() {
		t.Fatalf("%s is %d bytes, want %d", path, st.Size(), d.Size())
	}
	const chunk = 4 << 20
	a, b := make([]byte, chunk), make([]byte, chunk)
	for off := int64(0); off < d.Size(); off += chunk {
		n := min(chunk, d.Size()-off)
		if _, err := f.ReadAt(a[:n], off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if _, err := d.ReadAt(b[:n], off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(a[:n], b[:n]) {
			for i := range n {
				if a[i] != b[i] {
					t.Fatalf("%s differs from the disk at byte %d", path, off+i)
				}
			}
		}
	}
}

// ConvertedSameAsDisk converts path to raw with qemu-img and compares the
// result with d by SameAsDisk: the round trip every format must survive.
func ConvertedSameAsDisk(t testing.TB, qemuImg, driver, path string, d disk.Disk) {
	t.Helper()
	out := filepath.Join(filepath.Dir(path), "back.raw")
	Run(t, qemuImg, "convert", "-f", driver, "-O", "raw", path, out)
	defer os.Remove(out)
	SameAsDisk(t, out, d)
}

// SameFiles streams two files and fails at the first MiB where they
// differ, their lengths included.
func SameFiles(t testing.TB, a, b string) {
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
	const mib = 1 << 20
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

// FileSize returns the size of the file at path.
func FileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// Boot boots o.File in QEMU with o's driver, machine and bus, and expects
// the boot sector's serial marker; the guest powers itself off. It fails
// (or skips) through tooltest.Require when QEMU is missing.
func Boot(t testing.TB, o qemu.Options) {
	t.Helper()
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	serial := &syncBuffer{}
	o.Serial = serial
	if err := qemu.Run(ctx, o); err != nil {
		t.Fatalf("boot %s on %s+%s: %v (serial %q)", o.Driver, o.Machine, o.Bus, err, serial.String())
	}
	if !strings.Contains(serial.String(), sector.DefaultSerial) {
		t.Fatalf("boot %s on %s+%s: serial %q lacks %q", o.Driver, o.Machine, o.Bus, serial.String(), sector.DefaultSerial)
	}
}

// syncBuffer collects the guest's serial output, which QEMU's stdout is
// copied into from another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// CountWriter counts the bytes written to it and keeps none, so a
// benchmark measures the writer, not the storage.
type CountWriter int64

// Write counts p.
func (c *CountWriter) Write(p []byte) (int, error) {
	*c += CountWriter(len(p))
	return len(p), nil
}

// BenchWrite runs write as the benchmark's loop into a CountWriter and
// reports the file's size as the "file-bytes" metric, so the benchmarks
// of every format compare output sizes the same way.
func BenchWrite(b *testing.B, write func(io.Writer) error) {
	b.Helper()
	var n CountWriter
	for b.Loop() {
		n = 0
		if err := write(&n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "file-bytes")
}
