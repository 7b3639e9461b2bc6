package oci

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
)

// Errors Extract returns, wrapped with the entry or layer at fault.
var (
	// ErrUnsafe is an entry that could write outside the output directory
	// or is not a plain file: an absolute path, "..", a link or a device.
	ErrUnsafe = errors.New("oci: unsafe entry")
	// ErrTooLarge is a file over the WithMaxSize limit.
	ErrTooLarge = errors.New("oci: file too large")
	// ErrNoDisk is an image with no disk file, or a containerDisk with
	// more than one (KubeVirt would refuse it too).
	ErrNoDisk = errors.New("oci: not exactly one disk file")
	// ErrDigest is content that does not match its digest.
	ErrDigest = errors.New("oci: digest mismatch")
)

// IsArtifact reports whether m is an artifact (an artifactType, or the
// empty config) rather than a container image.
func IsArtifact(m *v1.Manifest) bool {
	return m.ArtifactType != "" || m.Config.MediaType == EmptyMediaType
}

// Extract writes the disk files of img into dir and returns their paths.
// From a containerDisk it writes the single regular file under disk/; from
// an artifact, every layer with an org.opencontainers.image.title.
//
// It refuses absolute paths, "..", names with a directory part, symlinks,
// hard links, devices, two files under disk/ and files over the size
// limit, and checks every blob against its digest (artifact layers) or
// diff_id (containerDisk layers). Files are staged in dir (see
// internal/txn, which works through an os.Root so that nothing can land
// outside dir) and renamed into place only when all of them are complete
// and verified; if one rename fails, those already done are undone.
func Extract(img v1.Image, dir string, opts ...Option) ([]string, error) {
	o := makeOptions(opts)
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("oci: manifest: %w", err)
	}
	// One transaction: every file is staged in dir and renamed in only
	// when all are complete and verified, or none is.
	tx, err := txn.Begin(dir)
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	defer tx.Rollback()
	x := &extractor{tx: tx, max: o.maxSize}
	if IsArtifact(m) {
		err = x.artifact(img, m)
	} else {
		err = x.containerDisk(img)
	}
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	paths := make([]string, len(x.files))
	for i, name := range x.files {
		paths[i] = tx.Path(name)
	}
	return paths, nil
}

type extractor struct {
	tx    *txn.Txn
	max   int64
	files []string
}

func (x *extractor) artifact(img v1.Image, m *v1.Manifest) error {
	seen := map[string]bool{}
	for i, d := range m.Layers {
		title := d.Annotations[AnnotationTitle]
		if title == "" {
			continue // as oras pull does
		}
		if err := checkName(title); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if seen[title] {
			return fmt.Errorf("%w: layer %d: title %q used twice", ErrUnsafe, i, title)
		}
		seen[title] = true
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
		h := sha256.New()
		n, err := x.write(title, io.TeeReader(rc, h))
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, title, err)
		}
		if n != d.Size || sum(h) != d.Digest {
			return fmt.Errorf("%w: layer %d (%s): got %d bytes %s, manifest says %d bytes %s", ErrDigest, i, title, n, sum(h), d.Size, d.Digest)
		}
	}
	if len(x.files) == 0 {
		return fmt.Errorf("%w: artifact has no layer with an %s annotation", ErrNoDisk, AnnotationTitle)
	}
	return nil
}

func (x *extractor) containerDisk(img v1.Image) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("oci: config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("oci: layers: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(layers) {
		return fmt.Errorf("%w: config lists %d diff_ids for %d layers", ErrDigest, len(cfg.RootFS.DiffIDs), len(layers))
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return fmt.Errorf("oci: layer %d: %w", i, err)
		}
		h := sha256.New()
		err = x.tar(io.TeeReader(rc, h))
		if err == nil {
			// Read to the end, so the whole layer is hashed and the
			// compressed stream's own digest check runs too.
			_, err = io.Copy(io.Discard, io.TeeReader(rc, h))
		}
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if got := sum(h); got != cfg.RootFS.DiffIDs[i] {
			return fmt.Errorf("%w: layer %d: content %s, config diff_id %s", ErrDigest, i, got, cfg.RootFS.DiffIDs[i])
		}
	}
	if len(x.files) == 0 {
		return fmt.Errorf("%w: no file under %s/", ErrNoDisk, DiskDir)
	}
	return nil
}

// tar reads one layer, writing the regular file under disk/ and refusing
// anything unsafe anywhere in the layer.
func (x *extractor) tar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("oci: tar: %w", err)
		}
		name := hdr.Name
		if strings.HasPrefix(name, "/") || filepath.IsAbs(name) {
			return fmt.Errorf("%w: %q is an absolute path", ErrUnsafe, name)
		}
		for _, part := range strings.Split(name, "/") {
			if part == ".." {
				return fmt.Errorf("%w: %q contains ..", ErrUnsafe, name)
			}
		}
		clean := path.Clean(strings.TrimPrefix(name, "./"))
		dir, base := path.Split(clean)
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		case tar.TypeSymlink:
			return fmt.Errorf("%w: %q is a symlink to %q", ErrUnsafe, name, hdr.Linkname)
		case tar.TypeLink:
			return fmt.Errorf("%w: %q is a hard link to %q", ErrUnsafe, name, hdr.Linkname)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return fmt.Errorf("%w: %q is a device or fifo", ErrUnsafe, name)
		default:
			return fmt.Errorf("%w: %q has unsupported tar type %q", ErrUnsafe, name, hdr.Typeflag)
		}
		if dir != DiskDir+"/" {
			if strings.HasPrefix(clean, DiskDir+"/") {
				return fmt.Errorf("%w: %q is in a subdirectory of %s/", ErrUnsafe, name, DiskDir)
			}
			continue // a file outside disk/: KubeVirt and CDI ignore it, so do we
		}
		if strings.HasPrefix(base, ".wh.") {
			return fmt.Errorf("%w: %q is a whiteout", ErrUnsafe, name)
		}
		if err := checkName(base); err != nil {
			return err
		}
		if len(x.files) > 0 {
			return fmt.Errorf("%w: %s/ holds %s and %s; KubeVirt allows only one disk", ErrNoDisk, DiskDir, x.files[0], base)
		}
		if hdr.Size > x.max {
			return fmt.Errorf("%w: %q is %d bytes, limit %d", ErrTooLarge, name, hdr.Size, x.max)
		}
		n, err := x.write(base, tr)
		if err != nil {
			return err
		}
		if n != hdr.Size {
			return fmt.Errorf("oci: tar: %q: read %d of %d bytes", name, n, hdr.Size)
		}
	}
}

// write stages r as the file name, at most max bytes.
func (x *extractor) write(name string, r io.Reader) (n int64, err error) {
	x.files = append(x.files, name)
	_, err = x.tx.File(name, func(f *os.File) error {
		var err error
		n, err = io.Copy(f, io.LimitReader(r, x.max+1))
		if err == nil && n > x.max {
			err = fmt.Errorf("%w: %s is over the %d-byte limit", ErrTooLarge, name, x.max)
		}
		if err == nil {
			err = f.Sync()
		}
		return err
	})
	if err != nil {
		return n, fmt.Errorf("oci: write %s: %w", name, err)
	}
	return n, nil
}

// checkName accepts a plain file name: no directory part, not . or ..,
// not absolute.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || !filepath.IsLocal(name) {
		return fmt.Errorf("%w: %q is not a plain file name", ErrUnsafe, name)
	}
	return nil
}
