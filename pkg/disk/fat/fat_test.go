package fat_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/disktest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
)

// fill returns n bytes that differ from offset to offset, so a cluster
// written in the wrong place shows.
func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func efiFiles() []fat.File {
	return []fat.File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: fill(364, 1)},
		{Path: "EFI/BOOT/BOOTAA64.EFI", Data: fill(384, 2)},
	}
}

// TestBuild writes volumes of several shapes and checks each with
// fsck.fat and by reading every file back with mtools.
func TestBuild(t *testing.T) {
	// 20 files in the root (two root sectors), 20 in ROOT and 20 in
	// SUB/DEEP: 22 entries with . and .., two directory clusters each.
	many := make([]fat.File, 60)
	for i := range many {
		dir := []string{"", "ROOT/", "SUB/DEEP/"}[i/20]
		many[i] = fat.File{Path: fmt.Sprintf("%sF%02d.BIN", dir, i), Data: fill(i*50, byte(i))}
	}
	tests := []struct {
		name     string
		files    []fat.File
		size     int64
		wantSize int64 // 0: do not check
		clusters int   // used clusters, as fsck.fat counts them
	}{
		// Boot sector, two one-sector FATs, one root sector, then EFI,
		// BOOT and the two files: 8 sectors.
		{"two EFI apps", efiFiles(), 0, 8 * 512, 4},
		{"one empty file", []fat.File{{Path: "EMPTY"}}, 0, 5 * 512, 0}, // one free cluster: fsck.fat wants one
		{"startup.nsh in the root", append(efiFiles(), fat.File{Path: "startup.nsh", Data: []byte("echo hi\r\n")}), 0, 9 * 512, 5},
		{"a file of several clusters", []fat.File{{Path: "BIG.BIN", Data: fill(5000, 3)}}, 0, (4 + 10) * 512, 10},
		// Directories ROOT 2 clusters, SUB 1, DEEP 2; files of i*50 bytes
		// take 203 clusters in all. Boot sector, two FATs of one sector,
		// two root sectors: 213 sectors.
		{"many files", many, 0, 213 * 512, 208},
		{"one file in 16 KiB", efiFiles(), 16 << 10, 16 << 10, 4},
		{"two EFI apps in 2 MiB", efiFiles(), 2 << 20, 2 << 20, 4},    // just under 4085 one-sector clusters
		{"two EFI apps in 4 MiB", efiFiles(), 4 << 20, 4 << 20, 4},    // two sectors per cluster
		{"two EFI apps in 64 MiB", efiFiles(), 64 << 20, 64 << 20, 4}, // 16 KiB clusters
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []fat.Option
			if tt.size > 0 {
				opts = append(opts, fat.WithSize(tt.size))
			}
			img, err := fat.Build(tt.files, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantSize > 0 && int64(len(img)) != tt.wantSize {
				t.Errorf("volume is %d bytes, want %d", len(img), tt.wantSize)
			}
			path := filepath.Join(t.TempDir(), "fat.img")
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			used, _ := disktest.Fsck(t, path)
			if tt.clusters > 0 || tt.wantSize > 0 {
				if used != tt.clusters {
					t.Errorf("fsck.fat counts %d used clusters, want %d", used, tt.clusters)
				}
			}
			var want []disktest.File
			for _, f := range tt.files {
				want = append(want, disktest.File{Path: strings.ToUpper(f.Path), Data: f.Data})
			}
			disktest.ReadBack(t, path, want)
		})
	}
}

func TestReproducible(t *testing.T) {
	files := efiFiles()
	a, err := fat.Build(files)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := fat.Build([]fat.File{files[1], files[0]}) // order does not matter
	if !bytes.Equal(a, b) {
		t.Error("the same files in another order give other bytes")
	}
	volID := func(img []byte) uint32 { return binary.LittleEndian.Uint32(img[39:]) }
	later, _ := fat.Build(files, fat.WithTime(fat.DefaultTime.Add(48*time.Hour)))
	if bytes.Equal(a, later) || volID(a) == volID(later) {
		t.Error("another time gives the same volume or volume id")
	}
	changed := efiFiles()
	changed[0].Data[0] ^= 1
	c, _ := fat.Build(changed)
	if volID(a) == volID(c) {
		t.Error("another file content gives the same volume id")
	}
	// Every entry carries the given time: 2024-01-01 00:00:00 is date
	// (44<<9 | 1<<5 | 1) and time 0. The first root entry is EFI.
	root := a[3*512:]
	if d := binary.LittleEndian.Uint16(root[16:]); d != 44<<9|1<<5|1 {
		t.Errorf("EFI's creation date is %#x", d)
	}
}

// TestTimeClamped: a SOURCE_DATE_EPOCH of 0 (1970) is before FAT's epoch
// and is written as 1980-01-01, not as a wrapped date.
func TestTimeClamped(t *testing.T) {
	img, err := fat.Build(efiFiles(), fat.WithTime(time.Unix(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if d := binary.LittleEndian.Uint16(img[3*512+16:]); d != 0<<9|1<<5|1 {
		t.Errorf("date of 1970 written as %#x, want 1980-01-01 (0x21)", d)
	}
}

func TestHiddenSectors(t *testing.T) {
	img, err := fat.Build(efiFiles(), fat.WithHiddenSectors(64))
	if err != nil {
		t.Fatal(err)
	}
	if h := binary.LittleEndian.Uint32(img[28:]); h != 64 {
		t.Errorf("BPB_HiddSec = %d, want 64", h)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		files []fat.File
		size  int64
		want  error
		text  string
	}{
		{[]fat.File{{Path: "/EFI/X"}}, 0, fat.ErrName, "empty part"},
		{[]fat.File{{Path: "EFI//X"}}, 0, fat.ErrName, "empty part"},
		{[]fat.File{{Path: "LONGFILENAME.EFI"}}, 0, fat.ErrName, "base name of 12 characters"},
		{[]fat.File{{Path: "A.EFIX"}}, 0, fat.ErrName, "extension of 4 characters"},
		{[]fat.File{{Path: "A B"}}, 0, fat.ErrName, `' '`},
		{[]fat.File{{Path: "A.B.C"}}, 0, fat.ErrName, "more than one '.'"},
		{[]fat.File{{Path: "EFI/.."}}, 0, fat.ErrName, "not a name"},
		{[]fat.File{{Path: "X"}, {Path: "x"}}, 0, fat.ErrName, "already a file"},
		{[]fat.File{{Path: "X"}, {Path: "X/Y"}}, 0, fat.ErrName, "already a file"},
		{[]fat.File{{Path: "X/Y"}, {Path: "X"}}, 0, fat.ErrName, "already a directory"},
		{efiFiles(), 3 * 512, fat.ErrTooSmall, "at least 4096 bytes"},
		{efiFiles(), 1000, fat.ErrTooSmall, "multiple of 512"},
		{efiFiles(), 1 << 30, fat.ErrTooBig, "use at most"},
		{[]fat.File{{Path: "BIG", Data: make([]byte, 4085*512)}}, 0, fat.ErrTooBig, "4085 clusters"},
	}
	for _, tt := range tests {
		_, err := fat.Build(tt.files, fat.WithSize(tt.size))
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%v (size %d): got %v, want %v containing %q", tt.files[0].Path, tt.size, err, tt.want, tt.text)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error is more than one line: %q", err)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	files := efiFiles()
	for b.Loop() {
		if _, err := fat.Build(files); err != nil {
			b.Fatal(err)
		}
	}
}
