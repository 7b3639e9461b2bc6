package vhd

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
)

type testCase struct {
	name string
	d    disk.Disk
	typ  string
}

// cases are the disks and types every oracle test runs on.
func cases(t testing.TB) []testCase {
	// Data in blocks 0 and 2 and in the partial last block 4.
	scat := formattest.Scattered(8*mib+4096, map[int64]byte{0: 1, 4*mib + 7: 2, 8*mib + 4095: 3})
	return []testCase{
		{"default", formattest.BootDisk(t, mib), ""},
		{"1GiB", formattest.BootDisk(t, gib), Dynamic},
		{"512B", formattest.BootDisk(t, 512), Dynamic},
		{"scattered", scat, Dynamic},
		{"fixed", formattest.BootDisk(t, mib), Fixed},
		{"fixed-1GiB", formattest.BootDisk(t, gib), Fixed},
		// Not a whole MiB: written exactly, see doc.go.
		{"fixed-odd", formattest.BootDisk(t, mib+512), Fixed},
	}
}

func write(t testing.TB, dir string, c testCase) string {
	return formattest.WriteFile(t, filepath.Join(dir, "disk.vhd"), func(w io.Writer) error {
		return Write(w, c.d, Options{Type: c.typ, Time: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	})
}

// qemuImgVHD converts the raw with qemu-img to a VHD of the same type and
// exact size (force_size), the reference for strict compare and sizes.
func qemuImgVHD(t testing.TB, qemuImg, ref, typ string, force bool) string {
	if typ == "" {
		typ = Dynamic
	}
	out := filepath.Join(filepath.Dir(ref), "theirs-"+typ+".vhd")
	opts := "subformat=" + typ
	if force {
		opts += ",force_size=on"
	}
	formattest.Run(t, qemuImg, "convert", "-f", "raw", "-O", "vpc", "-o", opts, ref, out)
	return out
}

// TestQemuImg checks our files with qemu-img: exact virtual size, compare
// against the raw and against qemu-img's own VHD, convert back byte for
// byte, and map against the blocks that hold data.
func TestQemuImg(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := write(t, dir, c)
			ref := formattest.WriteRaw(t, filepath.Join(dir, "ref.raw"), c.d, raw.Write)

			qi := formattest.ImgInfo(t, qemuImg, "vpc", path)
			if qi.Format != "vpc" || qi.VirtualSize != c.d.Size() {
				t.Errorf("qemu-img info: format %q size %d, want vpc %d", qi.Format, qi.VirtualSize, c.d.Size())
			}
			if c.typ != Fixed {
				// QEMU probes a dynamic VHD without -f.
				var probed formattest.QemuInfo
				if err := json.Unmarshal(formattest.Run(t, qemuImg, "info", "--output=json", path), &probed); err != nil {
					t.Fatal(err)
				}
				if probed.Format != "vpc" || probed.ClusterSize != BlockSize {
					t.Errorf("qemu-img info without -f: %+v", probed)
				}
			}

			// qemu-img check does not support vpc. Strict compare
			// against the sparse raw fails even for qemu-img's own VHD
			// (a hole and an unallocated block differ in block status),
			// so content is compared with the raw and strict mode with
			// qemu-img's VHD of the same raw: the same blocks must be
			// allocated.
			formattest.Run(t, qemuImg, "compare", "-f", "vpc", "-F", "raw", path, ref)
			formattest.Run(t, qemuImg, "compare", "-s", "-f", "vpc", "-F", "vpc", path, qemuImgVHD(t, qemuImg, ref, c.typ, true))
			formattest.ConvertedSameAsDisk(t, qemuImg, "vpc", path, c.d)

			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			in, err := Inspect(f, formattest.FileSize(t, path))
			if err != nil {
				t.Fatal(err)
			}
			if in.Format != Type || in.VirtualSize != qi.VirtualSize || in.FileSize != formattest.FileSize(t, path) {
				t.Errorf("Inspect = %+v, qemu-img size %d", in, qi.VirtualSize)
			}

			m := formattest.ImgMap(t, qemuImg, "vpc", path)
			if c.typ == Fixed {
				// A fixed VHD maps the disk one to one onto the file.
				var total int64
				for _, e := range m {
					total += e.Length
					if e.Offset != nil && *e.Offset != e.Start {
						t.Errorf("qemu-img map: %d at file offset %d", e.Start, *e.Offset)
					}
				}
				if total != c.d.Size() || in.Subformat != Fixed || in.Allocated != c.d.Size() {
					t.Errorf("map covers %d bytes; Inspect = %+v", total, in)
				}
				return
			}
			used, err := disk.Blocks(c.d, BlockSize)
			if err != nil {
				t.Fatal(err)
			}
			entries := (c.d.Size() + BlockSize - 1) / BlockSize
			dataStart := batOffset + align.Up(4*entries, 512)
			next := 0
			var dataBytes int64
			for _, e := range m {
				if !e.Data {
					continue
				}
				dataBytes += e.Length
				for s := e.Start; s < e.Start+e.Length; s = (s/BlockSize + 1) * BlockSize {
					b := s / BlockSize
					if next >= len(used) || used[next] != b {
						t.Fatalf("qemu-img map: data in block %d, non-zero blocks are %v", b, used)
					}
					want := dataStart + int64(next)*(bitmapSize+BlockSize) + bitmapSize + s%BlockSize
					if e.Offset == nil || *e.Offset+(s-e.Start) != want {
						t.Errorf("qemu-img map: block %d at %v, want file offset %d", b, e.Offset, want)
					}
					next++
				}
			}
			if next != len(used) {
				t.Errorf("qemu-img map: %d data blocks, want %d", next, len(used))
			}
			if in.Subformat != Dynamic || in.BlockSize != BlockSize || in.Allocated != int64(len(used))*BlockSize ||
				dataBytes > in.Allocated || len(used) > 0 && dataBytes <= in.Allocated-BlockSize {
				t.Errorf("Inspect = %+v; qemu-img map data %d bytes", in, dataBytes)
			}
		})
	}
}

