package oci

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
)

// unpackDir writes the files of an ORAS directory layer (AnnotationUnpack
// "true"): a gzip-compressed tar of title/ and plain files in it. The
// files land in the output directory itself, not in title/. Anything else
// in the tar (a link, a device, a subdirectory, a name outside title/) is
// ErrUnsafe; the compressed blob is checked against its digest and the tar
// against AnnotationUnpackDigest when present.
func (x *extractor) unpackDir(img v1.Image, i int, d v1.Descriptor, seen map[string]bool) error {
	title := d.Annotations[AnnotationTitle]
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return fmt.Errorf("oci: layer %d (%s): %w", i, title, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("oci: layer %d (%s): %w", i, title, err)
	}
	defer rc.Close()
	// At most the limit of compressed bytes, then of each file.
	ch := sha256.New()
	counted := &countWriter{w: ch}
	zr, err := gzip.NewReader(io.TeeReader(io.LimitReader(rc, x.max+1), counted))
	if err != nil {
		return fmt.Errorf("%w: layer %d (%s): %v", ErrDigest, i, title, err)
	}
	uh := sha256.New()
	if err := x.dirTar(io.TeeReader(zr, uh), title, seen); err != nil {
		return fmt.Errorf("layer %d (%s): %w", i, title, err)
	}
	// Read to the end, so both digests cover the whole layer.
	if _, err := io.Copy(io.Discard, io.TeeReader(zr, uh)); err != nil {
		return fmt.Errorf("%w: layer %d (%s): %v", ErrDigest, i, title, err)
	}
	if _, err := io.Copy(io.Discard, io.TeeReader(io.LimitReader(rc, x.max+1-counted.n), counted)); err != nil {
		return fmt.Errorf("oci: layer %d (%s): %w", i, title, err)
	}
	if counted.n > x.max {
		return fmt.Errorf("%w: layer %d (%s) is over %d bytes", ErrTooLarge, i, title, x.max)
	}
	if counted.n != d.Size || sum(ch) != d.Digest {
		return fmt.Errorf("%w: layer %d (%s): got %d bytes %s, manifest says %d bytes %s", ErrDigest, i, title, counted.n, sum(ch), d.Size, d.Digest)
	}
	if want := d.Annotations[AnnotationUnpackDigest]; want != "" && sum(uh).String() != want {
		return fmt.Errorf("%w: layer %d (%s): tar %s, %s says %s", ErrDigest, i, title, sum(uh), AnnotationUnpackDigest, want)
	}
	return nil
}

// dirTar reads the tar of a directory layer titled dir.
func (x *extractor) dirTar(r io.Reader, dir string, seen map[string]bool) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("oci: tar: %w", err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		rel, ok := strings.CutPrefix(name, dir+"/")
		switch {
		case !ok:
			return fmt.Errorf("%w: %q is outside %s/", ErrUnsafe, hdr.Name, dir)
		case hdr.Typeflag == tar.TypeDir && rel == "":
			continue // the directory itself
		case hdr.Typeflag != tar.TypeReg:
			return fmt.Errorf("%w: %q is not a plain file (tar type %q)", ErrUnsafe, hdr.Name, hdr.Typeflag)
		}
		if err := checkName(rel); err != nil {
			return err
		}
		if seen[rel] {
			return fmt.Errorf("%w: %q given twice", ErrUnsafe, rel)
		}
		seen[rel] = true
		if hdr.Size > x.max {
			return fmt.Errorf("%w: %q is %d bytes, limit %d", ErrTooLarge, hdr.Name, hdr.Size, x.max)
		}
		n, err := x.write(rel, tr)
		if err != nil {
			return err
		}
		if n != hdr.Size {
			return fmt.Errorf("oci: tar: %q: read %d of %d bytes", hdr.Name, n, hdr.Size)
		}
	}
}

// unzstd writes the raw disk of a KubeVirt VM artifact's disk layer
// (DiskRawZstdMediaType), named by its title without ".zst": the zstd
// blob is checked against its digest, and the disk against the size
// limit as it is decompressed.
func (x *extractor) unzstd(img v1.Image, i int, d v1.Descriptor, seen map[string]bool) error {
	title := d.Annotations[AnnotationTitle]
	name := strings.TrimSuffix(title, ".zst")
	if err := checkName(name); err != nil {
		return fmt.Errorf("layer %d: %w", i, err)
	}
	if seen[name] {
		return fmt.Errorf("%w: layer %d: %q given twice", ErrUnsafe, i, name)
	}
	seen[name] = true
	if d.Size > x.max || d.Size < 0 {
		return fmt.Errorf("%w: layer %d (%s) is %d bytes, limit %d", ErrTooLarge, i, title, d.Size, x.max)
	}
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return fmt.Errorf("oci: layer %d (%s): %w", i, title, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("oci: layer %d (%s): %w", i, title, err)
	}
	defer rc.Close()
	h := sha256.New()
	counted := &countWriter{w: h}
	// One goroutine and a bounded window, so that a hostile frame costs
	// little memory; the limit on the output bounds the rest.
	zr, err := zstd.NewReader(io.TeeReader(io.LimitReader(rc, x.max+1), counted), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return fmt.Errorf("oci: zstd: %w", err)
	}
	defer zr.Close()
	if _, err := x.write(name, zr); err != nil {
		return fmt.Errorf("layer %d (%s): %w", i, title, err)
	}
	if _, err := io.Copy(io.Discard, io.TeeReader(io.LimitReader(rc, x.max+1-counted.n), counted)); err != nil {
		return fmt.Errorf("oci: layer %d (%s): %w", i, title, err)
	}
	if counted.n != d.Size || sum(h) != d.Digest {
		return fmt.Errorf("%w: layer %d (%s): got %d bytes %s, manifest says %d bytes %s", ErrDigest, i, title, counted.n, sum(h), d.Size, d.Digest)
	}
	return nil
}
