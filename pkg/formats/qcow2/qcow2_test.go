package qcow2

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
)

// mixedDisk builds a sparse disk for cluster size cs that spans two L2
// tables: the boot sector, a piece across a cluster boundary, random
// (incompressible) clusters, a run of small compressible clusters that share
// host clusters once compressed, data in the second L2 table, and data in a
// partial last cluster.
func mixedDisk(t testing.TB, cs int64) *formattest.Sparse {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 3*cs)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	l2span := cs * (cs / 8)
	size := l2span + 8*cs + 1536 // not a multiple of the cluster size
	m := &formattest.Sparse{Len: size}
	m.Patches = append(m.Patches,
		formattest.Patch{Off: 0, Data: formattest.BootSector(t)},
		formattest.Patch{Off: 3*cs - 100, Data: bytes.Repeat([]byte("across "), 30)},
		formattest.Patch{Off: 5 * cs, Data: random},
	)
	for i := int64(0); i < 20; i++ {
		m.Patches = append(m.Patches, formattest.Patch{Off: (10+i)*cs + 64, Data: []byte(fmt.Sprintf("cluster %d of the small run", i))})
	}
	if cs >= 4*kib {
		// The same random kilobyte twice, 31,000 bytes apart: in a 64 KiB
		// cluster deflate refers back further than QEMU's 4 KiB window
		// (inflateInit2 with -12), which QEMU must still inflate.
		m.Patches = append(m.Patches, formattest.Patch{Off: farOffset(cs), Data: farPiece(random[:1000])})
	}
	m.Patches = append(m.Patches,
		formattest.Patch{Off: l2span + cs + 64, Data: bytes.Repeat([]byte{0xAB, 0xCD}, 700)},
		formattest.Patch{Off: size - 512, Data: bytes.Repeat([]byte("end!"), 128)},
	)
	return m
}

// farOffset is where mixedDisk puts farPiece.
func farOffset(cs int64) int64 { return 35 * cs }

// farPiece is b, 30,000 zero bytes, and b again.
func farPiece(b []byte) []byte {
	return append(append(bytes.Clone(b), make([]byte, 30000)...), b...)
}

// writeFiles writes d as qcow2 and as a sparse raw image into a temp dir.
func writeFiles(t testing.TB, d disk.Disk, o Options) (img, rawPath string) {
	t.Helper()
	dir := t.TempDir()
	img, rawPath = filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "disk.raw")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(f, d, o); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rf, err := os.Create(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Write(rf, d); err != nil {
		t.Fatal(err)
	}
	if err := rf.Close(); err != nil {
		t.Fatal(err)
	}
	return img, rawPath
}

// checkResult is qemu-img check --output=json.
type checkResult struct {
	CheckErrors        int `json:"check-errors"`
	Corruptions        int `json:"corruptions"`
	Leaks              int `json:"leaks"`
	AllocatedClusters  int `json:"allocated-clusters"`
	CompressedClusters int `json:"compressed-clusters"`
	TotalClusters      int `json:"total-clusters"`
}

// qemuCheck runs qemu-img check and returns its report and exit status
// (0 clean, 2 corruptions, 3 leaks).
func qemuCheck(t testing.TB, qemuImg, img string) (checkResult, int) {
	t.Helper()
	out, err := exec.Command(qemuImg, "check", "--output=json", "-f", "qcow2", img).Output()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	var c checkResult
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatalf("qemu-img check output %q: %v", out, err)
	}
	return c, code
}

// dataRanges merges the ranges of stored guest clusters, clipped to the
// virtual size, as qemu-img map reports them.
func dataRanges(blocks []int64, cs, size int64) [][2]int64 {
	var out [][2]int64
	for _, b := range blocks {
		lo, hi := b*cs, min((b+1)*cs, size)
		if n := len(out); n > 0 && out[n-1][1] == lo {
			out[n-1][1] = hi
			continue
		}
		out = append(out, [2]int64{lo, hi})
	}
	return out
}

type oracleCase struct {
	name    string
	disk    func(t testing.TB) disk.Disk
	o       Options
	convert bool // convert -O raw and compare byte for byte (skipped at 1 TiB)
}

