package ova_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/ova"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vmdk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

const (
	MiB = int64(1) << 20
	GiB = int64(1) << 30
	TiB = int64(1) << 40
)

var stamp = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func build(t testing.TB, size int64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := ova.Write(&b, formattest.BootDisk(t, size), ova.Options{Time: stamp}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return b.Bytes()
}

// ovfDoc is what the test checks in the descriptor.
type ovfDoc struct {
	XMLName    xml.Name
	References []struct {
		Href string `xml:"http://schemas.dmtf.org/ovf/envelope/1 href,attr"`
		ID   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 id,attr"`
		Size int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 size,attr"`
	} `xml:"http://schemas.dmtf.org/ovf/envelope/1 References>File"`
	Disks []struct {
		Capacity int64  `xml:"http://schemas.dmtf.org/ovf/envelope/1 capacity,attr"`
		DiskID   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 diskId,attr"`
		FileRef  string `xml:"http://schemas.dmtf.org/ovf/envelope/1 fileRef,attr"`
		Format   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 format,attr"`
	} `xml:"http://schemas.dmtf.org/ovf/envelope/1 DiskSection>Disk"`
	Systems []struct {
		ID    string `xml:"http://schemas.dmtf.org/ovf/envelope/1 id,attr"`
		Type  string `xml:"http://schemas.dmtf.org/ovf/envelope/1 VirtualHardwareSection>System>VirtualSystemType"`
		Items []struct {
			ResourceType    int    `xml:"ResourceType"`
			VirtualQuantity int64  `xml:"VirtualQuantity"`
			AllocationUnits string `xml:"AllocationUnits"`
			HostResource    string `xml:"HostResource"`
			Parent          string `xml:"Parent"`
			InstanceID      string `xml:"InstanceID"`
		} `xml:"http://schemas.dmtf.org/ovf/envelope/1 VirtualHardwareSection>Item"`
	} `xml:"http://schemas.dmtf.org/ovf/envelope/1 VirtualSystem"`
}

// TestOVA extracts the archive with GNU tar and checks the order, the
// headers, the manifest, the OVF, and the disk with qemu-img.
func TestOVA(t *testing.T) {
	tarBin := tooltest.Require(t, "tar", "apt-get install tar")
	img := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	names := ova.MemberNames("")
	for _, size := range []int64{MiB, GiB} {
		t.Run(fmt.Sprintf("%dMiB", size>>20), func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "a.ova")
			if err := os.WriteFile(file, build(t, size), 0o644); err != nil {
				t.Fatal(err)
			}
			// Order and headers, as GNU tar reads them.
			list := formattest.Run(t, tarBin, "--list", "--verbose", "--numeric-owner", "--full-time", "-f", file)
			lines := strings.Split(strings.TrimSpace(string(list)), "\n")
			want := []string{names.OVF, names.Disk, names.Manifest}
			if len(lines) != len(want) {
				t.Fatalf("tar lists %q", list)
			}
			for i, l := range lines {
				f := strings.Fields(l)
				if len(f) != 6 || f[0] != "-rw-r--r--" || f[1] != "0/0" || f[3]+" "+f[4] != "2024-01-01 00:00:00" || f[5] != want[i] {
					t.Errorf("member %d: %q, want -rw-r--r-- 0/0 2024-01-01 00:00:00 %s", i, l, want[i])
				}
			}
			formattest.Run(t, tarBin, "-x", "-C", dir, "-f", file)

			// The disk is one contiguous member that importers can read in
			// place: qemu-img reads it at the offset GNU tar reports.
			blocks := formattest.Run(t, tarBin, "--list", "--block-number", "-f", file)
			var block int64
			for _, l := range strings.Split(string(blocks), "\n") {
				if strings.HasSuffix(l, " "+names.Disk) {
					fmt.Sscanf(l, "block %d:", &block)
				}
			}
			if block == 0 {
				t.Fatalf("tar --block-number does not list %s: %s", names.Disk, blocks)
			}
			diskInfo, _ := os.Stat(filepath.Join(dir, names.Disk))
			inPlace := fmt.Sprintf(`json:{"driver":"vmdk","file":{"driver":"raw","offset":%d,"size":%d,"file":{"driver":"file","filename":%q}}}`,
				(block+1)*512, diskInfo.Size(), file)
			if out := formattest.Run(t, img, "check", inPlace); !strings.Contains(string(out), "No errors") {
				t.Errorf("qemu-img check in place: %s", out)
			}

			// Manifest digests.
			mf, err := os.ReadFile(filepath.Join(dir, names.Manifest))
			if err != nil {
				t.Fatal(err)
			}
			var wantMF strings.Builder
			for _, n := range []string{names.OVF, names.Disk} {
				b, err := os.ReadFile(filepath.Join(dir, n))
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&wantMF, "SHA256(%s)= %x\n", n, sha256.Sum256(b))
			}
			if string(mf) != wantMF.String() {
				t.Errorf("manifest:\n%s\nwant:\n%s", mf, wantMF.String())
			}

			// The OVF.
			ovfBytes, _ := os.ReadFile(filepath.Join(dir, names.OVF))
			var doc ovfDoc
			if err := xml.Unmarshal(ovfBytes, &doc); err != nil {
				t.Fatalf("OVF is not XML: %v", err)
			}
			if doc.XMLName.Space != "http://schemas.dmtf.org/ovf/envelope/1" || doc.XMLName.Local != "Envelope" {
				t.Errorf("root element %v, want the OVF 1.0 Envelope", doc.XMLName)
			}
			fi, _ := os.Stat(filepath.Join(dir, names.Disk))
			if len(doc.References) != 1 || doc.References[0].Href != names.Disk || doc.References[0].Size != fi.Size() {
				t.Errorf("References %+v, want %s of %d bytes", doc.References, names.Disk, fi.Size())
			}
			if len(doc.Disks) != 1 || doc.Disks[0].Capacity != size || doc.Disks[0].FileRef != doc.References[0].ID ||
				!strings.HasSuffix(doc.Disks[0].Format, "#streamOptimized") {
				t.Errorf("Disks %+v, want capacity %d", doc.Disks, size)
			}
			if len(doc.Systems) != 1 {
				t.Fatalf("%d virtual systems", len(doc.Systems))
			}
			kinds := map[int]int{}
			var memMiB int64
			for _, it := range doc.Systems[0].Items {
				kinds[it.ResourceType]++
				if it.ResourceType == 4 && it.AllocationUnits == "byte * 2^20" {
					memMiB = it.VirtualQuantity
				}
				if it.ResourceType == 17 && it.HostResource != "ovf:/disk/"+doc.Disks[0].DiskID {
					t.Errorf("disk item host resource %q", it.HostResource)
				}
			}
			if kinds[3] != 1 || kinds[4] != 1 || kinds[5]+kinds[6] != 1 || kinds[17] != 1 || memMiB < 16 {
				t.Errorf("hardware: resource types %v, memory %d MiB", kinds, memMiB)
			}

			// The disk.
			vm := filepath.Join(dir, names.Disk)
			var qi struct {
				Format      string `json:"format"`
				VirtualSize int64  `json:"virtual-size"`
			}
			if err := json.Unmarshal(formattest.Run(t, img, "info", "--output=json", vm), &qi); err != nil {
				t.Fatal(err)
			}
			if qi.Format != "vmdk" || qi.VirtualSize != size {
				t.Errorf("qemu-img info: %+v", qi)
			}
			formattest.Run(t, img, "check", "-f", "vmdk", vm)
			ref := filepath.Join(dir, "ref.raw")
			f, _ := os.Create(ref)
			if _, err := raw.Write(f, formattest.BootDisk(t, size)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if out := formattest.Run(t, img, "compare", "-f", "raw", "-F", "vmdk", ref, vm); !strings.Contains(string(out), "identical") {
				t.Errorf("qemu-img compare: %s", out)
			}
		})
	}
}

