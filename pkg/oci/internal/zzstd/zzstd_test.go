package zzstd

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/internal/ztest"
)

// disk is a small VM's raw disk in outline: data at both ends and
// partition data after the first 32 KiB, zeros between.
func disk() []byte {
	b := make([]byte, 1<<20)
	copy(b, bytes.Repeat([]byte("MBR and GPT "), 1500))
	copy(b[32<<10:], ztest.Sample(3, 8<<10))
	copy(b[len(b)-16<<10:], bytes.Repeat([]byte("backup GPT "), 300))
	return b
}

var cases = []struct {
	name string
	data []byte
}{
	{"empty", nil},
	{"one-zero", []byte{0}},
	{"one-byte", []byte{7}},
	{"zeros-511", make([]byte, 511)},
	{"zeros-64k-minus-1", make([]byte, minRun-1)},
	{"zeros-64k", make([]byte, minRun)},
	{"zeros-64k-plus-259", make([]byte, minRun+259)},
	{"zeros-1MiB-plus-7", make([]byte, 1<<20+7)},
	{"data-then-zeros-64k-plus-3", append(bytes.Repeat([]byte{9}, 700), make([]byte, minRun+3)...)},
	{"zeros-then-byte", append(make([]byte, 3*maxBlock+5), 1)},
	{"text-over-a-stretch", bytes.Repeat([]byte("tinyvm "), 2*maxStretch/7+100)},
	{"random-over-a-stretch", ztest.Sample(4, 3*maxStretch)},
	{"disk", disk()},
	{"mixed-1", ztest.Sample(1, 3<<20)},
	{"mixed-2", ztest.Sample(2, 1<<20+333)},
}

// compress writes data through a Writer in writes of the given size; with
// holes, a write that is all zeros goes through WriteZeros.
func compress(t testing.TB, data []byte, write int, holes bool) []byte {
	t.Helper()
	var out bytes.Buffer
	z, err := NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	for p := data; len(p) > 0; {
		n := min(write, len(p))
		if holes && bytes.Count(p[:n], []byte{0}) == n {
			err = z.WriteZeros(int64(n))
		} else {
			_, err = z.Write(p[:n])
		}
		if err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func unzstd(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got, err := zr.DecodeAll(b, nil)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return got
}

// TestRoundTrip decodes with klauspost's decoder, for many write sizes,
// with and without WriteZeros, and checks that the output depends only on
// the bytes.
func TestRoundTrip(t *testing.T) {
	for _, c := range cases {
		want := compress(t, c.data, 1<<20, false)
		if got := unzstd(t, want); !bytes.Equal(got, c.data) {
			t.Errorf("%s: decoded %d bytes, differ from the %d written", c.name, len(got), len(c.data))
		}
		for _, write := range []int{1, 100, 512, 4097, 64 << 10} {
			if write < 512 && len(c.data) > 1<<17 {
				continue
			}
			for _, holes := range []bool{false, true} {
				if got := compress(t, c.data, write, holes); !bytes.Equal(got, want) {
					t.Errorf("%s write=%d holes=%v: %d bytes, not the %d of one write", c.name, write, holes, len(got), len(want))
				}
			}
		}
	}
}

// TestZstdTool decodes with zstd(1), the reference implementation, which
// also checks the data frames' checksums, and lists the frames.
func TestZstdTool(t *testing.T) {
	tooltest.Require(t, "zstd", tooltest.Zstd)
	for _, c := range cases {
		b := compress(t, c.data, 4097, true)
		cmd := exec.Command("zstd", "-d", "-c", "-q")
		cmd.Stdin = bytes.NewReader(b)
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: zstd -d: %v", c.name, err)
		}
		if !bytes.Equal(got, c.data) {
			t.Errorf("%s: zstd -d gave %d bytes, differ from the %d written", c.name, len(got), len(c.data))
		}
	}
}

// TestFrames checks the frame structure of the small disk: a data frame
// for each end and one run frame between, the content sizes adding up to
// the disk.
func TestFrames(t *testing.T) {
	b := compress(t, disk(), 1<<16, true)
	var sizes []uint64
	var kinds []string
	for p := b; len(p) > 0; {
		var h zstd.Header
		if err := h.Decode(p); err != nil {
			t.Fatalf("frame %d: %v", len(sizes), err)
		}
		if !h.HasFCS {
			t.Fatalf("frame %d has no content size", len(sizes))
		}
		sizes = append(sizes, h.FrameContentSize)
		n := frameLen(t, p)
		kind := "data"
		if h.WindowSize == maxBlock && !h.HasCheckSum {
			kind = "run"
		}
		kinds = append(kinds, kind)
		p = p[n:]
	}
	var total uint64
	for _, s := range sizes {
		total += s
	}
	if got := strings.Join(kinds, " "); got != "data run data" || total != 1<<20 {
		t.Errorf("frames %s, sizes %v: want data run data adding up to 1 MiB", got, sizes)
	}
	if len(b) > 3000 {
		t.Errorf("%d bytes for the small disk", len(b))
	}
}

// frameLen walks one frame's blocks (RFC 8878 section 3.1.1).
func frameLen(t *testing.T, p []byte) int {
	t.Helper()
	fhd := p[4]
	n := 5
	single := fhd&0x20 != 0
	if !single {
		n++
	}
	n += []int{0, 2, 4, 8}[fhd>>6]
	if fhd>>6 == 0 && single {
		n++
	}
	n += []int{0, 1, 2, 4}[fhd&3]
	for {
		h := int(p[n]) | int(p[n+1])<<8 | int(p[n+2])<<16
		n += 3
		switch size := h >> 3; (h >> 1) & 3 {
		case rleType:
			n++
		default:
			n += size
		}
		if h&1 != 0 {
			break
		}
	}
	if fhd&4 != 0 {
		n += 4
	}
	return n
}

// TestHugeRun writes 1 TiB of holes and a sector: 4 bytes per 128 KiB,
// without touching the zeros, and a content size of the whole.
func TestHugeRun(t *testing.T) {
	var out bytes.Buffer
	z, _ := NewWriter(&out)
	if err := z.WriteZeros(1 << 40); err != nil {
		t.Fatal(err)
	}
	z.Write(bytes.Repeat([]byte{0xaa}, 512))
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(out.Bytes()); err != nil || h.FrameContentSize != 1<<40 {
		t.Fatalf("first frame %+v, %v: want 1 TiB of content", h, err)
	}
	blocks := 1 << 40 / maxBlock
	if n := frameLen(t, out.Bytes()); n != 14+4*blocks {
		t.Errorf("run frame %d bytes, want %d", n, 14+4*blocks)
	}
	if got := unzstd(t, out.Bytes()[frameLen(t, out.Bytes()):]); !bytes.Equal(got, bytes.Repeat([]byte{0xaa}, 512)) {
		t.Errorf("data frame after the run decodes to %d bytes", len(got))
	}
}

// TestHugeRunTool has zstd(1) decode a 64 MiB run between data, and
// list a 64 GiB stream: its frames and their content sizes, which zstd -l
// adds up walking every block (1 TiB's 8 Mi blocks take it 13 s).
func TestHugeRunTool(t *testing.T) {
	tooltest.Require(t, "zstd", tooltest.Zstd)
	data := append(append([]byte("start"), make([]byte, 64<<20)...), "end"...)
	b := compress(t, data, 1<<20, true)
	cmd := exec.Command("zstd", "-d", "-c", "-q")
	cmd.Stdin = bytes.NewReader(b)
	got, err := cmd.Output()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("zstd -d: %d bytes, %v", len(got), err)
	}

	var out bytes.Buffer
	z, _ := NewWriter(&out)
	z.Write([]byte("MBR"))
	z.WriteZeros(64<<30 - 6)
	z.Write([]byte("end"))
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "64g.zst")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("zstd", "-l", "-v", path).CombinedOutput()
	if err != nil {
		t.Fatalf("zstd -lv: %v: %s", err, list)
	}
	for _, want := range []string{"# Zstandard Frames: 3", "(68719476736 B)"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("zstd -lv of 64 GiB says %q, want %q", list, want)
		}
	}
}

