package qemu

import (
	"bytes"
	"errors"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodePPM(t *testing.T) {
	// 2x2: red, green / blue, white, with a comment and CRLF-free spacing.
	ppm := append([]byte("P6\n# from a test\n2 2\n255\n"),
		0xff, 0, 0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff)
	img, err := DecodePPM(bytes.NewReader(ppm))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 2 || b.Dy() != 2 {
		t.Fatalf("bounds %v", b)
	}
	for _, c := range []struct {
		x, y int
		want color.NRGBA
	}{
		{0, 0, color.NRGBA{0xff, 0, 0, 0xff}}, {1, 0, color.NRGBA{0, 0xff, 0, 0xff}},
		{0, 1, color.NRGBA{0, 0, 0xff, 0xff}}, {1, 1, color.NRGBA{0xff, 0xff, 0xff, 0xff}},
	} {
		if got := img.NRGBAAt(c.x, c.y); got != c.want {
			t.Errorf("pixel (%d,%d) = %v, want %v", c.x, c.y, got, c.want)
		}
	}
	// The PNG holds the same pixels.
	path := filepath.Join(t.TempDir(), "s.png")
	if err := WritePNG(path, img); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if r, g, b, _ := back.At(1, 0).RGBA(); r != 0 || g != 0xffff || b != 0 {
		t.Errorf("PNG pixel (1,0) = %x %x %x, want green", r, g, b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("PNG mode %v, want 0644", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestDecodePPMBad(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"ascii", "P3\n1 1\n255\n0 0 0\n", "magic"},
		{"empty", "", "header"},
		{"width", "P6\n-1 1\n255\n", "width"},
		{"huge", "P6\n100000 100000\n255\n", "larger"},
		{"16-bit", "P6\n1 1\n65535\n", "maxval"},
		{"short", "P6\n2 2\n255\n\x00\x00\x00", "row 0"},
		{"token", "P6\n11111111111111111111 1\n255\n", "too long"},
	} {
		_, err := DecodePPM(strings.NewReader(c.in))
		if !errors.Is(err, ErrPPM) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrPPM saying %q", c.name, err, c.want)
		}
	}
}