// TestBootExtracted boots the VMDK taken from the archive.
func TestBootExtracted(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	tr := tar.NewReader(bytes.NewReader(build(t, MiB)))
	path := filepath.Join(t.TempDir(), "disk.vmdk")
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no disk in the archive: %v", err)
		}
		if h.Name == ova.MemberNames("").Disk {
			b, _ := io.ReadAll(tr)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	formattest.Boot(t, qemu.Options{File: path, Driver: "vmdk"})
}

func TestDeterministic(t *testing.T) {
	a, b := build(t, MiB), build(t, MiB)
	if !bytes.Equal(a, b) {
		t.Error("two writes differ")
	}
	var c bytes.Buffer
	if err := ova.Write(&c, formattest.BootDisk(t, MiB), ova.Options{Time: stamp.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c.Bytes()) {
		t.Error("a different time gives the same bytes")
	}
	if err := ova.Write(io.Discard, formattest.BootDisk(t, MiB), ova.Options{Time: time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)}); !errors.Is(err, ova.ErrTime) {
		t.Errorf("time before 1970: %v", err)
	}
	if err := ova.Write(io.Discard, formattest.BootDisk(t, MiB+512), ova.Options{Time: stamp}); !errors.Is(err, vmdk.ErrSize) {
		t.Errorf("size not a multiple of the grain: %v", err)
	}
}

