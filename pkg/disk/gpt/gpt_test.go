package gpt_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/disktest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/gpt"
)

func table() *gpt.Table {
	return &gpt.Table{
		DiskGUID: gpt.HashGUID([]byte("disk")),
		Partitions: []gpt.Partition{{
			Type: gpt.ESP, GUID: gpt.HashGUID([]byte("esp")),
			FirstLBA: 64, LastLBA: 127, Name: "EFI System", // sgdisk cautions about an end off a 64-sector boundary
		}},
	}
}

// writeDisk writes head and tail into a sparse file of size bytes.
func writeDisk(t *testing.T, size int64, head, tail []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(head, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(tail, size-int64(len(tail))); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBuildVerified(t *testing.T) {
	// 1 MiB is the default disk; 3 TiB needs the protective record's
	// size capped at 2^32-1 sectors.
	for _, size := range []int64{1 << 20, 504 << 10, 3 << 40} {
		tab := table()
		head, tail, err := tab.Build(size, bytes.Repeat([]byte{0x90}, 440))
		if err != nil {
			t.Fatal(err)
		}
		path := writeDisk(t, size, head, tail)
		j := disktest.VerifyGPT(t, path)
		sectors := uint64(size / 512)
		if j.Label != "gpt" || j.ID != tab.DiskGUID.String() || j.FirstLBA != 34 || j.LastLBA != sectors-34 {
			t.Errorf("%d bytes: sfdisk reads label %s id %s usable %d-%d; want gpt %s 34-%d",
				size, j.Label, j.ID, j.FirstLBA, j.LastLBA, tab.DiskGUID, sectors-34)
		}
		if len(j.Partitions) != 1 {
			t.Fatalf("%d bytes: sfdisk reads %d partitions, want 1", size, len(j.Partitions))
		}
		p := j.Partitions[0]
		if p.Start != 64 || p.Size != 64 || p.Type != "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" ||
			p.UUID != tab.Partitions[0].GUID.String() || p.Name != "EFI System" {
			t.Errorf("%d bytes: sfdisk reads %+v", size, p)
		}
		if head[440] != 0x00 || !bytes.Equal(head[:440], bytes.Repeat([]byte{0x90}, 440)) ||
			head[446+4] != 0xEE || head[510] != 0x55 || head[511] != 0xAA {
			t.Errorf("%d bytes: protective MBR: code, signature 0, type % x, boot signature % x", size, head[446+4], head[510:512])
		}

		// Our reader agrees with the table written.
		f, _ := os.Open(path)
		got, err := gpt.Read(f, size)
		f.Close()
		if err != nil || !reflect.DeepEqual(got, tab) {
			t.Errorf("%d bytes: Read = %+v, %v; want %+v", size, got, err, tab)
		}
	}
}

// TestReadDamaged: a bad primary falls back to the backup; when both are
// bad the error says why.
func TestReadDamaged(t *testing.T) {
	const size = 1 << 20
	tab := table()
	head, tail, err := tab.Build(size, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, size)
	copy(img, head)
	copy(img[size-len(tail):], tail)

	broken := bytes.Clone(img)
	broken[512+40] ^= 1 // primary FirstUsableLBA: header CRC no longer matches
	got, err := gpt.Read(bytes.NewReader(broken), size)
	if err != nil || !reflect.DeepEqual(got, tab) {
		t.Errorf("Read with a damaged primary = %v, %v; want the backup's table", got, err)
	}
	broken[size-512+40] ^= 1
	if _, err := gpt.Read(bytes.NewReader(broken), size); !errors.Is(err, gpt.ErrNoTable) || !strings.Contains(err.Error(), "header CRC") {
		t.Errorf("both headers damaged: %v", err)
	}

	entries := bytes.Clone(img)
	entries[2*512+56] ^= 1 // primary's first entry name
	entries[size-33*512+56] ^= 1
	if _, err := gpt.Read(bytes.NewReader(entries), size); !errors.Is(err, gpt.ErrNoTable) || !strings.Contains(err.Error(), "entry array CRC") {
		t.Errorf("entries damaged: %v", err)
	}
	if _, err := gpt.Read(bytes.NewReader(make([]byte, size)), size); !errors.Is(err, gpt.ErrNoTable) || !strings.Contains(err.Error(), "EFI PART") {
		t.Errorf("zero disk: %v", err)
	}
}

func TestBuildBadLayout(t *testing.T) {
	esp := func(first, last uint64) gpt.Partition {
		return gpt.Partition{Type: gpt.ESP, FirstLBA: first, LastLBA: last}
	}
	tests := []struct {
		size  int64
		boot  int
		parts []gpt.Partition
		text  string
	}{
		{1000, 0, nil, "multiple of 512"},
		{67 * 512, 0, nil, "at least 68 sectors"},
		{1 << 20, 441, nil, "441 bytes of boot code"},
		{1 << 20, 0, []gpt.Partition{esp(33, 40)}, "outside 34-2014"},
		{1 << 20, 0, []gpt.Partition{esp(64, 2015)}, "outside 34-2014"},
		{1 << 20, 0, []gpt.Partition{esp(70, 64)}, "70-64"},
		{1 << 20, 0, []gpt.Partition{esp(64, 80), esp(80, 90)}, "overlap"},
		{1 << 20, 0, []gpt.Partition{{FirstLBA: 64, LastLBA: 70}}, "no type"},
		{1 << 20, 0, []gpt.Partition{{Type: gpt.ESP, FirstLBA: 64, LastLBA: 70, Name: strings.Repeat("n", 37)}}, "longer than 36"},
	}
	for _, tt := range tests {
		_, _, err := (&gpt.Table{Partitions: tt.parts}).Build(tt.size, make([]byte, tt.boot))
		if !errors.Is(err, gpt.ErrLayout) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("size %d, %d bytes of code, %v: got %v, want %q", tt.size, tt.boot, tt.parts, err, tt.text)
		}
	}
}

func TestGUID(t *testing.T) {
	const s = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	g, err := gpt.ParseGUID(s)
	if err != nil || g.String() != s {
		t.Fatalf("ParseGUID(%s) = %v, %v", s, g, err)
	}
	// On disk the first three fields are little-endian.
	if want := []byte{0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B}; !bytes.Equal(g[:10], want) {
		t.Errorf("on-disk bytes % x, want % x", g[:10], want)
	}
	if _, err := gpt.ParseGUID(strings.ToLower(s)); err != nil {
		t.Errorf("lower case: %v", err)
	}
	for _, bad := range []string{"", s[:35], strings.Replace(s, "-", "+", 1), strings.Replace(s, "C", "G", 1)} {
		if _, err := gpt.ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) accepted", bad)
		}
	}
	a, b := gpt.HashGUID([]byte("x")), gpt.HashGUID([]byte("x"))
	if a != b || a == gpt.HashGUID([]byte("y")) || a == gpt.HashGUID([]byte("x"), nil) {
		t.Error("HashGUID is not a function of its inputs")
	}
	// Version 8, variant 10: the 15th and 20th characters of the text.
	if str := a.String(); str[14] != '8' || !strings.ContainsRune("89AB", rune(str[19])) {
		t.Errorf("HashGUID = %s, want version 8 and the RFC 9562 variant", str)
	}
}
