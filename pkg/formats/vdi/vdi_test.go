package vdi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

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

// cases are the disks every oracle test runs on.
func cases(t testing.TB) []struct {
	name string
	d    disk.Disk
} {
	return []struct {
		name string
		d    disk.Disk
	}{
		{"default", formattest.BootDisk(t, mib)},
		{"1GiB", formattest.BootDisk(t, gib)},
		{"512B", formattest.BootDisk(t, 512)},
		// Data in blocks 0, 2 and the partial last block 4.
		{"scattered", formattest.Scattered(4*mib+4096, map[int64]byte{0: 1, 2*mib + 7: 2, 4*mib + 4095: 3})},
	}
}

// TestQemuImg checks our files with qemu-img: format and exact virtual
// size, check, compare against the raw, convert back byte for byte, and
// map against the blocks that hold data.
func TestQemuImg(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := formattest.WriteFile(t, filepath.Join(dir, "disk.vdi"), func(w io.Writer) error { return Write(w, c.d) })
			ref := formattest.WriteRaw(t, filepath.Join(dir, "ref.raw"), c.d, raw.Write)

			qi := formattest.ImgInfo(t, qemuImg, "vdi", path)
			if qi.Format != "vdi" || qi.VirtualSize != c.d.Size() {
				t.Errorf("qemu-img info: format %q size %d, want vdi %d", qi.Format, qi.VirtualSize, c.d.Size())
			}
			if qi.ClusterSize != BlockSize {
				t.Errorf("qemu-img info: cluster size %d, want %d", qi.ClusterSize, BlockSize)
			}

			var check struct {
				Corruptions int `json:"corruptions"`
				Leaks       int `json:"leaks"`
				CheckErrors int `json:"check-errors"`
			}
			if err := json.Unmarshal(formattest.Run(t, qemuImg, "check", "--output=json", "-f", "vdi", path), &check); err != nil {
				t.Fatal(err)
			}
			if check.Corruptions+check.Leaks+check.CheckErrors != 0 {
				t.Errorf("qemu-img check: %+v", check)
			}

			// Strict compare against the sparse raw fails even for
			// qemu-img's own VDI (a raw hole and an unallocated block
			// differ in block status), so the content is compared with
			// the raw, and strict mode with qemu-img's VDI of that raw:
			// the same blocks must be allocated.
			formattest.Run(t, qemuImg, "compare", "-f", "vdi", "-F", "raw", path, ref)
			theirs := filepath.Join(dir, "theirs.vdi")
			formattest.Run(t, qemuImg, "convert", "-f", "raw", "-O", "vdi", ref, theirs)
			formattest.Run(t, qemuImg, "compare", "-s", "-f", "vdi", "-F", "vdi", path, theirs)
			formattest.ConvertedSameAsDisk(t, qemuImg, "vdi", path, c.d)

			// qemu-img map must show data exactly in the non-zero
			// blocks, at the file offsets the block map gives.
			used, err := disk.Blocks(c.d, BlockSize)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			in, err := Inspect(f, formattest.FileSize(t, path))
			if err != nil {
				t.Fatal(err)
			}
			dataOff := int64(blocksOffset) + align.Up(4*((c.d.Size()+BlockSize-1)/BlockSize), 512)
			var dataBytes int64
			next := 0
			for _, e := range formattest.ImgMap(t, qemuImg, "vdi", path) {
				if !e.Data {
					continue
				}
				dataBytes += e.Length
				for s := e.Start; s < e.Start+e.Length; s += BlockSize {
					b := s / BlockSize
					if next >= len(used) || used[next] != b {
						t.Fatalf("qemu-img map: data in block %d, non-zero blocks are %v", b, used)
					}
					want := dataOff + int64(next)*BlockSize + s%BlockSize
					if e.Offset == nil || *e.Offset+(s-e.Start) != want {
						t.Errorf("qemu-img map: block %d at %v, want file offset %d", b, e.Offset, want)
					}
					next++
				}
			}
			if next != len(used) {
				t.Errorf("qemu-img map: %d data blocks, want %d", next, len(used))
			}
			// Inspect agrees with QEMU about the virtual size and the
			// stored data (whole blocks; map clips the last to the size).
			if in.VirtualSize != qi.VirtualSize || in.Allocated != int64(len(used))*BlockSize ||
				dataBytes > in.Allocated || dataBytes <= in.Allocated-BlockSize && len(used) > 0 {
				t.Errorf("Inspect %+v vs qemu-img map data %d bytes", in, dataBytes)
			}
			if in.Format != Type || in.Subformat != "dynamic" || in.BlockSize != BlockSize || in.FileSize != formattest.FileSize(t, path) {
				t.Errorf("Inspect = %+v", in)
			}
		})
	}
}

