package iso

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
)

func inspectBytes(data []byte) (*info.Info, error) {
	return Inspect(bytes.NewReader(data), int64(len(data)))
}

func TestInspect(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			data := build(t, formattest.BootDisk(t, mib), v.o)
			got, err := inspectBytes(data)
			if err != nil {
				t.Fatal(err)
			}
			emulation, subformat := "none", BootNoEmul
			if v.o.Boot == BootFloppy {
				emulation, subformat = "floppy-1.44M", BootFloppy
			}
			want := info.Info{
				Format: Type, Subformat: subformat,
				VirtualSize: int64(len(data)), FileSize: int64(len(data)), Allocated: int64(len(data)),
			}
			wantET := info.ElTorito{
				Platform: 0, Bootable: true, Emulation: emulation, LoadSegment: 0,
				SectorCount: 1, ImageLBA: imageLBA, CatalogLBA: catalogLBA, Hybrid: true,
			}
			if got.ElTorito == nil {
				t.Fatalf("no El Torito entry: %+v", got)
			}
			et := *got.ElTorito
			got.ElTorito = nil
			if !reflect.DeepEqual(*got, want) || et != wantET {
				t.Errorf("Inspect = %+v %+v\nwant %+v %+v", *got, et, want, wantET)
			}
		})
	}
}

