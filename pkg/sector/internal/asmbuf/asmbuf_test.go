package asmbuf

import (
	"errors"
	"testing"
)

// errExample stands for an assembler's undefined-label sentinel.
var errExample = errors.New("asmbuf: undefined label")

// TestBuf checks labels, fix-ups and the sticky error: a forward and a
// backward reference patch with the label's offset, an undefined label
// and a label defined twice are errors, and the first error stays.
func TestBuf(t *testing.T) {
	b := New("test")
	b.Label("start")
	b.Emit(0xEB, 0)
	b.Fix(Fixup{At: 1, End: 2, Label: "end"})
	b.Emit(0x90)
	b.Fix(Fixup{At: 2, End: 3, Label: "start"})
	b.Label("end")
	out, err := b.Resolve(errExample, func(out []byte, f Fixup, target int) error {
		out[f.At] = byte(target - f.End)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xEB, 1, 0xFD}; string(out) != string(want) {
		t.Errorf("patched % x, want % x", out, want)
	}
	if b.Code[1] != 0 {
		t.Error("Resolve patched the code in place")
	}
	b.Fix(Fixup{At: 0, Label: "nowhere"})
	if _, err := b.Resolve(errExample, func([]byte, Fixup, int) error { return nil }); !errors.Is(err, errExample) {
		t.Errorf("undefined label: %v", err)
	}
	b.Label("start")
	b.Fail("second")
	if err := b.Err(); err == nil || err.Error() != `test: label "start" defined twice` {
		t.Errorf("first error %v, want the duplicate label", err)
	}
	if off, ok := b.Offset("end"); !ok || off != 3 || b.Len() != 3 {
		t.Errorf("Offset(end) = %d, %v; Len %d", off, ok, b.Len())
	}
}