// TestNoLargerThanQemuImg compares our file sizes with qemu-img convert's
// for the same raw disk, measured now.
func TestNoLargerThanQemuImg(t *testing.T) {
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	for _, c := range cases(t) {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			ours := formattest.FileSize(t, formattest.WriteFile(t, filepath.Join(dir, "ours.vdi"), func(w io.Writer) error { return Write(w, c.d) }))
			theirs := filepath.Join(dir, "theirs.vdi")
			formattest.Run(t, qemuImg, "convert", "-f", "raw", "-O", "vdi", formattest.WriteRaw(t, filepath.Join(dir, "ref.raw"), c.d, raw.Write), theirs)
			t.Logf("%s: ours %d B, qemu-img %d B", c.name, ours, formattest.FileSize(t, theirs))
			if ours > formattest.FileSize(t, theirs) {
				t.Errorf("ours is %d bytes, qemu-img's %d", ours, formattest.FileSize(t, theirs))
			}
		})
	}
}

// TestBoot boots the default disk on both machines.
func TestBoot(t *testing.T) {
	path := formattest.WriteFile(t, filepath.Join(t.TempDir(), "disk.vdi"), func(w io.Writer) error { return Write(w, formattest.BootDisk(t, mib)) })
	for _, mb := range [][2]string{{"pc", "ide"}, {"q35", "virtio"}} {
		t.Run(mb[0]+"+"+mb[1], func(t *testing.T) {
			formattest.Boot(t, qemu.Options{File: path, Driver: "vdi", Machine: mb[0], Bus: mb[1]})
		})
	}
}

// TestDeterministic checks that identical inputs give identical bytes and
// that the UUIDs are non-null, versioned and follow the content.
func TestDeterministic(t *testing.T) {
	write := func(d disk.Disk) []byte {
		var b bytes.Buffer
		if err := Write(&b, d); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a, b := write(formattest.BootDisk(t, mib)), write(formattest.BootDisk(t, mib))
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same disk differ")
	}
	other, err := disk.New([]byte{1}, mib)
	if err != nil {
		t.Fatal(err)
	}
	c := write(other)
	const create, modify = 0x188, 0x198
	for _, off := range []int{create, modify} {
		u := a[off : off+16]
		if bytes.Equal(u, make([]byte, 16)) {
			t.Errorf("UUID at %#x is null", off)
		}
		if u[7]>>4 != 5 || u[8]>>6 != 2 {
			t.Errorf("UUID at %#x lacks version 5 and RFC 4122 variant bits: % x", off, u)
		}
		if bytes.Equal(u, c[off:off+16]) {
			t.Errorf("UUID at %#x does not change with the content", off)
		}
	}
	if bytes.Equal(a[create:create+16], a[modify:modify+16]) {
		t.Error("create and modify UUIDs are equal")
	}
	if got := binary.LittleEndian.Uint32(a[0x154:]); got != blocksOffset {
		t.Errorf("offBlocks = %d", got)
	}
}

func TestTooLarge(t *testing.T) {
	d, err := disk.New(nil, MaxSize+BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(io.Discard, d); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Write of %d bytes: %v, want ErrTooLarge", d.Size(), err)
	}
}