func oracleCases() []oracleCase {
	sized := func(size int64) func(t testing.TB) disk.Disk {
		return func(t testing.TB) disk.Disk { return formattest.BootDisk(t, size) }
	}
	mixed := func(cs int64) func(t testing.TB) disk.Disk {
		return func(t testing.TB) disk.Disk { return mixedDisk(t, cs) }
	}
	return []oracleCase{
		{"default", sized(mib), Options{}, true},
		{"1GiB", sized(gib), Options{}, true},
		{"1TiB", sized(tib), Options{}, false},
		{"compressed", sized(mib), Options{Compress: true}, true},
		{"compressed-1GiB", sized(gib), Options{Compress: true}, true},
		{"compressed-1TiB", sized(tib), Options{Compress: true}, false},
		{"cluster512", sized(mib), Options{ClusterSize: 512}, true},
		{"cluster512-1GiB", sized(gib), Options{ClusterSize: 512}, true},
		{"cluster2MiB", sized(mib), Options{ClusterSize: 2 * mib}, true},
		{"compressed-cluster512", sized(mib), Options{ClusterSize: 512, Compress: true}, true},
		{"compressed-cluster2MiB", sized(mib), Options{ClusterSize: 2 * mib, Compress: true}, true},
		{"empty", func(t testing.TB) disk.Disk { return &formattest.Sparse{Len: mib} }, Options{}, true},
		{"empty-compressed", func(t testing.TB) disk.Disk { return &formattest.Sparse{Len: mib} }, Options{Compress: true}, true},
		{"mixed", mixed(64 * kib), Options{}, true},
		{"mixed-compressed", mixed(64 * kib), Options{Compress: true}, true},
		{"mixed-cluster512", mixed(512), Options{ClusterSize: 512}, true},
		{"mixed-compressed-cluster512", mixed(512), Options{ClusterSize: 512, Compress: true}, true},
		{"mixed-compressed-cluster4KiB", mixed(4 * kib), Options{ClusterSize: 4 * kib, Compress: true}, true},
	}
}