// Inspect must agree with xorriso on images xorriso made itself, with its
// own layout (Rock Ridge, a padded volume, other LBAs and load sizes).
func TestInspectXorrisoImages(t *testing.T) {
	bin := tooltest.Require(t, "xorriso", tooltest.Xorriso)
	bootSector := formattest.BootSector(t)
	floppy := append(bytes.Clone(bootSector), make([]byte, floppySize-len(bootSector))...)
	for _, c := range []struct {
		name, image string
		data        []byte
		args        []string
		subformat   string
	}{
		{"noemul", "boot.img", bootSector, []string{"-no-emul-boot", "-boot-load-size", "4"}, BootNoEmul},
		{"floppy", "fd.img", floppy, nil, BootFloppy},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := t.TempDir()
			if err := os.WriteFile(filepath.Join(src, c.image), c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "x.iso")
			args := append([]string{"-as", "mkisofs", "-quiet", "-o", file, "-b", c.image}, c.args...)
			cmd := exec.Command(bin, append(args, src)...)
			cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(stamp.Unix(), 10))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("xorriso -as mkisofs: %v\n%s", err, out)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !Detect(data[:min(len(data), 64<<10)], nil, int64(len(data))) {
				t.Error("Detect does not recognise xorriso's image")
			}
			rep := runXorriso(t, file)
			got, err := inspectBytes(data)
			if err != nil {
				t.Fatal(err)
			}
			et := got.ElTorito
			if et == nil {
				t.Fatalf("no El Torito entry: %+v", got)
			}
			wantEmul := map[string]string{"none": "none", "fd1.4": "floppy-1.44M"}[rep.Emulation]
			if got.Subformat != c.subformat || et.Emulation != wantEmul ||
				et.CatalogLBA != rep.CatalogLBA || et.ImageLBA != rep.ImageLBA ||
				et.SectorCount != rep.SectorCount || et.LoadSegment != rep.LoadSegment ||
				et.Bootable != rep.Bootable || (et.Platform == 0) != (rep.Platform == "BIOS") ||
				et.Hybrid != rep.MBR {
				t.Errorf("Inspect = %+v %+v\nxorriso = %+v", *got, *et, rep)
			}
			if got.VirtualSize > got.FileSize || got.VirtualSize < int64(rep.ImageLBA+1)*BlockSize {
				t.Errorf("volume of %d bytes in a %d-byte file with the image at block %d", got.VirtualSize, got.FileSize, rep.ImageLBA)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	for _, v := range variants {
		data := build(t, formattest.BootDisk(t, mib), v.o)
		if !Detect(data[:min(len(data), 64<<10)], nil, int64(len(data))) {
			t.Errorf("%s: Detect misses the writer's output", v.name)
		}
	}
	data := build(t, formattest.BootDisk(t, mib), Options{})
	for name, head := range map[string][]byte{
		"raw boot sector": append(formattest.BootSector(t), make([]byte, 64<<10)...),
		"short":           data[:detectOffset+4],
		"empty":           nil,
	} {
		if Detect(head, nil, int64(len(head))) {
			t.Errorf("Detect accepts a %s", name)
		}
	}
}

// mutate returns a copy of the default image changed by f.
func mutate(t *testing.T, f func(b []byte) []byte) []byte {
	t.Helper()
	return f(build(t, formattest.BootDisk(t, mib), Options{Time: stamp}))
}

func TestInspectCorrupt(t *testing.T) {
	at := func(lba int, off int) int { return lba*BlockSize + off }
	cases := map[string]func(b []byte) []byte{
		"empty":               func(b []byte) []byte { return nil },
		"system area only":    func(b []byte) []byte { return b[:pvdLBA*BlockSize] },
		"half a PVD":          func(b []byte) []byte { return b[:at(pvdLBA, 1000)] },
		"no terminator block": func(b []byte) []byte { return b[:terminatorLBA*BlockSize] },
		"one byte short":      func(b []byte) []byte { return b[:len(b)-1] },
		"no CD001":            func(b []byte) []byte { b[at(pvdLBA, 1)] = 'X'; return b },
		"no terminator": func(b []byte) []byte {
			b[at(terminatorLBA, 0)] = 2 // a supplementary descriptor; the path table follows
			return b
		},
		"no PVD": func(b []byte) []byte { b[at(pvdLBA, 0)] = 3; return b },
		"volume size LE/BE differ": func(b []byte) []byte {
			b[at(pvdLBA, pvdVolumeSpaceOffset)]++
			return b
		},
		"volume past file": func(b []byte) []byte {
			putBoth32(b[at(pvdLBA, pvdVolumeSpaceOffset):], 25)
			return b
		},
		"block size 512": func(b []byte) []byte {
			putBoth16(b[at(pvdLBA, pvdBlockSizeOffset):], 512)
			return b
		},
		"catalog outside volume": func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[at(bootRecordLBA, brCatalogOffset):], 24)
			return b
		},
		"catalog LBA huge": func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[at(bootRecordLBA, brCatalogOffset):], 0xFFFFFFFF)
			return b
		},
		"validation header": func(b []byte) []byte { b[at(catalogLBA, valHeaderOffset)] = 2; return b },
		"validation key":    func(b []byte) []byte { b[at(catalogLBA, valKeyOffset+1)] = 0; return b },
		"checksum":          func(b []byte) []byte { b[at(catalogLBA, valChecksumOffset)]++; return b },
		"boot indicator":    func(b []byte) []byte { b[at(catalogLBA, initOffset)] = 0x42; return b },
		"media type":        func(b []byte) []byte { b[at(catalogLBA, initOffset+initMediaOffset)] = 5; return b },
		"image past volume": func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[at(catalogLBA, initOffset+initLBAOffset):], 24)
			return b
		},
		"load past volume": func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[at(catalogLBA, initOffset+initCountOffset):], 5)
			return b
		},
		"floppy image missing": func(b []byte) []byte {
			b[at(catalogLBA, initOffset+initMediaOffset)] = mediaFloppy144
			return b
		},
	}
	// reasons says why each case is corrupt, so that none passes by
	// failing early for another reason.
	reasons := map[string]string{
		"empty":                    "block 16 is past the end",
		"system area only":         "block 16 is past the end",
		"half a PVD":               "block 16 is past the end",
		"no terminator block":      "block 18 is past the end",
		"one byte short":           "exceeds the 49151-byte file",
		"no CD001":                 `block 16 lacks "CD001"`,
		"no terminator":            `block 19 lacks "CD001"`,
		"no PVD":                   "no primary volume descriptor",
		"volume size LE/BE differ": "little-endian but",
		"volume past file":         "volume of 25 blocks",
		"block size 512":           "logical block size 512",
		"catalog outside volume":   "boot catalog at block 24",
		"catalog LBA huge":         "boot catalog at block 4294967295",
		"validation header":        "header ID 2",
		"validation key":           "0x55 0xAA",
		"checksum":                 "checksum",
		"boot indicator":           "boot indicator 0x42",
		"media type":               "boot media type 5",
		"image past volume":        "512 bytes at block 24",
		"load past volume":         "2560 bytes at block 23",
		"floppy image missing":     "1474560 bytes at block 23",
	}
	for name, f := range cases {
		if reasons[name] == "" {
			t.Fatalf("case %q has no reason", name)
		}
		data := mutate(t, f)
		got, err := inspectBytes(data)
		if !errors.Is(err, info.ErrCorrupt) {
			t.Errorf("%s: Inspect = %+v, %v; want an error wrapping ErrCorrupt", name, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), reasons[name]) {
			t.Errorf("%s: error %q does not say %q", name, err, reasons[name])
		}
	}
}

