package info

import (
	"bytes"
	"testing"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "",
		"512-byte-vm.vmdk":    "512-byte-vm.vmdk",
		"disk é.vmdk":         "disk é.vmdk",
		"\x1b[31mred":         `"\x1b[31mred"`,
		"two\nlines":          `"two\nlines"`,
		"\u009b2J":            `"\u009b2J"`, // a C1 control: CSI on some terminals
		"bad\xffutf8":         `"bad\xffutf8"`,
		`"quoted"`:            `"\"quoted\""`,
		"tab\there":           `"tab\there"`,
		"zero\x00width\u200b": `"zero\x00width\u200b"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		`vmdk: bad magic "KDMV"`: `vmdk: bad magic "KDMV"`,
		"ova: \x1b[2J\nline":     `ova: \x1b[2J\nline`,
		"bad \xff byte, é kept":  `bad \xff byte, é kept`,
		"csi \u009b":             `csi \u009b`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %s, want %s", in, got, want)
		}
	}
}

// holes is a SparseReaderAt whose data is at [100, 200).
type holes struct{ *bytes.Reader }

func (holes) NextData(off int64) int64 {
	if off < 200 {
		return max(off, 100)
	}
	return 1 << 62
}

func TestSparse(t *testing.T) {
	r := holes{bytes.NewReader(make([]byte, 300))}
	if !IsHole(r, 0, 100) || IsHole(r, 0, 101) || IsHole(r, 150, 1) || !IsHole(r, 200, 100) {
		t.Error("IsHole does not follow NextData")
	}
	if IsHole(bytes.NewReader(nil), 0, 10) {
		t.Error("a reader that does not know its holes has some")
	}
	s := Section(r, 50, 200)
	if _, ok := s.(SparseReaderAt); !ok {
		t.Fatal("a section of a SparseReaderAt forgets its holes")
	}
	if got := NextData(s, 0); got != 50 {
		t.Errorf("section NextData(0) = %d, want 50", got)
	}
	if _, ok := Section(bytes.NewReader(nil), 0, 0).(SparseReaderAt); ok {
		t.Error("a section of a plain reader claims to know holes")
	}
}
