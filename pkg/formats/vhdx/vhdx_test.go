package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf16"

	"github.com/tinyvm-oci/tinyvm-oci/internal/formattest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// fill returns n bytes of a pattern that differs per seed.
func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)*7 + seed | 1
	}
	return b
}

// chunkDisk has data on both sides of the first chunk boundary (block
// 4096 at 4 GiB with 1 MiB blocks), so its BAT interleaves a sector bitmap
// entry between stored blocks, and a partial last block.
func chunkDisk(t testing.TB) disk.Disk {
	boot := formattest.BootDisk(t, 512)
	first := make([]byte, 512)
	if _, err := boot.ReadAt(first, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	const size = 4<<30 + 2*mib + 4096 // 4099 blocks, the last one partial
	return &formattest.Sparse{Len: size, Patches: []formattest.Patch{
		{Off: 0, Data: first},
		{Off: 4095*mib + 100, Data: fill(1000, 1)},   // last block of chunk 0
		{Off: 4096 * mib, Data: fill(mib, 2)},        // first block of chunk 1
		{Off: 4097*mib + mib/2, Data: fill(4096, 3)}, // middle of the next
		{Off: size - 512, Data: fill(512, 4)},        // the partial last block
	}}
}

func write(t testing.TB, d disk.Disk, o Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, d, o); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t testing.TB, dir, name string, d disk.Disk, o Options) string {
	t.Helper()
	return formattest.WriteFile(t, filepath.Join(dir, name), func(w io.Writer) error { return Write(w, d, o) })
}

func TestCRC32CKnownAnswer(t *testing.T) {
	// The CRC-32C check value from the CRC catalogue (and RFC 3720's
	// iSCSI CRC): "123456789" gives 0xE3069283.
	if got := crc32.Checksum([]byte("123456789"), castagnoli); got != 0xE3069283 {
		t.Fatalf("CRC-32C(123456789) = %#x, want 0xe3069283", got)
	}
	// setChecksum and checksumOK agree on a buffer with the field zeroed.
	buf := []byte("abcdXXXX123456789")
	setChecksum(buf, 4)
	want := crc32.Checksum(append([]byte("abcd\x00\x00\x00\x00"), "123456789"...), castagnoli)
	if got := binary.LittleEndian.Uint32(buf[4:]); got != want {
		t.Fatalf("setChecksum stored %#x, want %#x", got, want)
	}
	if !checksumOK(buf, 4) {
		t.Fatal("checksumOK rejects a buffer setChecksum produced")
	}
	buf[0] ^= 1
	if checksumOK(buf, 4) {
		t.Fatal("checksumOK accepts a changed buffer")
	}
}

func TestGUIDLayout(t *testing.T) {
	// The BAT region's GUID as MS-VHDX prints it and as QEMU's bat_guid
	// stores it: Data1..Data3 little-endian, Data4 as written.
	g := mustGUID("2dc27766-f623-4200-9d64-115e9bfd4a08")
	want := []byte{0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08}
	if !bytes.Equal(g[:], want) {
		t.Fatalf("on-disk bytes % x, want % x", g[:], want)
	}
	if g.String() != "2dc27766-f623-4200-9d64-115e9bfd4a08" {
		t.Fatalf("String() = %s", g)
	}
	h := hashGUID([]byte("seed"), "x")
	if s := h.String(); s[14] != '8' || !bytes.ContainsRune([]byte("89ab"), rune(s[19])) {
		t.Fatalf("%s is not an RFC 9562 version 8 UUID", s)
	}
}

