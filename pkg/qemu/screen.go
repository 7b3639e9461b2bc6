package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// ErrPPM is a screendump that is not a binary PPM image QEMU would write.
var ErrPPM = errors.New("qemu: bad PPM image")

// maxPPMSide bounds a screendump's width and height, so a corrupt header
// cannot make DecodePPM allocate gigabytes: QEMU's largest VGA modes are
// far smaller.
const maxPPMSide = 16384

// DecodePPM reads a binary PPM (P6) image with 8-bit samples, the format
// of QEMU's screendump: "P6", width, height and maxval as decimal text
// separated by white space (and # comments), one more white space byte,
// then width*height RGB triples.
func DecodePPM(r io.Reader) (*image.NRGBA, error) {
	br := bufio.NewReader(r)
	magic, err := ppmToken(br)
	if err != nil {
		return nil, err
	}
	if magic != "P6" {
		return nil, fmt.Errorf("%w: magic %q, want P6", ErrPPM, magic)
	}
	var v [3]int
	for i, name := range []string{"width", "height", "maxval"} {
		tok, err := ppmToken(br)
		if err != nil {
			return nil, err
		}
		if v[i], err = strconv.Atoi(tok); err != nil || v[i] <= 0 {
			return nil, fmt.Errorf("%w: %s %q is not a positive number", ErrPPM, name, tok)
		}
	}
	w, h, maxval := v[0], v[1], v[2]
	if w > maxPPMSide || h > maxPPMSide {
		return nil, fmt.Errorf("%w: %dx%d is larger than %d on a side", ErrPPM, w, h, maxPPMSide)
	}
	if maxval != 255 {
		return nil, fmt.Errorf("%w: maxval %d, want 255 (8-bit samples)", ErrPPM, maxval)
	}
	// ppmToken stopped on the single white space byte before the pixels.
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	row := make([]byte, 3*w)
	for y := 0; y < h; y++ {
		if _, err := io.ReadFull(br, row); err != nil {
			return nil, fmt.Errorf("%w: row %d of %d: %w", ErrPPM, y, h, err)
		}
		px := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			px[4*x], px[4*x+1], px[4*x+2], px[4*x+3] = row[3*x], row[3*x+1], row[3*x+2], 0xff
		}
	}
	return img, nil
}

// ppmToken reads one header token, skipping white space and comments
// before it, and consumes the one white space byte after it.
func ppmToken(br *bufio.Reader) (string, error) {
	var tok []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return "", fmt.Errorf("%w: header: %w", ErrPPM, err)
		}
		switch {
		case c == '#' && len(tok) == 0:
			if _, err := br.ReadString('\n'); err != nil {
				return "", fmt.Errorf("%w: header comment: %w", ErrPPM, err)
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f':
			if len(tok) > 0 {
				return string(tok), nil
			}
		case len(tok) >= 16:
			return "", fmt.Errorf("%w: header token %q... too long", ErrPPM, tok)
		default:
			tok = append(tok, c)
		}
	}
}

// Screenshot writes the guest's screen to path as a PNG: QEMU's
// screendump (a PPM in the process's scratch directory), re-encoded with
// image/png. path is written under a temp name beside it and renamed, so
// it is never half-written.
func (p *Process) Screenshot(path string) error {
	ppm := filepath.Join(filepath.Dir(p.qmp), "screen.ppm")
	if err := p.Screendump(ppm); err != nil {
		return err
	}
	defer os.Remove(ppm)
	f, err := os.Open(ppm)
	if err != nil {
		return fmt.Errorf("qemu: screendump: %w", err)
	}
	img, err := DecodePPM(f)
	f.Close()
	if err != nil {
		return err
	}
	return WritePNG(path, img)
}

// WritePNG encodes img to path through a temp file in the same directory,
// renamed into place once complete; the file is 0644.
func WritePNG(path string, img image.Image) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("qemu: screenshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	err = (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(tmp, img)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("qemu: screenshot: %w", err)
	}
	return nil
}
