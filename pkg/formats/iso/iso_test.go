package iso

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
)

func TestWriteSizes(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want int64
	}{
		{Options{}, 49152},                   // 24 blocks
		{Options{Boot: BootNoEmul}, 49152},   // the same, named
		{Options{Boot: BootFloppy}, 1521664}, // 23 + 720 blocks
	} {
		for _, size := range []int64{512, mib, gib} {
			got := int64(len(build(t, formattest.BootDisk(t, size), c.o)))
			if got != c.want || Size(c.o) != c.want {
				t.Errorf("boot %q, disk %d: wrote %d bytes, Size says %d, want %d", c.o.Boot, size, got, Size(c.o), c.want)
			}
		}
	}
}

// The ISO holds only the disk's first 512 bytes (or 1.44 MB), so the
// virtual size must not change a byte of it.
func TestIndependentOfVirtualSize(t *testing.T) {
	for _, v := range variants {
		small := build(t, formattest.BootDisk(t, mib), v.o)
		for _, size := range []int64{gib, tib} {
			if !bytes.Equal(small, build(t, formattest.BootDisk(t, size), v.o)) {
				t.Errorf("%s: %d-byte disk gives other bytes than a 1 MiB one", v.name, size)
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	for _, v := range variants {
		a, b := build(t, formattest.BootDisk(t, mib), v.o), build(t, formattest.BootDisk(t, mib), v.o)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two writes differ", v.name)
		}
		later := v.o
		later.Time = stamp.Add(24 * time.Hour)
		if bytes.Equal(a, build(t, formattest.BootDisk(t, mib), later)) {
			t.Errorf("%s: the time is not recorded", v.name)
		}
	}
}

// The system area starts with the boot sector (the hybrid MBR), unchanged:
// no partition entry overwrites the program's bytes 446-509.
func TestSystemAreaIsBootSector(t *testing.T) {
	want := formattest.BootSector(t)
	for _, v := range variants {
		got := build(t, formattest.BootDisk(t, mib), v.o)
		if !bytes.Equal(got[:512], want) {
			t.Errorf("%s: first 512 bytes are not the boot sector", v.name)
		}
		if !disk.IsZero(got[512 : systemAreaBlocks*BlockSize]) {
			t.Errorf("%s: system area past the MBR is not zero", v.name)
		}
	}
}

// The floppy image is the disk's first 1,474,560 bytes, zero-padded.
func TestFloppyImage(t *testing.T) {
	data := make([]byte, 1500000)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	copy(data, formattest.BootSector(t))
	for _, c := range []struct {
		name string
		data []byte
		size int64
	}{
		{"larger than a floppy", data, 2 * mib},
		{"1 MiB", data[:mib], mib},
		{"one sector", data[:512], 512},
	} {
		d, err := disk.New(c.data, c.size)
		if err != nil {
			t.Fatal(err)
		}
		got := build(t, d, Options{Boot: BootFloppy})
		img := got[imageLBA*BlockSize:]
		if len(img) != floppySize {
			t.Fatalf("%s: floppy image is %d bytes, want %d", c.name, len(img), floppySize)
		}
		n := min(len(c.data), floppySize)
		if !bytes.Equal(img[:n], c.data[:n]) || !disk.IsZero(img[n:]) {
			t.Errorf("%s: floppy image is not the disk's first 1.44 MB zero-padded", c.name)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	d := formattest.BootDisk(t, mib)
	var buf bytes.Buffer
	err := Write(&buf, d, Options{Boot: "hard-disk"})
	if !errors.Is(err, ErrBoot) {
		t.Fatalf("unknown boot mode: err = %v, want ErrBoot", err)
	}
	for _, want := range []string{`"hard-disk"`, BootNoEmul, BootFloppy} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	for _, tm := range []time.Time{
		time.Date(1899, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2156, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if err := Write(&buf, d, Options{Time: tm}); !errors.Is(err, ErrTime) {
			t.Errorf("time %v: err = %v, want ErrTime", tm, err)
		}
	}
	for _, l := range []string{strings.Repeat("X", MaxVolumeLabel+1), "tab\there", " cidata", "cidata ", "caf\u00e9"} {
		if err := Write(&buf, d, Options{VolumeLabel: l}); !errors.Is(err, ErrVolumeLabel) {
			t.Errorf("volume label %q: err = %v, want ErrVolumeLabel", l, err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("failed writes wrote %d bytes", buf.Len())
	}
}

// errWriter fails after n bytes.
type errWriter struct{ n int }

var errFull = errors.New("disk full")

func (w *errWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, errFull
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	for _, v := range variants {
		// Full before the metadata, before the image, inside the image.
		for _, n := range []int{0, metaBlocks * BlockSize, int(Size(v.o)) - 1} {
			if err := Write(&errWriter{n: n}, formattest.BootDisk(t, mib), v.o); !errors.Is(err, errFull) {
				t.Errorf("%s, writer full after %d bytes: err = %v", v.name, n, err)
			}
		}
	}
}

// The volume label is the PVD's volume identifier, space-padded; any
// printable ASCII up to 32 bytes is taken as given.
func TestVolumeLabel(t *testing.T) {
	for _, c := range []struct{ label, want string }{
		{"", VolumeID}, {"cidata", "cidata"}, {"config-2", "config-2"}, {strings.Repeat("L", MaxVolumeLabel), strings.Repeat("L", MaxVolumeLabel)},
	} {
		b := build(t, formattest.BootDisk(t, mib), Options{Time: stamp, VolumeLabel: c.label})
		field := b[pvdLBA*BlockSize+pvdVolumeIDOffset:][:pvdIDLen]
		if want := c.want + strings.Repeat(" ", pvdIDLen-len(c.want)); string(field) != want {
			t.Errorf("label %q: volume identifier %q, want %q", c.label, field, want)
		}
	}
}
