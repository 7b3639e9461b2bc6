package vmdk_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vmdk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

const (
	MiB = int64(1) << 20
	GiB = int64(1) << 30
	TiB = int64(1) << 40
)

var subformats = []string{vmdk.MonolithicSparse, vmdk.StreamOptimized}

// writeFile writes d to path as a VMDK with options o.
func writeFile(t testing.TB, path string, d disk.Disk, o vmdk.Options) {
	t.Helper()
	formattest.WriteFile(t, path, func(w io.Writer) error { return vmdk.Write(w, d, o) })
}

type qemuInfo struct {
	Format         string `json:"format"`
	VirtualSize    int64  `json:"virtual-size"`
	FormatSpecific struct {
		Data struct {
			CreateType string `json:"create-type"`
			Extents    []struct {
				Compressed  bool  `json:"compressed"`
				ClusterSize int64 `json:"cluster-size"`
			} `json:"extents"`
		} `json:"data"`
	} `json:"format-specific"`
}

type mapEntry struct {
	Start   int64 `json:"start"`
	Length  int64 `json:"length"`
	Present bool  `json:"present"`
	Zero    bool  `json:"zero"`
	Data    bool  `json:"data"`
}

func qemuMap(t *testing.T, img, path string) []mapEntry {
	t.Helper()
	var m []mapEntry
	if err := json.Unmarshal(formattest.Run(t, img, "map", "--output=json", "-f", "vmdk", path), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestQemuImg checks both subformats at 1 MiB and 1 GiB against qemu-img:
// info, check, compare with the raw, convert back to raw byte for byte,
// the same map and allocation as qemu-img's own VMDK of the same raw, and
// a file no larger than qemu-img's.
func TestQemuImg(t *testing.T) {
	img := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, size := range []int64{MiB, GiB} {
		for _, sub := range subformats {
			t.Run(fmt.Sprintf("%s/%dMiB", sub, size>>20), func(t *testing.T) {
				dir := t.TempDir()
				d := formattest.BootDisk(t, size)
				ours, ref := filepath.Join(dir, "ours.vmdk"), filepath.Join(dir, "ref.raw")
				writeFile(t, ours, d, vmdk.Options{Subformat: sub, ExtentName: "ours.vmdk"})
				formattest.WriteRaw(t, ref, d, raw.Write)

				var qi qemuInfo
				if err := json.Unmarshal(formattest.Run(t, img, "info", "--output=json", ours), &qi); err != nil {
					t.Fatal(err)
				}
				if qi.Format != "vmdk" || qi.VirtualSize != size {
					t.Errorf("qemu-img info: format %q, virtual size %d; want vmdk, %d", qi.Format, qi.VirtualSize, size)
				}
				if qi.FormatSpecific.Data.CreateType != sub {
					t.Errorf("qemu-img info: create type %q, want %q", qi.FormatSpecific.Data.CreateType, sub)
				}
				if e := qi.FormatSpecific.Data.Extents; len(e) != 1 || e[0].ClusterSize != vmdk.GrainSize || e[0].Compressed != (sub == vmdk.StreamOptimized) {
					t.Errorf("qemu-img info: extents %+v", e)
				}
				formattest.Run(t, img, "check", "-f", "vmdk", ours)
				out := formattest.Run(t, img, "compare", "-f", "raw", "-F", "vmdk", ref, ours)
				if !strings.Contains(string(out), "identical") {
					t.Errorf("qemu-img compare: %s", out)
				}
				back := filepath.Join(dir, "back.raw")
				formattest.Run(t, img, "convert", "-f", "vmdk", "-O", "raw", ours, back)
				formattest.SameFiles(t, ref, back)

				// qemu-img's own VMDK of the same raw: same allocation
				// (compare -s), same map, and a file at least as big.
				theirs := filepath.Join(dir, "theirs.vmdk")
				formattest.Run(t, img, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+sub, ref, theirs)
				out = formattest.Run(t, img, "compare", "-s", "-f", "vmdk", "-F", "vmdk", theirs, ours)
				if !strings.Contains(string(out), "identical") {
					t.Errorf("qemu-img compare -s with qemu-img's VMDK: %s", out)
				}
				if a, b := qemuMap(t, img, ours), qemuMap(t, img, theirs); fmt.Sprint(a) != fmt.Sprint(b) {
					t.Errorf("qemu-img map: ours %+v, qemu-img's %+v", a, b)
				}
				so, _ := os.Stat(ours)
				st, _ := os.Stat(theirs)
				t.Logf("size: ours %d B, qemu-img's %d B", so.Size(), st.Size())
				if so.Size() > st.Size() {
					t.Errorf("our file is %d B, qemu-img's %d B", so.Size(), st.Size())
				}
			})
		}
	}
}

// TestQemuWritesEverywhere shows why monolithicSparse allocates every
// grain table: QEMU must be able to write anywhere in the disk, here in
// the last grain of a 1 GiB disk, far from the only table with data.
func TestQemuWritesEverywhere(t *testing.T) {
	img := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	qio := tooltest.Require(t, "qemu-io", tooltest.QemuUtils)
	path := filepath.Join(t.TempDir(), "w.vmdk")
	writeFile(t, path, formattest.BootDisk(t, GiB), vmdk.Options{})
	off := fmt.Sprint(GiB - vmdk.GrainSize)
	formattest.Run(t, qio, "-f", "vmdk", "-c", "write -P 0x5a "+off+" 4k", path)
	out := formattest.Run(t, qio, "-f", "vmdk", "-c", "read -P 0x5a "+off+" 4k", path)
	if strings.Contains(string(out), "fail") || strings.Contains(string(out), "error") {
		t.Fatalf("qemu-io read back: %s", out)
	}
	formattest.Run(t, img, "check", "-f", "vmdk", path)
}

// TestBoot boots both subformats in QEMU with the vmdk driver.
func TestBoot(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	for _, sub := range subformats {
		for _, m := range []struct{ machine, bus string }{{"pc", "ide"}, {"q35", "virtio"}} {
			t.Run(sub+"/"+m.machine+"+"+m.bus, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "boot.vmdk")
				writeFile(t, path, formattest.BootDisk(t, MiB), vmdk.Options{Subformat: sub})
				formattest.Boot(t, qemu.Options{File: path, Driver: "vmdk", Machine: m.machine, Bus: m.bus})
			})
		}
	}
}