// An ISO without an El Torito boot record is still an ISO.
func TestInspectNoBootRecord(t *testing.T) {
	data := mutate(t, func(b []byte) []byte {
		copy(b[bootRecordLBA*BlockSize+brSystemIDOffset:], "NOT EL TORITO")
		return b
	})
	got, err := inspectBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != Type || got.ElTorito != nil || got.Subformat != "" || got.VirtualSize != int64(len(data)) {
		t.Errorf("Inspect = %+v, want an iso without El Torito", got)
	}
}

// Without the MBR signature the image is not hybrid.
func TestInspectNotHybrid(t *testing.T) {
	data := mutate(t, func(b []byte) []byte { clear(b[:512]); return b })
	got, err := inspectBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ElTorito == nil || got.ElTorito.Hybrid {
		t.Errorf("Inspect = %+v, want El Torito without hybrid", got.ElTorito)
	}
}

// FuzzInspect feeds Inspect mutations of the writer's own outputs: it must
// never panic, and every error must wrap info.ErrCorrupt. The seeds are
// whole images (up to 1.5 MB), which the fuzzer minimizes slowly; bound
// that: go test -fuzz FuzzInspect -fuzztime 20s -fuzzminimizetime 100x
func FuzzInspect(f *testing.F) {
	for _, size := range []int64{mib, gib} {
		for _, v := range variants {
			data := build(f, formattest.BootDisk(f, size), v.o)
			f.Add(data)
			f.Add(data[:metaBlocks*BlockSize])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := inspectBytes(data)
		if err != nil {
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if got.VirtualSize > got.FileSize || got.Format != Type {
			t.Fatalf("inconsistent info %+v", got)
		}
	})
}

// TestInspectOverlaps: a boot catalog or boot image on the volume
// descriptors, or an image over the catalog, is corrupt. (QEMU reads an
// ISO as raw, so there is no qemu-img oracle; TestInspectXorrisoImages
// shows xorriso's own images pass.)
func TestInspectOverlaps(t *testing.T) {
	good := build(t, formattest.BootDisk(t, mib), Options{Time: stamp})
	put := func(off int, v uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	for name, b := range map[string][]byte{
		"catalog on the primary volume descriptor": put(bootRecordLBA*BlockSize+brCatalogOffset, pvdLBA),
		"catalog in the system area":               put(bootRecordLBA*BlockSize+brCatalogOffset, 3),
		"image on the terminator":                  put(catalogLBA*BlockSize+initOffset+initLBAOffset, pvdLBA+2),
		"image on the catalog":                     put(catalogLBA*BlockSize+initOffset+initLBAOffset, catalogLBA),
	} {
		if _, err := inspectBytes(b); !errors.Is(err, info.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestMutants is FuzzInspect's deterministic counterpart.
func TestMutants(t *testing.T) {
	var seeds [][]byte
	for _, v := range variants {
		data := build(t, formattest.BootDisk(t, mib), v.o)
		seeds = append(seeds, data, data[:metaBlocks*BlockSize])
	}
	hot := []int{0, pvdLBA * BlockSize, bootRecordLBA * BlockSize, (pvdLBA + 2) * BlockSize, catalogLBA * BlockSize}
	formattest.MutationTest(t, seeds, hot, 3000, Inspect, func(size int64) int64 { return 2*size + 256<<10 })
}