// TestQemuImg checks every variant with qemu-img: check finds no errors or
// leaks, info reports the exact virtual and cluster size, compare finds the
// image identical to the raw disk, convert -O raw gives the disk back byte
// for byte, and map reports data exactly where the disk has non-zero
// clusters, at the host offsets the writer chose. Inspect must agree with
// what qemu-img reports.
func TestQemuImg(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, c := range oracleCases() {
		t.Run(c.name, func(t *testing.T) {
			d := c.disk(t)
			img, rawPath := writeFiles(t, d, c.o)
			l, err := plan(d, c.o)
			if err != nil {
				t.Fatal(err)
			}
			cs := l.cs

			// check: no errors, no leaks, the clusters we stored.
			chk, code := qemuCheck(t, qemuImg, img)
			if code != 0 || chk.CheckErrors != 0 || chk.Corruptions != 0 || chk.Leaks != 0 {
				out, _ := exec.Command(qemuImg, "check", "-f", "qcow2", img).CombinedOutput()
				t.Fatalf("qemu-img check: exit %d, %+v\n%s", code, chk, out)
			}
			if chk.AllocatedClusters != len(l.blocks) {
				t.Errorf("qemu-img check: %d allocated clusters, want %d", chk.AllocatedClusters, len(l.blocks))
			}
			ncomp := 0
			for _, n := range l.clen {
				if n != 0 {
					ncomp++
				}
			}
			if chk.CompressedClusters != ncomp {
				t.Errorf("qemu-img check: %d compressed clusters, want %d", chk.CompressedClusters, ncomp)
			}
			if c.o.Compress && ncomp == 0 && len(l.blocks) > 0 {
				t.Errorf("compressed mode stored no compressed cluster")
			}

			// info: format, exact virtual size, cluster size, v3 details.
			var inf struct {
				Format         string `json:"format"`
				VirtualSize    int64  `json:"virtual-size"`
				ClusterSize    int64  `json:"cluster-size"`
				FormatSpecific struct {
					Data struct {
						Compat          string `json:"compat"`
						CompressionType string `json:"compression-type"`
						RefcountBits    int    `json:"refcount-bits"`
						Corrupt         bool   `json:"corrupt"`
					} `json:"data"`
				} `json:"format-specific"`
			}
			if err := json.Unmarshal(formattest.Run(t, qemuImg, "info", "--output=json", "-f", "qcow2", img), &inf); err != nil {
				t.Fatal(err)
			}
			fs := inf.FormatSpecific.Data
			if inf.Format != "qcow2" || inf.VirtualSize != d.Size() || inf.ClusterSize != cs ||
				fs.Compat != "1.1" || fs.CompressionType != "zlib" || fs.RefcountBits != 16 || fs.Corrupt {
				t.Errorf("qemu-img info: %+v; want qcow2, virtual size %d, cluster size %d, compat 1.1, zlib, 16-bit refcounts", inf, d.Size(), cs)
			}

			// compare against the raw image.
			if out := formattest.Run(t, qemuImg, "compare", "-f", "raw", "-F", "qcow2", rawPath, img); !bytes.Contains(out, []byte("Images are identical")) {
				t.Errorf("qemu-img compare: %s", out)
			}

			// convert back to raw, byte for byte.
			if c.convert {
				back := filepath.Join(t.TempDir(), "back.raw")
				formattest.Run(t, qemuImg, "convert", "-f", "qcow2", "-O", "raw", img, back)
				formattest.SameAsDisk(t, back, d)
			}

			// map: data exactly in the stored clusters; uncompressed ones at
			// our host offsets, compressed ones without an offset.
			m := formattest.ImgMap(t, qemuImg, "qcow2", img)
			var got [][2]int64
			for _, e := range m {
				if !e.Data {
					continue
				}
				if n := len(got); n > 0 && got[n-1][1] == e.Start {
					got[n-1][1] = e.Start + e.Length
				} else {
					got = append(got, [2]int64{e.Start, e.Start + e.Length})
				}
				for g := e.Start; g < e.Start+e.Length; g += cs {
					i := indexOf(l.blocks, g/cs)
					if i < 0 {
						t.Fatalf("qemu-img map: data at %d, which the writer did not store", g)
					}
					compressed := l.entry[i]&flagCompressed != 0
					switch {
					case compressed && e.Offset != nil:
						t.Errorf("qemu-img map: compressed cluster at %d has a host offset", g)
					case !compressed && (e.Offset == nil || *e.Offset+(g-e.Start) != int64(l.entry[i]&offsetMask)):
						t.Errorf("qemu-img map: cluster at %d: host offset %v, want %d", g, e.Offset, l.entry[i]&offsetMask)
					}
				}
			}
			if want := dataRanges(l.blocks, cs, d.Size()); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("qemu-img map data ranges %v, want %v", got, want)
			}

			// Inspect agrees with qemu-img.
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			got2, err := Inspect(f, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			want := info.Info{Format: Type, VirtualSize: inf.VirtualSize, FileSize: st.Size(), BlockSize: inf.ClusterSize,
				Allocated: int64(chk.AllocatedClusters) * inf.ClusterSize, Compressed: chk.CompressedClusters > 0}
			if fmt.Sprint(*got2) != fmt.Sprint(want) {
				t.Errorf("Inspect = %+v, qemu-img says %+v", *got2, want)
			}
		})
	}
}

func indexOf(s []int64, v int64) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestMixedLayout makes sure the mixed disks put the compressed layout
// through its hard cases, so that TestQemuImg checks them: clusters stored
// uncompressed in compressed mode, host clusters shared by several
// compressed clusters, compressed data crossing a host cluster boundary,
// more than one L2 table, and data in the last cluster, which is partial
// when the cluster is larger than a sector.
func TestMixedLayout(t *testing.T) {
	for _, cs := range []int64{512, 4 * kib, 64 * kib} {
		d := mixedDisk(t, cs)
		l, err := plan(d, Options{ClusterSize: cs, Compress: true})
		if err != nil {
			t.Fatal(err)
		}
		var raw, crossing, shared int
		for i := range l.blocks {
			if l.clen[i] == 0 {
				raw++
				continue
			}
			off := int64(l.entry[i] & (1<<(62-(l.bits-8)) - 1))
			if off/cs != (off+int64(l.clen[i])-1)/cs {
				crossing++
			}
		}
		for _, n := range l.counts {
			if n > 1 {
				shared++
			}
		}
		if cs == 64*kib {
			// The far piece compresses only through a back-reference
			// longer than 4 KiB.
			if i := indexOf(l.blocks, farOffset(cs)/cs); i < 0 || l.clen[i] == 0 || l.clen[i] > 1500 {
				t.Errorf("the cluster with the far piece was not compressed by a long back-reference")
			}
		}
		last := (d.Size() - 1) / cs
		if raw == 0 || shared == 0 || (cs == 512 && crossing == 0) || len(l.l1Used) < 2 || l.blocks[len(l.blocks)-1] != last || (cs > 512 && d.Size()%cs == 0) {
			t.Errorf("cluster size %d: %d uncompressed, %d crossing, %d shared host clusters, %d L2 tables, last stored cluster %d of %d",
				cs, raw, crossing, shared, len(l.l1Used), l.blocks[len(l.blocks)-1], last)
		}
	}
}