// TestNoLargerThanQemuImg compares our file sizes with qemu-img convert's
// for the same raw disk, measured now: with force_size (same virtual
// size) and, for dynamic, qemu-img's default too.
func TestNoLargerThanQemuImg(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			ours := formattest.FileSize(t, write(t, dir, c))
			ref := formattest.WriteRaw(t, filepath.Join(dir, "ref.raw"), c.d, raw.Write)
			forced := formattest.FileSize(t, qemuImgVHD(t, qemuImg, ref, c.typ, true))
			t.Logf("%s: ours %d B, qemu-img force_size %d B", c.name, ours, forced)
			if ours > forced {
				t.Errorf("ours is %d bytes, qemu-img's %d", ours, forced)
			}
			if c.typ != Fixed {
				plain := formattest.FileSize(t, qemuImgVHD(t, qemuImg, ref, c.typ, false))
				t.Logf("%s: qemu-img default %d B", c.name, plain)
				if ours > plain {
					t.Errorf("ours is %d bytes, qemu-img's default %d", ours, plain)
				}
			}
		})
	}
}

// TestBoot boots the default dynamic and the fixed disk on both machines.
func TestBoot(t *testing.T) {
	for _, typ := range Types {
		path := write(t, t.TempDir(), testCase{d: formattest.BootDisk(t, mib), typ: typ})
		for _, mb := range [][2]string{{"pc", "ide"}, {"q35", "virtio"}} {
			t.Run(typ+"/"+mb[0]+"+"+mb[1], func(t *testing.T) {
				formattest.Boot(t, qemu.Options{File: path, Driver: "vpc", Machine: mb[0], Bus: mb[1]})
			})
		}
	}
}

// TestSizeRule checks the claim in doc.go with QEMU itself: the creator
// "qem2" alone, and the maximum geometry alone, each make QEMU read the
// exact current size, while an unknown creator with a spec CHS geometry
// (what qemu-img writes by default) does not.
func TestSizeRule(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	size := mib + 3*512 // 2051 sectors: no CHS geometry is exact
	var b bytes.Buffer
	if err := Write(&b, formattest.BootDisk(t, size), Options{Type: Fixed}); err != nil {
		t.Fatal(err)
	}
	// The spec's CHS algorithm for 2051 sectors: 17 sectors per track,
	// 4 heads, 30 cylinders = 2040 sectors.
	const specC, specH, specS = 30, 4, 17
	for _, v := range []struct {
		name    string
		creator string
		c       uint16
		h, s    uint8
		exact   bool
	}{
		{"ours", "qem2", 65535, 16, 255, true},
		{"creator only", "qem2", specC, specH, specS, true},
		{"geometry only", "tvm ", 65535, 16, 255, true},
		{"neither", "tvm ", specC, specH, specS, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			data := bytes.Clone(b.Bytes())
			foot := data[len(data)-512:]
			copy(foot[28:32], v.creator)
			binary.BigEndian.PutUint16(foot[56:], v.c)
			foot[58], foot[59] = v.h, v.s
			binary.BigEndian.PutUint32(foot[64:], 0)
			binary.BigEndian.PutUint32(foot[64:], checksum(foot))
			path := filepath.Join(t.TempDir(), "disk.vhd")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			got := formattest.ImgInfo(t, qemuImg, "vpc", path).VirtualSize
			if want := int64(specC * specH * specS * 512); !v.exact && got != want {
				t.Errorf("QEMU reads %d bytes, want the CHS size %d", got, want)
			}
			if v.exact && got != size {
				t.Errorf("QEMU reads %d bytes, want exactly %d", got, size)
			}
		})
	}
}