// TestLayout checks the structures at the offsets the spec fixes.
func TestLayout(t *testing.T) {
	b := write(t, formattest.BootDisk(t, mib), Options{})
	if len(b) != 5*mib {
		t.Fatalf("default file is %d bytes, want 5 MiB (4 MiB of structure, one block)", len(b))
	}
	if string(b[:8]) != "vhdxfile" {
		t.Fatalf("file type identifier %q", b[:8])
	}
	creator := make([]uint16, len(Creator))
	for i := range creator {
		creator[i] = binary.LittleEndian.Uint16(b[8+2*i:])
	}
	if got := string(utf16.Decode(creator)); got != Creator {
		t.Fatalf("creator %q, want %q", got, Creator)
	}
	le := binary.LittleEndian
	for i, off := range []int{header1Offset, header2Offset} {
		hb := b[off : off+headerSize]
		if string(hb[:4]) != "head" || !checksumOK(hb, 4) {
			t.Fatalf("header %d: bad signature or checksum", i+1)
		}
		if seq := le.Uint64(hb[8:]); seq != uint64(i+1) {
			t.Fatalf("header %d: sequence number %d", i+1, seq)
		}
		if !bytes.Equal(hb[48:64], make([]byte, 16)) {
			t.Fatalf("header %d: log GUID is not zero", i+1)
		}
		if v, lv, ll, lo := le.Uint16(hb[66:]), le.Uint16(hb[64:]), le.Uint32(hb[68:]), le.Uint64(hb[72:]); v != 1 || lv != 0 || ll != mib || lo != mib {
			t.Fatalf("header %d: version %d, log version %d, log length %d, log offset %d", i+1, v, lv, ll, lo)
		}
	}
	rt1 := b[regionTable1Offset : regionTable1Offset+headerSlotSize]
	rt2 := b[regionTable2Offset : regionTable2Offset+headerSlotSize]
	if string(rt1[:4]) != "regi" || !checksumOK(rt1, 4) || !bytes.Equal(rt1, rt2) {
		t.Fatal("region tables: bad signature or checksum, or they differ")
	}
	if !disk.IsZero(b[logOffset : logOffset+logLength]) {
		t.Fatal("the log region is not empty")
	}
	md := b[metadataOffset:]
	if string(md[:8]) != "metadata" || le.Uint16(md[10:]) != 5 {
		t.Fatalf("metadata table: signature %q, %d entries", md[:8], le.Uint16(md[10:]))
	}
	// The BAT: one fully present block at 4 MiB.
	if e := le.Uint64(b[batOffset:]); e != 4*mib|payloadBlockFullyPresent {
		t.Fatalf("BAT entry 0 = %#x, want %#x", e, 4*mib|payloadBlockFullyPresent)
	}
	if !bytes.HasPrefix(b[4*mib:], sectorBytes(t)) || !disk.IsZero(b[4*mib+512:]) {
		t.Fatal("block 0 does not hold the boot sector followed by zeros")
	}
}

func sectorBytes(t testing.TB) []byte {
	s, err := sector.Build(sector.Options{Then: sector.PowerOff})
	if err != nil {
		t.Fatal(err)
	}
	return s.Bytes()
}

// TestBATInterleave checks, entry by entry, that sector bitmap entries
// follow every chunk of 4096 payload entries and that the stored blocks
// are where the BAT says.
func TestBATInterleave(t *testing.T) {
	d := chunkDisk(t)
	b := write(t, d, Options{})
	g := newGeometry(d.Size(), mib, LogicalSectorSize)
	if g.chunkRatio != 4096 || g.payload != 4099 || g.entries != 4100 {
		t.Fatalf("geometry %+v", g)
	}
	le := binary.LittleEndian
	stored := map[int64]bool{0: true, 4095: true, 4096: true, 4097: true, 4098: true}
	for blk := int64(0); blk < g.payload; blk++ {
		e := le.Uint64(b[batOffset+8*g.batIndex(blk):])
		if !stored[blk] {
			if e != 0 {
				t.Fatalf("block %d: entry %#x, want 0 (NOT_PRESENT)", blk, e)
			}
			continue
		}
		if e&batStateMask != payloadBlockFullyPresent {
			t.Fatalf("block %d: state %d", blk, e&batStateMask)
		}
		want := make([]byte, mib)
		if _, err := d.ReadAt(want[:min(mib, d.Size()-blk*mib)], blk*mib); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		off := e & batOffsetMask
		if !bytes.Equal(b[off:off+mib], want) {
			t.Fatalf("block %d at %d does not hold its data", blk, off)
		}
	}
	if sb := le.Uint64(b[batOffset+8*4096:]); sb != 0 {
		t.Fatalf("sector bitmap entry 4096 = %#x, want 0", sb)
	}
	if g.batIndex(4096) != 4097 {
		t.Fatalf("payload block 4096 is BAT entry %d, want 4097", g.batIndex(4096))
	}
	if int64(len(b)) != 4*mib+5*mib {
		t.Fatalf("file is %d bytes, want 9 MiB", len(b))
	}
}

func TestDeterministic(t *testing.T) {
	a := write(t, formattest.BootDisk(t, mib), Options{})
	b := write(t, formattest.BootDisk(t, mib), Options{})
	if !bytes.Equal(a, b) {
		t.Fatal("identical inputs gave different files")
	}
	other := &formattest.Sparse{Len: mib, Patches: []formattest.Patch{{Off: 0, Data: fill(512, 9)}}}
	c := write(t, other, Options{})
	// The headers' GUIDs (file write at 16, data write at 32) follow the
	// content.
	if bytes.Equal(a[header1Offset+16:header1Offset+48], c[header1Offset+16:header1Offset+48]) {
		t.Fatal("different contents gave the same file and data write GUIDs")
	}
	big := write(t, formattest.BootDisk(t, 2*mib), Options{})
	if bytes.Equal(a[header1Offset+16:header1Offset+32], big[header1Offset+16:header1Offset+32]) {
		t.Fatal("different sizes gave the same file write GUID")
	}
}