// TestCheckCatchesErrors shows that the qemu-img check above can fail: an
// image with a COPIED flag cleared, or with a refcount for a cluster nothing
// uses, is reported.
func TestCheckCatchesErrors(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	d := formattest.BootDisk(t, mib)
	l, err := plan(d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, d, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		break_ func(b []byte)
		code   int
	}{
		{"L2 entry without COPIED", func(b []byte) { b[l.l2Off] &^= 0x80 }, 2},
		{"leaked cluster", func(b []byte) {
			// The file has one more cluster (appended below), counted but unused.
			binary.BigEndian.PutUint16(b[l.rbOff+refcountBytes*(l.end/l.cs):], 1)
		}, 3},
	} {
		b := append(bytes.Clone(buf.Bytes()), make([]byte, l.cs)...)
		c.break_(b)
		path := filepath.Join(t.TempDir(), "bad.qcow2")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if chk, code := qemuCheck(t, qemuImg, path); code != c.code {
			t.Errorf("%s: qemu-img check exit %d (%+v), want %d", c.name, code, chk, c.code)
		}
	}
}

// TestNotLargerThanQemuImg compares our file sizes with qemu-img convert
// of the same raw disk with the same options, and checks that both images
// hold the same data in the same allocated clusters.
func TestNotLargerThanQemuImg(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, c := range []struct {
		name string
		size int64
		o    Options
		args []string
	}{
		{"default", mib, Options{}, nil},
		{"1GiB", gib, Options{}, nil},
		{"compressed", mib, Options{Compress: true}, []string{"-c"}},
		{"512-byte-disk-compressed", 512, Options{Compress: true}, []string{"-c"}},
		{"cluster512", mib, Options{ClusterSize: 512}, []string{"-o", "cluster_size=512"}},
		{"cluster2MiB", mib, Options{ClusterSize: 2 * mib}, []string{"-o", "cluster_size=2M"}},
		{"compressed-cluster2MiB", mib, Options{ClusterSize: 2 * mib, Compress: true}, []string{"-c", "-o", "cluster_size=2M"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, rawPath := writeFiles(t, formattest.BootDisk(t, c.size), c.o)
			theirs := filepath.Join(t.TempDir(), "qemu.qcow2")
			args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, c.args...)
			formattest.Run(t, qemuImg, append(args, rawPath, theirs)...)
			a, err := os.Stat(img)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.Stat(theirs)
			if err != nil {
				t.Fatal(err)
			}
			// Strict compare (contents and allocation) against qemu-img's
			// own image. Against the raw file strict mode cannot pass:
			// every byte of a raw image counts as allocated, so even
			// qemu-img's qcow2 "mismatches" there. qemu-img convert finds
			// zeros in 4 KiB units (-S 4k), so with smaller clusters it
			// stores zero clusters that we leave out.
			if c.o.ClusterSize == 0 || c.o.ClusterSize >= 4096 {
				if out := formattest.Run(t, qemuImg, "compare", "-s", "-f", "qcow2", "-F", "qcow2", img, theirs); !bytes.Contains(out, []byte("Images are identical")) {
					t.Errorf("qemu-img compare -s with qemu-img's image: %s", out)
				}
			}
			t.Logf("ours %d B, qemu-img %d B", a.Size(), b.Size())
			if a.Size() > b.Size() {
				t.Errorf("ours is %d bytes, qemu-img's %d", a.Size(), b.Size())
			}
		})
	}
}

// TestInspectQemuImgOutput reads images that qemu-img itself wrote.
func TestInspectQemuImgOutput(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	_, rawPath := writeFiles(t, mixedDisk(t, 64*kib), Options{})
	for _, args := range [][]string{nil, {"-c"}, {"-o", "compat=0.10"}, {"-o", "cluster_size=16384,extended_l2=on"}} {
		img := filepath.Join(t.TempDir(), "qemu.qcow2")
		formattest.Run(t, qemuImg, append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, args...), rawPath, img)...)
		chk, _ := qemuCheck(t, qemuImg, img)
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		in, err := Inspect(f, st.Size())
		f.Close()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if in.Allocated != int64(chk.AllocatedClusters)*in.BlockSize || in.Compressed != (chk.CompressedClusters > 0) {
			t.Errorf("%v: Inspect %+v; qemu-img check %+v", args, in, chk)
		}
	}
}