func TestErrors(t *testing.T) {
	d := formattest.BootDisk(t, MiB+512)
	err := vmdk.Write(io.Discard, d, vmdk.Options{})
	if !errors.Is(err, vmdk.ErrSize) || !strings.Contains(err.Error(), "vmdk: size must be a multiple of the 64 KiB grain") {
		t.Errorf("size not a multiple of the grain: %v", err)
	}
	err = vmdk.Write(io.Discard, formattest.BootDisk(t, MiB), vmdk.Options{Subformat: "twoGbMaxExtentSparse"})
	if !errors.Is(err, vmdk.ErrSubformat) || !strings.Contains(err.Error(), "monolithicSparse") || !strings.Contains(err.Error(), "streamOptimized") {
		t.Errorf("unknown subformat: %v", err)
	}
	err = vmdk.Write(io.Discard, formattest.BootDisk(t, 4*TiB), vmdk.Options{})
	if !errors.Is(err, vmdk.ErrTooLarge) {
		t.Errorf("4 TiB: %v", err)
	}
	// Errors from the destination are returned.
	err = vmdk.Write(failWriter{}, formattest.BootDisk(t, MiB), vmdk.Options{Subformat: vmdk.StreamOptimized})
	if !errors.Is(err, errFail) {
		t.Errorf("failing writer: %v", err)
	}
}

var errFail = errors.New("write failed")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errFail }

// TestDeterministic: the same input gives the same bytes, and a different
// content gives a different CID.
func TestDeterministic(t *testing.T) {
	for _, sub := range subformats {
		var a, b, c bytes.Buffer
		o := vmdk.Options{Subformat: sub}
		if err := vmdk.Write(&a, formattest.BootDisk(t, MiB), o); err != nil {
			t.Fatal(err)
		}
		if err := vmdk.Write(&b, formattest.BootDisk(t, MiB), o); err != nil {
			t.Fatal(err)
		}
		other, _ := disk.New([]byte("other"), MiB)
		if err := vmdk.Write(&c, other, o); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s: two writes differ", sub)
		}
		if cid(t, a.Bytes()) == cid(t, c.Bytes()) {
			t.Errorf("%s: different disks share CID %s", sub, cid(t, a.Bytes()))
		}
	}
}