func TestBlockSizeFor(t *testing.T) {
	for _, c := range []struct{ size, want int64 }{
		{512, mib},
		{mib, mib},
		{1 << 40, mib},         // 2^20 blocks of 1 MiB
		{1<<40 + 512, 2 * mib}, // one more would pass 2^20
		{8 << 40, 8 * mib},
		{MaxSize, 64 * mib},
	} {
		if got := BlockSizeFor(c.size); got != c.want {
			t.Errorf("BlockSizeFor(%d) = %d, want %d", c.size, got, c.want)
		}
		if g := newGeometry(c.size, BlockSizeFor(c.size), LogicalSectorSize); g.batLength() > 9*mib {
			t.Errorf("size %d: BAT of %d bytes", c.size, g.batLength())
		}
	}
}

func TestWriteErrors(t *testing.T) {
	if err := Write(io.Discard, formattest.BootDisk(t, mib), Options{BlockSize: 3 * mib}); !errors.Is(err, ErrBlockSize) {
		t.Fatalf("3 MiB blocks: %v, want ErrBlockSize", err)
	}
	if err := Write(io.Discard, formattest.BootDisk(t, mib), Options{BlockSize: 512 * kib}); !errors.Is(err, ErrBlockSize) {
		t.Fatalf("512 KiB blocks: %v, want ErrBlockSize", err)
	}
	if err := Write(io.Discard, &formattest.Sparse{Len: MaxSize + 512}, Options{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over 64 TiB: %v, want ErrTooLarge", err)
	}
	fw := &failWriter{after: 3}
	if err := Write(fw, formattest.BootDisk(t, mib), Options{}); !errors.Is(err, errFail) {
		t.Fatalf("failing writer: %v", err)
	}
	if fw.calls != 4 {
		t.Fatalf("writer called %d times after failing; errors must be sticky", fw.calls-4)
	}
}

var errFail = errors.New("disk full")

type failWriter struct{ after, calls int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.calls++
	if f.calls > f.after {
		return 0, errFail
	}
	return len(p), nil
}

func TestInspect(t *testing.T) {
	for _, c := range []struct {
		name   string
		d      disk.Disk
		blocks int64
	}{
		{"default", formattest.BootDisk(t, mib), 1},
		{"512B", formattest.BootDisk(t, 512), 1},
		{"1GiB", formattest.BootDisk(t, 1<<30), 1},
		{"empty", &formattest.Sparse{Len: 1 << 30}, 0},
		{"chunks", chunkDisk(t), 5},
		{"2TiB", formattest.BootDisk(t, 2<<40), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := write(t, c.d, Options{})
			if !Detect(b[:64*kib], bytes.NewReader(b), int64(len(b))) {
				t.Fatal("Detect does not recognise the output")
			}
			got, err := Inspect(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			bs := BlockSizeFor(c.d.Size())
			want := info.Info{Format: Type, Subformat: "dynamic", VirtualSize: c.d.Size(), FileSize: int64(len(b)), BlockSize: bs, Allocated: c.blocks * bs}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("Inspect = %+v, want %+v", *got, want)
			}
		})
	}
	if Detect([]byte("conectix"), nil, 0) || Detect([]byte("vhdx"), nil, 0) {
		t.Fatal("Detect accepts a file that is not VHDX")
	}
}

func TestInspectCorrupt(t *testing.T) {
	good := write(t, formattest.BootDisk(t, mib), Options{})
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	flip := func(off int) []byte { return mutate(func(b []byte) []byte { b[off] ^= 0x40; return b }) }
	cases := map[string][]byte{
		"empty":             nil,
		"signature":         flip(0),
		"both headers":      mutate(func(b []byte) []byte { b[header1Offset+8] ^= 1; b[header2Offset+8] ^= 1; return b }),
		"region table crc":  flip(regionTable1Offset + 20),
		"metadata sig":      flip(metadataOffset),
		"truncated header":  good[:header2Offset],
		"truncated regions": good[:regionTable1Offset+100],
		"truncated BAT":     good[:batOffset+4],
		"truncated block":   good[:4*mib+512],
		"no data block":     good[:4*mib],
		"bad BAT state": mutate(func(b []byte) []byte {
			b[batOffset] = b[batOffset]&^7 | 4
			return b
		}),
		"block in header": mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[batOffset:], payloadBlockFullyPresent)
			return b
		}),
		"block on metadata": mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[batOffset:], metadataOffset|payloadBlockFullyPresent)
			return b
		}),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Inspect(bytes.NewReader(b), int64(len(b)))
			if !errors.Is(err, info.ErrCorrupt) {
				t.Fatalf("Inspect = %v, want an error wrapping info.ErrCorrupt", err)
			}
		})
	}
	// One damaged header is not corruption: the other is used.
	b := flip(header2Offset + 20)
	if _, err := Inspect(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("header 2 damaged: %v; header 1 should be used", err)
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, c := range []struct {
		name string
		size int64
	}{{"1MiB", mib}, {"1TiB", 1 << 40}} {
		b.Run(c.name, func(b *testing.B) {
			d := formattest.BootDisk(b, c.size)
			formattest.BenchWrite(b, func(w io.Writer) error { return Write(w, d, Options{}) })
		})
	}
}