// TestBoot boots the default and the compressed image in QEMU. (The
// table-driven oracle test in pkg/formats boots every format on both
// machines; this covers the compressed variant on q35+virtio too.)
func TestBoot(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	for _, c := range []struct {
		name         string
		o            Options
		machine, bus string
	}{
		{"default-pc-ide", Options{}, "pc", "ide"},
		{"compressed-pc-ide", Options{Compress: true}, "pc", "ide"},
		{"compressed-q35-virtio", Options{Compress: true}, "q35", "virtio"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, _ := writeFiles(t, formattest.BootDisk(t, mib), c.o)
			formattest.Boot(t, qemu.Options{File: img, Driver: Type, Machine: c.machine, Bus: c.bus})
		})
	}
}

// TestHeader checks the bytes of cluster 0 that the spec fixes.
func TestHeader(t *testing.T) {
	if n := binary.Size(header{}); n != headerLength {
		t.Fatalf("header struct is %d bytes, want %d", n, headerLength)
	}
	for _, o := range []Options{{}, {Compress: true}, {ClusterSize: 512}, {ClusterSize: 2 * mib}} {
		var buf bytes.Buffer
		if err := Write(&buf, formattest.BootDisk(t, mib), o); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		cs := o.ClusterSize
		if cs == 0 {
			cs = DefaultClusterSize
		}
		be := binary.BigEndian
		switch {
		case string(b[:4]) != Magic:
			t.Errorf("%+v: magic %q", o, b[:4])
		case be.Uint32(b[4:]) != 3:
			t.Errorf("%+v: version %d", o, be.Uint32(b[4:]))
		case int64(1)<<be.Uint32(b[20:]) != cs:
			t.Errorf("%+v: cluster_bits %d", o, be.Uint32(b[20:]))
		case be.Uint64(b[24:]) != uint64(mib):
			t.Errorf("%+v: size %d", o, be.Uint64(b[24:]))
		case be.Uint32(b[96:]) != 4:
			t.Errorf("%+v: refcount_order %d", o, be.Uint32(b[96:]))
		case be.Uint32(b[100:]) != 112:
			t.Errorf("%+v: header_length %d", o, be.Uint32(b[100:]))
		case b[104] != 0:
			t.Errorf("%+v: compression_type %d", o, b[104])
		case !disk.IsZero(b[72:96]):
			t.Errorf("%+v: feature bits set: % x", o, b[72:96])
		case !disk.IsZero(b[105:cs]):
			t.Errorf("%+v: bytes after the header fields are not zero (the extension list must end at 112)", o)
		}
	}
}

func TestClusterSizeOption(t *testing.T) {
	d := formattest.BootDisk(t, mib)
	for _, cs := range []int64{0, 512, 1024, 4096, 64 * kib, 2 * mib} {
		if err := Write(io.Discard, d, Options{ClusterSize: cs}); err != nil {
			t.Errorf("cluster size %d: %v", cs, err)
		}
	}
	for _, cs := range []int64{-512, 1, 256, 1000, 3 * 512, 4 * mib} {
		err := Write(io.Discard, d, Options{ClusterSize: cs})
		if !errors.Is(err, ErrClusterSize) {
			t.Errorf("cluster size %d: error %v, want ErrClusterSize", cs, err)
		}
	}
}

// TestTooLarge: QEMU caps the L1 table at 32 MiB, so 512-byte clusters
// address at most 128 GiB. We write the largest size QEMU opens, and refuse
// the sizes qemu-img create refuses.
func TestTooLarge(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	img, _ := writeFiles(t, formattest.BootDisk(t, 128*gib), Options{ClusterSize: 512})
	if chk, code := qemuCheck(t, qemuImg, img); code != 0 {
		t.Errorf("128 GiB with 512-byte clusters: qemu-img check exit %d, %+v", code, chk)
	}
	for _, size := range []int64{128*gib + 64*kib, tib} {
		err := Write(io.Discard, formattest.BootDisk(t, size), Options{ClusterSize: 512})
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("%d bytes with 512-byte clusters: %v, want ErrTooLarge", size, err)
		}
		path := filepath.Join(t.TempDir(), "x.qcow2")
		if exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", path, fmt.Sprint(size)).Run() == nil {
			t.Errorf("%d bytes: qemu-img create accepts 512-byte clusters, we refuse", size)
		}
	}
}