func TestInspect(t *testing.T) {
	names := ova.MemberNames("")
	for _, size := range []int64{MiB, GiB, TiB} {
		file := build(t, size)
		if !ova.Detect(file[:512], bytes.NewReader(file), int64(len(file))) {
			t.Errorf("Detect(%d) = false", size)
		}
		got, err := ova.Inspect(bytes.NewReader(file), int64(len(file)))
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		want := info.Info{Format: ova.Type, Subformat: vmdk.StreamOptimized, VirtualSize: size, FileSize: int64(len(file)),
			BlockSize: vmdk.GrainSize, Allocated: vmdk.GrainSize, Compressed: true,
			Files: []string{names.OVF, names.Disk, names.Manifest},
			// The disk member's data starts at the VMDK magic, and its size
			// is the tar header's.
			DiskOffset: int64(bytes.Index(file, []byte("KDMV"))), DiskSize: memberSize(t, file, names.Disk)}
		if fmt.Sprint(*got) != fmt.Sprint(want) {
			t.Errorf("Inspect(%d):\n got %+v\nwant %+v", size, *got, want)
		}
	}
	var v bytes.Buffer
	if err := vmdk.Write(&v, formattest.BootDisk(t, MiB), vmdk.Options{}); err != nil {
		t.Fatal(err)
	}
	if ova.Detect(v.Bytes()[:512], nil, int64(v.Len())) {
		t.Error("Detect takes a VMDK for an OVA")
	}
}

func TestInspectCorrupt(t *testing.T) {
	file := build(t, MiB)
	for _, n := range []int{0, 100, 512, 1024, 3000, len(file) / 2, len(file) - 1024 - 600} {
		if _, err := ova.Inspect(bytes.NewReader(file[:n]), int64(n)); !errors.Is(err, info.ErrCorrupt) {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
	bad := bytes.Replace(file, []byte(`xmlns="http://schemas.dmtf.org/ovf/envelope/1"`), []byte(`xmlns="http://schemas.dmtf.org/ovf/envelope/2"`), 1)
	if _, err := ova.Inspect(bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, info.ErrCorrupt) {
		t.Errorf("OVF 2.0 namespace: %v", err)
	}
}

func FuzzInspect(f *testing.F) {
	f.Add(build(f, MiB))
	f.Add(build(f, GiB))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ova.Inspect(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if got.VirtualSize <= 0 || len(got.Files) == 0 {
			t.Fatalf("bad facts: %+v", got)
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int64
	}{{"1MiB", MiB}, {"1TiB", TiB}} {
		b.Run(bc.name, func(b *testing.B) {
			d := formattest.BootDisk(b, bc.size)
			formattest.BenchWrite(b, func(w io.Writer) error { return ova.Write(w, d, ova.Options{Time: stamp}) })
		})
	}
}

// memberSize reads a member's size from the tar headers with archive/tar.
func memberSize(t *testing.T, file []byte, name string) int64 {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(file))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("member %s: %v", name, err)
		}
		if h.Name == name {
			return h.Size
		}
	}
}

// TestMutants is FuzzInspect's deterministic counterpart: the tar headers,
// the OVF and the VMDK inside are all within the hot first 8 KiB.
func TestMutants(t *testing.T) {
	seeds := [][]byte{build(t, MiB), build(t, GiB)}
	formattest.MutationTest(t, seeds, []int{0, 512, 1024, 2048, 4096}, 3000, ova.Inspect, func(size int64) int64 { return 3*size + 64<<10 })
}

// TestSparseCost inspects the OVA of a 2 TiB disk as a sparse file: the
// VMDK's grain directory inside the tar is mostly zeros, holes that the
// VMDK reader skips through the archive member, so the bytes read follow
// the bytes stored.
func TestSparseCost(t *testing.T) {
	var w formattest.SparseWriter
	if err := ova.Write(&w, formattest.BootDisk(t, 2*TiB), ova.Options{Time: stamp}); err != nil {
		t.Fatal(err)
	}
	f := &w.File
	c := &formattest.Counter{R: f}
	inf, err := ova.Inspect(c, f.Len)
	if err != nil {
		t.Fatal(err)
	}
	if inf.VirtualSize != 2*TiB {
		t.Errorf("info %+v", inf)
	}
	if c.Bytes > 2*f.Stored()+64<<10 {
		t.Errorf("read %d bytes of a file storing %d (apparent size %d)", c.Bytes, f.Stored(), f.Len)
	}
	t.Logf("read %d bytes in %d calls; the file stores %d of %d", c.Bytes, c.Calls, f.Stored(), f.Len)
}