func cid(t *testing.T, file []byte) string {
	t.Helper()
	desc := string(file[512 : 21*512])
	i := strings.Index(desc, "\nCID=")
	if i < 0 {
		t.Fatalf("no CID in descriptor %q", desc)
	}
	return desc[i+5 : i+13]
}

// TestInspect checks Inspect on our files and on qemu-img's own.
func TestInspect(t *testing.T) {
	img := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, sub := range subformats {
		for _, size := range []int64{MiB, GiB} {
			dir := t.TempDir()
			d := formattest.BootDisk(t, size)
			ours, ref, theirs := filepath.Join(dir, "ours.vmdk"), filepath.Join(dir, "ref.raw"), filepath.Join(dir, "theirs.vmdk")
			writeFile(t, ours, d, vmdk.Options{Subformat: sub})
			formattest.WriteRaw(t, ref, d, raw.Write)
			formattest.Run(t, img, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+sub, ref, theirs)
			for _, path := range []string{ours, theirs} {
				got := inspectFile(t, path)
				fi, _ := os.Stat(path)
				want := info.Info{Format: vmdk.Type, Subformat: sub, VirtualSize: size, FileSize: fi.Size(),
					BlockSize: vmdk.GrainSize, Allocated: vmdk.GrainSize, Compressed: sub == vmdk.StreamOptimized}
				if fmt.Sprint(*got) != fmt.Sprint(want) {
					t.Errorf("Inspect(%s %s %d):\n got %+v\nwant %+v", filepath.Base(path), sub, size, *got, want)
				}
			}
		}
	}
}

func inspectFile(t *testing.T, path string) *info.Info {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	head := make([]byte, 512)
	f.ReadAt(head, 0)
	if !vmdk.Detect(head, f, fi.Size()) {
		t.Errorf("Detect(%s) = false", path)
	}
	got, err := vmdk.Inspect(f, fi.Size())
	if err != nil {
		t.Fatalf("Inspect(%s): %v", path, err)
	}
	return got
}

// TestInspectCorrupt truncates and damages our files.
func TestInspectCorrupt(t *testing.T) {
	for _, sub := range subformats {
		var b bytes.Buffer
		if err := vmdk.Write(&b, formattest.BootDisk(t, MiB), vmdk.Options{Subformat: sub}); err != nil {
			t.Fatal(err)
		}
		file := b.Bytes()
		for _, n := range []int{0, 3, 511, 512, 4096, len(file) - 512} {
			if _, err := vmdk.Inspect(bytes.NewReader(file[:n]), int64(n)); !errors.Is(err, info.ErrCorrupt) {
				t.Errorf("%s truncated to %d: %v", sub, n, err)
			}
		}
		bad := bytes.Clone(file)
		bad[4] = 9 // version
		if _, err := vmdk.Inspect(bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, info.ErrCorrupt) {
			t.Errorf("%s version 9: %v", sub, err)
		}
	}
}