func TestSticky(t *testing.T) {
	z, _ := NewWriter(io.Discard)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Write([]byte{1}); err != ErrClosed {
		t.Errorf("write after close: %v, want %v", err, ErrClosed)
	}
	if err := z.WriteZeros(1); err != ErrClosed {
		t.Errorf("zeros after close: %v, want %v", err, ErrClosed)
	}
	z, _ = NewWriter(io.Discard)
	if err := z.WriteZeros(-1); err == nil {
		t.Error("-1 zeros accepted")
	}
	fail := &ztest.FailWriter{After: 1}
	z, _ = NewWriter(fail)
	z.Write([]byte("x"))
	z.WriteZeros(1 << 30)
	z.Write([]byte("y"))
	err1 := z.Close()
	if err1 == nil {
		t.Fatal("a failing writer gave no error")
	}
	if _, err := z.Write([]byte("z")); err != err1 {
		t.Errorf("error not sticky: %v then %v", err1, err)
	}
}

// FuzzWriter checks that whatever is written decodes back, and the same
// however it is split, seeded with the cases above; the fuzzer mutates
// the data and the write size.
func FuzzWriter(f *testing.F) {
	for _, c := range cases {
		if len(c.data) <= 1<<17 {
			f.Add(c.data, uint16(513))
		}
	}
	f.Add(append(make([]byte, minRun+1000), 1, 2, 3), uint16(1000))
	f.Fuzz(func(t *testing.T, data []byte, write uint16) {
		one := compress(t, data, len(data)+1, false)
		if got := unzstd(t, one); !bytes.Equal(got, data) {
			t.Fatalf("decoded %d bytes, differ from the %d written", len(got), len(data))
		}
		if got := compress(t, data, int(write)+1, true); !bytes.Equal(got, one) {
			t.Fatalf("writes of %d with holes: %d bytes, not the %d of one write", int(write)+1, len(got), len(one))
		}
	})
}