// TestInspectCorrupt damages a valid image in ways QEMU or VirtualBox
// refuse and expects info.ErrCorrupt.
func TestInspectCorrupt(t *testing.T) {
	var good bytes.Buffer
	if err := Write(&good, formattest.BootDisk(t, 3*mib)); err != nil {
		t.Fatal(err)
	}
	if _, err := Inspect(bytes.NewReader(good.Bytes()), int64(good.Len())); err != nil {
		t.Fatalf("good image: %v", err)
	}
	le := binary.LittleEndian
	tests := map[string]func(b []byte) []byte{
		"truncated header":   func(b []byte) []byte { return b[:300] },
		"truncated data":     func(b []byte) []byte { return b[:len(b)-1] },
		"bad signature":      func(b []byte) []byte { b[signatureOffset] ^= 1; return b },
		"version 1.2":        func(b []byte) []byte { le.PutUint32(b[versionOffset:], 0x00010002); return b },
		"block size 3":       func(b []byte) []byte { le.PutUint32(b[0x178:], 3); return b },
		"disk too big":       func(b []byte) []byte { le.PutUint64(b[0x170:], 1<<40); return b },
		"null create uuid":   func(b []byte) []byte { clear(b[0x188:0x198]); return b },
		"map past block":     func(b []byte) []byte { le.PutUint32(b[512:], 7); return b },
		"allocated mismatch": func(b []byte) []byte { le.PutUint32(b[0x184:], 2); return b },
		"duplicate block":    func(b []byte) []byte { le.PutUint32(b[516:], 0); le.PutUint32(b[0x184:], 2); return b },
		"data offset low":    func(b []byte) []byte { le.PutUint32(b[0x158:], 512); return b },
		"blocks past end":    func(b []byte) []byte { le.PutUint32(b[0x180:], 1<<30); return b },
	}
	for name, damage := range tests {
		t.Run(name, func(t *testing.T) {
			b := damage(bytes.Clone(good.Bytes()))
			_, err := Inspect(bytes.NewReader(b), int64(len(b)))
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("Inspect: %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, formattest.BootDisk(t, mib)); err != nil {
		t.Fatal(err)
	}
	if !Detect(b.Bytes()[:512], nil, int64(b.Len())) {
		t.Error("Detect misses our image")
	}
	boot := make([]byte, 512)
	if _, err := formattest.BootDisk(t, mib).ReadAt(boot, 0); err != nil {
		t.Fatal(err)
	}
	if Detect(boot, nil, mib) || Detect(b.Bytes()[:versionOffset+3], nil, 0) {
		t.Error("Detect accepts a raw boot sector or a cut-off header")
	}
	// The signature alone, as four bytes of another format could be
	// (a VHD footer's checksum lies at 0x40), is not enough.
	other := bytes.Clone(b.Bytes()[:512])
	binary.LittleEndian.PutUint32(other[versionOffset:], 0x12345678)
	if Detect(other, nil, 512) {
		t.Error("Detect accepts the signature with a version VirtualBox does not read")
	}
	// qemu-img's own VDI is detected and inspected too.
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	dir := t.TempDir()
	theirs := filepath.Join(dir, "theirs.vdi")
	formattest.Run(t, qemuImg, "convert", "-f", "raw", "-O", "vdi", formattest.WriteRaw(t, filepath.Join(dir, "ref.raw"), formattest.BootDisk(t, 3*mib), raw.Write), theirs)
	data, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	if !Detect(data[:512], nil, int64(len(data))) {
		t.Error("Detect misses qemu-img's VDI")
	}
	in, err := Inspect(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Inspect of qemu-img's VDI: %v", err)
	}
	if in.VirtualSize != 3*mib || in.BlockSize != BlockSize || in.Subformat != "dynamic" {
		t.Errorf("Inspect of qemu-img's VDI = %+v", in)
	}
}

// BenchmarkWrite writes the default disk at 1 MiB and 1 TiB virtual size.
func BenchmarkWrite(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int64
	}{{"1MiB", mib}, {"1TiB", tib}} {
		b.Run(size.name, func(b *testing.B) {
			d := formattest.BootDisk(b, size.n)
			formattest.BenchWrite(b, func(w io.Writer) error { return Write(w, d) })
		})
	}
}