func TestDeterministic(t *testing.T) {
	for _, o := range []Options{{}, {Compress: true}} {
		var a, b bytes.Buffer
		if err := Write(&a, mixedDisk(t, 64*kib), o); err != nil {
			t.Fatal(err)
		}
		if err := Write(&b, mixedDisk(t, 64*kib), o); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%+v: two writes differ", o)
		}
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	for _, n := range []int{0, 100, 70000, 300000, 327700} {
		err := Write(&failWriter{n: n}, formattest.BootDisk(t, mib), Options{Compress: true})
		if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.HasPrefix(err.Error(), "qcow2: ") {
			t.Errorf("fail after %d bytes: %v", n, err)
		}
	}
}

func TestDetect(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, formattest.BootDisk(t, mib), Options{}); err != nil {
		t.Fatal(err)
	}
	if !Detect(buf.Bytes()[:64], nil, int64(buf.Len())) {
		t.Error("Detect rejects our own image")
	}
	for _, head := range [][]byte{nil, []byte("QFI"), []byte("QFI\xfb\x00\x00\x00\x04"), formattest.BootSector(t)} {
		if Detect(head, nil, int64(len(head))) {
			t.Errorf("Detect accepts % x", head[:min(8, len(head))])
		}
	}
}

// TestInspectTruncated cuts our images short: every cut into the metadata
// or the first data cluster is an error wrapping info.ErrCorrupt, never a
// panic.
func TestInspectTruncated(t *testing.T) {
	for _, o := range []Options{{}, {Compress: true}, {ClusterSize: 512}} {
		d := mixedDisk(t, max(o.ClusterSize, 512))
		var buf bytes.Buffer
		if err := Write(&buf, d, o); err != nil {
			t.Fatal(err)
		}
		l, err := plan(d, o)
		if err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		if _, err := Inspect(bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		for _, n := range []int64{0, 4, 71, 111, l.rtOff, l.rbOff, l.l1Off, l.l1Off + 8, l.l2Off, l.dataOff - 1, l.dataOff} {
			_, err := Inspect(bytes.NewReader(b[:n]), n)
			if !errors.Is(err, info.ErrCorrupt) {
				t.Errorf("%+v cut at %d: %v, want ErrCorrupt", o, n, err)
			}
		}
	}
}

// fuzzSeeds are the writer's own outputs.
func fuzzSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, c := range []struct {
		d disk.Disk
		o Options
	}{
		{formattest.BootDisk(t, mib), Options{}},
		{formattest.BootDisk(t, gib), Options{}},
		{formattest.BootDisk(t, tib), Options{}},
		{formattest.BootDisk(t, mib), Options{Compress: true}},
		{formattest.BootDisk(t, mib), Options{ClusterSize: 512}},
		{formattest.BootDisk(t, mib), Options{ClusterSize: 512, Compress: true}},
		{mixedDisk(t, 512), Options{ClusterSize: 512, Compress: true}},
		{mixedDisk(t, 4096), Options{ClusterSize: 4096}},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, c.d, c.o); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}

// FuzzInspect: Inspect never panics, and fails only with ErrCorrupt.
func FuzzInspect(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := Inspect(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if !Detect(b, nil, int64(len(b))) {
			t.Fatalf("Inspect accepts what Detect rejects")
		}
		if in.VirtualSize < 0 || in.Allocated < 0 || in.Allocated > in.VirtualSize+in.BlockSize {
			t.Fatalf("implausible %+v", in)
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	for _, c := range []struct {
		name string
		size int64
		o    Options
	}{
		{"1MiB", mib, Options{}},
		{"1TiB", tib, Options{}},
		{"1MiB-compressed", mib, Options{Compress: true}},
		{"1TiB-compressed", tib, Options{Compress: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			d := formattest.BootDisk(b, c.size)
			formattest.BenchWrite(b, func(w io.Writer) error { return Write(w, d, c.o) })
		})
	}
}