func FuzzInspect(f *testing.F) {
	for _, sub := range subformats {
		for _, size := range []int64{MiB, GiB} {
			var b bytes.Buffer
			if err := vmdk.Write(&b, formattest.BootDisk(f, size), vmdk.Options{Subformat: sub}); err != nil {
				f.Fatal(err)
			}
			f.Add(b.Bytes())
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := vmdk.Inspect(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if got.VirtualSize <= 0 || got.Allocated < 0 || got.FileSize != int64(len(data)) {
			t.Fatalf("bad facts: %+v", got)
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	for _, sub := range subformats {
		for _, bc := range []struct {
			name string
			size int64
		}{{"1MiB", MiB}, {"1TiB", TiB}} {
			b.Run(sub+"/"+bc.name, func(b *testing.B) {
				d := formattest.BootDisk(b, bc.size)
				formattest.BenchWrite(b, func(w io.Writer) error { return vmdk.Write(w, d, vmdk.Options{Subformat: sub}) })
			})
		}
	}
}

// TestTableRows: the vmdk and ova rows mark a size they cannot hold as
// formats.ErrSize, so a default build leaves them out with a warning.
func TestTableRows(t *testing.T) {
	for _, typ := range []string{"vmdk", "ova"} {
		f, err := formats.Lookup(typ)
		if err != nil {
			t.Fatal(err)
		}
		err = f.Write(io.Discard, formattest.BootDisk(t, 512), formats.Options{})
		if !errors.Is(err, formats.ErrSize) || !errors.Is(err, vmdk.ErrSize) {
			t.Errorf("%s row, 512-byte disk: %v", typ, err)
		}
		var b bytes.Buffer
		if err := f.Write(&b, formattest.BootDisk(t, MiB), formats.Options{VMDKSubformat: vmdk.StreamOptimized}); err != nil {
			t.Fatalf("%s row: %v", typ, err)
		}
		if !f.Detect(b.Bytes()[:512], bytes.NewReader(b.Bytes()), int64(b.Len())) {
			t.Errorf("%s row does not detect its own output", typ)
		}
	}
	f, _ := formats.Lookup("vmdk")
	err := f.Write(io.Discard, formattest.BootDisk(t, MiB), formats.Options{VMDKSubformat: "flat"})
	if !errors.Is(err, vmdk.ErrSubformat) {
		t.Errorf("unknown subformat through the table: %v", err)
	}
}

// scattered is a disk with data in several grain tables: pseudo-random
// (incompressible) bytes in some grains, a repeated pattern in others, a
// partly filled grain, and a grain at the very end.
type scattered struct{ size int64 }

var scatteredExtents = []disk.Extent{
	{Off: 0, Len: 512},
	{Off: 3*vmdk.GrainSize + 100, Len: 2 * vmdk.GrainSize}, // spans three grains
	{Off: 700 * vmdk.GrainSize, Len: 4096},                 // second grain table
	{Off: 5000*vmdk.GrainSize + 60000, Len: 5536},          // tenth table, end of a grain
}

func (s scattered) Size() int64 { return s.size }

func (s scattered) Extents() []disk.Extent {
	return append(scatteredExtents, disk.Extent{Off: s.size - 512, Len: 512})
}

func (s scattered) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), s.size-off)
	for i := range n {
		p[i] = s.byteAt(off + i)
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func (s scattered) byteAt(o int64) byte {
	for k, e := range s.Extents() {
		if o >= e.Off && o < e.Off+e.Len {
			if k%2 == 0 {
				x := uint64(o)*0x9e3779b97f4a7c15 + 1
				return byte(x>>56) | 1
			}
			return byte(o%7) + 1
		}
	}
	return 0
}

// TestScattered writes a 1 GiB disk with data in several grain tables and
// checks content, allocation and map against qemu-img's own VMDK.
func TestScattered(t *testing.T) {
	img := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	d := scattered{GiB}
	for _, sub := range subformats {
		t.Run(sub, func(t *testing.T) {
			dir := t.TempDir()
			ours, ref, theirs, back := filepath.Join(dir, "ours.vmdk"), filepath.Join(dir, "ref.raw"), filepath.Join(dir, "theirs.vmdk"), filepath.Join(dir, "back.raw")
			writeFile(t, ours, d, vmdk.Options{Subformat: sub})
			formattest.WriteRaw(t, ref, d, raw.Write)
			formattest.Run(t, img, "check", "-f", "vmdk", ours)
			formattest.Run(t, img, "convert", "-f", "vmdk", "-O", "raw", ours, back)
			formattest.SameFiles(t, ref, back)
			formattest.Run(t, img, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+sub, ref, theirs)
			if out := formattest.Run(t, img, "compare", "-s", "-f", "vmdk", "-F", "vmdk", theirs, ours); !strings.Contains(string(out), "identical") {
				t.Errorf("compare -s: %s", out)
			}
			if a, b := qemuMap(t, img, ours), qemuMap(t, img, theirs); fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("qemu-img map: ours %+v, qemu-img's %+v", a, b)
			}
			got := inspectFile(t, ours)
			// Grains 0, 3-5, 700, 5000 and the last one.
			if want := int64(7) * vmdk.GrainSize; got.Allocated != want {
				t.Errorf("Inspect: allocated %d, want %d", got.Allocated, want)
			}
		})
	}
}