// TestFooter checks the fields doc.go promises, against the spec's
// offsets, including both checksums.
func TestFooter(t *testing.T) {
	be := binary.BigEndian
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, typ := range Types {
		var b bytes.Buffer
		if err := Write(&b, formattest.BootDisk(t, mib), Options{Type: typ, Time: at}); err != nil {
			t.Fatal(err)
		}
		data := b.Bytes()
		foot := bytes.Clone(data[len(data)-512:])
		if typ == Dynamic && !bytes.Equal(foot, data[:512]) {
			t.Error("footer copy at 0 differs from the footer")
		}
		sum := be.Uint32(foot[64:])
		be.PutUint32(foot[64:], 0)
		if checksum(foot) != sum {
			t.Errorf("%s: footer checksum %#x, want %#x", typ, sum, checksum(foot))
		}
		if got, want := be.Uint32(foot[24:]), uint32(at.Unix()-946684800); got != want {
			t.Errorf("%s: time stamp %d, want %d", typ, got, want)
		}
		if string(foot[28:32]) != "qem2" || string(foot[36:40]) != "Wi2k" ||
			be.Uint64(foot[40:]) != uint64(mib) || be.Uint64(foot[48:]) != uint64(mib) ||
			be.Uint16(foot[56:]) != 65535 || foot[58] != 16 || foot[59] != 255 {
			t.Errorf("%s: footer fields % x", typ, foot[:64])
		}
		if id := foot[68:84]; id[6]>>4 != 5 || id[8]>>6 != 2 {
			t.Errorf("%s: unique ID % x lacks version 5 and variant bits", typ, id)
		}
		if typ == Dynamic {
			hdr := bytes.Clone(data[512:1536])
			sum := be.Uint32(hdr[36:])
			be.PutUint32(hdr[36:], 0)
			if checksum(hdr) != sum || string(hdr[:8]) != "cxsparse" || be.Uint32(hdr[32:]) != BlockSize {
				t.Errorf("dynamic header % x", hdr[:40])
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	out := func(d disk.Disk, o Options) []byte {
		var b bytes.Buffer
		if err := Write(&b, d, o); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for _, typ := range Types {
		a, b := out(formattest.BootDisk(t, mib), Options{Type: typ}), out(formattest.BootDisk(t, mib), Options{Type: typ})
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: two writes of the same disk differ", typ)
		}
		other, err := disk.New([]byte{1}, mib)
		if err != nil {
			t.Fatal(err)
		}
		c := out(other, Options{Type: typ})
		id := func(b []byte) []byte { return b[len(b)-512+68 : len(b)-512+84] }
		if bytes.Equal(id(a), id(c)) {
			t.Errorf("%s: unique ID does not change with the content", typ)
		}
	}
	// Times before 2000 (SOURCE_DATE_EPOCH=0) record 0.
	if got := stamp(time.Unix(0, 0)); got != 0 {
		t.Errorf("stamp(1970) = %d", got)
	}
}

func TestErrors(t *testing.T) {
	d := formattest.BootDisk(t, mib)
	err := Write(io.Discard, d, Options{Type: "sparse"})
	if !errors.Is(err, ErrUnknownType) || !strings.Contains(err.Error(), "dynamic") || !strings.Contains(err.Error(), "fixed") {
		t.Errorf("unknown type: %v", err)
	}
	big, err := disk.New(nil, MaxSize+512)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range Types {
		err := Write(io.Discard, big, Options{Type: typ})
		if !errors.Is(err, ErrTooLarge) || !strings.HasPrefix(err.Error(), "vhd: disk too large") {
			t.Errorf("%s over 2040 GiB: %v", typ, err)
		}
	}
	// Exactly 2040 GiB is allowed, and QEMU opens it.
	max, err := disk.New(nil, MaxSize)
	if err != nil {
		t.Fatal(err)
	}
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	path := formattest.WriteFile(t, filepath.Join(t.TempDir(), "max.vhd"), func(w io.Writer) error { return Write(w, max, Options{}) })
	if qi := formattest.ImgInfo(t, qemuImg, "vpc", path); qi.VirtualSize != MaxSize {
		t.Errorf("2040 GiB disk reads as %d bytes", qi.VirtualSize)
	}
}

// TestInspectCorrupt damages valid images and expects info.ErrCorrupt.
func TestInspectCorrupt(t *testing.T) {
	be := binary.BigEndian
	img := func(typ string) []byte {
		var b bytes.Buffer
		if err := Write(&b, formattest.BootDisk(t, 5*mib), Options{Type: typ}); err != nil {
			t.Fatal(err)
		}
		if _, err := Inspect(bytes.NewReader(b.Bytes()), int64(b.Len())); err != nil {
			t.Fatalf("good %s image: %v", typ, err)
		}
		return b.Bytes()
	}
	dyn, fixed := img(Dynamic), img(Fixed)
	tests := []struct {
		name   string
		base   []byte
		damage func(b []byte) []byte
	}{
		{"tiny", dyn, func(b []byte) []byte { return b[:100] }},
		{"truncated dynamic", dyn, func(b []byte) []byte { return b[:len(b)-1] }},
		{"truncated fixed", fixed, func(b []byte) []byte { return b[len(b)-512-4096:] }},
		{"footer checksum", dyn, func(b []byte) []byte { b[40] ^= 1; return b }},
		{"fixed footer checksum", fixed, func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"header checksum", dyn, func(b []byte) []byte { b[512+100] ^= 1; return b }},
		{"no end footer", dyn, func(b []byte) []byte { b[len(b)-512] = 'x'; return b }},
		{"BAT past block", dyn, func(b []byte) []byte { be.PutUint32(b[1536:], 1<<30); return b }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.damage(bytes.Clone(tc.base))
			if _, err := Inspect(bytes.NewReader(b), int64(len(b))); !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("Inspect: %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	for _, typ := range Types {
		var b bytes.Buffer
		if err := Write(&b, formattest.BootDisk(t, mib), Options{Type: typ}); err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(b.Bytes())
		if !Detect(b.Bytes()[:512], r, int64(b.Len())) {
			t.Errorf("Detect misses our %s VHD", typ)
		}
	}
	boot := make([]byte, mib)
	if _, err := formattest.BootDisk(t, mib).ReadAt(boot, 0); err != nil {
		t.Fatal(err)
	}
	if Detect(boot[:512], bytes.NewReader(boot), mib) {
		t.Error("Detect accepts a raw disk")
	}
	// qemu-img's own VHDs are detected and inspected too.
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	dir := t.TempDir()
	ref := formattest.WriteRaw(t, filepath.Join(dir, "ref.raw"), formattest.BootDisk(t, 6*mib), raw.Write)
	for _, typ := range Types {
		data, err := os.ReadFile(qemuImgVHD(t, qemuImg, ref, typ, true))
		if err != nil {
			t.Fatal(err)
		}
		if !Detect(data[:512], bytes.NewReader(data), int64(len(data))) {
			t.Errorf("Detect misses qemu-img's %s VHD", typ)
		}
		in, err := Inspect(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("Inspect of qemu-img's %s VHD: %v", typ, err)
		}
		if in.VirtualSize != 6*mib || in.Subformat != typ {
			t.Errorf("Inspect of qemu-img's %s VHD = %+v", typ, in)
		}
	}
}

// BenchmarkWrite writes the default disk at 1 MiB and 1 TiB virtual size,
// dynamic to a counter and fixed to a temporary file, where the zeros
// become holes.
func BenchmarkWrite(b *testing.B) {
	for _, typ := range Types {
		for _, size := range []struct {
			name string
			n    int64
		}{{"1MiB", mib}, {"1TiB", tib}} {
			b.Run(typ+"/"+size.name, func(b *testing.B) {
				d := formattest.BootDisk(b, size.n)
				var w io.Writer
				var cw formattest.CountWriter
				var file *os.File
				if typ == Fixed {
					var err error
					if file, err = os.CreateTemp(b.TempDir(), "bench-*.vhd"); err != nil {
						b.Fatal(err)
					}
					defer file.Close()
					w = file
				} else {
					w = &cw
				}
				for b.Loop() {
					if file != nil {
						if err := file.Truncate(0); err != nil {
							b.Fatal(err)
						}
						if _, err := file.Seek(0, io.SeekStart); err != nil {
							b.Fatal(err)
						}
					}
					cw = 0
					if err := Write(w, d, Options{Type: typ}); err != nil {
						b.Fatal(err)
					}
				}
				if file != nil {
					st, err := file.Stat()
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(st.Size()), "file-bytes")
				} else {
					b.ReportMetric(float64(cw), "file-bytes")
				}
			})
		}
	}
}
