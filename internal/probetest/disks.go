package probetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/qcow2"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// diskSize is the size of every probe disk and blank disk: 1 MiB.
const diskSize = 1 << 20

// UniversalDisk builds the universal disk as pkg/build composes it: the
// BIOS program (Partitioned, with o's probes) in the MBR, its second
// stage and the boot counter in the gap before the ESP, and files on
// the ESP (the EFI applications, or a placeholder for BIOS-only tests).
func UniversalDisk(t testing.TB, o sector.Options, files ...fat.File) disk.Disk {
	t.Helper()
	o.Layout = sector.Partitioned
	s, err := sector.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	var opts []universal.Option
	for _, r := range s.Reserved() {
		opts = append(opts, universal.WithReserved(r.LBA, r.Data))
	}
	d, err := universal.New(s.Code(), files, diskSize, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// WriteRaw writes d as a raw file in the test's temporary directory.
func WriteRaw(t testing.TB, d disk.Disk) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := raw.Write(f, d); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteQcow2 writes d as a qcow2 file with pkg/formats/qcow2.
func WriteQcow2(t testing.TB, d disk.Disk, o qcow2.Options) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := qcow2.Write(f, d, o); err != nil {
		t.Fatal(err)
	}
	return path
}

// BlankDisk writes a zero-filled raw disk of 1 MiB, a data disk the
// disks probe counts.
func BlankDisk(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "blank.raw")
	if err := os.WriteFile(path, make([]byte, diskSize), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// WipeCounter zeroes the boot counter sector of the raw file path, as
// if another program owned it.
func WipeCounter(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, disk.SectorSize), sector.BootCountLBA*disk.SectorSize); err != nil {
		t.Fatal(err)
	}
}

// LabelledISO makes an ISO 9660 image with volume label label, the way
// cloud-init's NoCloud seed (cidata) or a config drive (config-2) is
// made, with xorriso.
func LabelledISO(t testing.TB, label string) string {
	t.Helper()
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(seed, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"meta-data": "instance-id: tinyvm\n", "user-data": "#cloud-config\n"} {
		if err := os.WriteFile(filepath.Join(seed, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, label+".iso")
	tool(t, "xorriso", tooltest.Xorriso, "-as", "mkisofs", "-quiet", "-V", label, "-J", "-r", "-o", path, seed)
	return path
}

// Img runs qemu-img with args.
func Img(t testing.TB, args ...string) {
	t.Helper()
	tool(t, "qemu-img", tooltest.QemuUtils, args...)
}

// OfflineCount reads the boot counter from an image in any format
// qemu-img reads, as inspect does from a raw file: qemu-img, not our
// reader, undoes the format.
func OfflineCount(t testing.TB, path, format string) uint32 {
	t.Helper()
	if format != "raw" {
		raw := filepath.Join(t.TempDir(), "offline.raw")
		Img(t, "convert", "-f", format, "-O", "raw", path, raw)
		path = raw
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, ok, err := sector.ReadBootCount(f)
	if err != nil || !ok {
		t.Fatalf("ReadBootCount(%s) = %d, %v, %v", path, n, ok, err)
	}
	return n
}
