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
	"unicode"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

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
	// ErrCorrupt is a layer that does not decompress or is not a tar: bad
	// content, not a network fault.
	ErrCorrupt = errors.New("oci: corrupt layer")
)

// Limits on what Extract reads besides the files themselves.
const (
	// MaxConfigSize is the largest image config Extract reads, 4 MiB;
	// ours are under 1 KiB. ggcr reads a config into memory whole.
	MaxConfigSize = 4 << 20
	// HeaderSlack is what a containerDisk's layers may inflate to beyond
	// the size limit, in all: tar headers, directories and small files
	// outside disk/.
	HeaderSlack = 1 << 20
	// TailSlack is what may follow the end of a layer's tar: writers pad
	// archives to whole records (GNU tar to 10 KiB).
	TailSlack = 64 << 10
)

// inflatedHook, when set (by tests), is told how many bytes each
// containerDisk layer inflated to.
var inflatedHook func(int64)

// IsArtifact reports whether m is an artifact (an artifactType, or the
// empty config) rather than a container image.
func IsArtifact(m *v1.Manifest) bool {
	return m.ArtifactType != "" || m.Config.MediaType == EmptyMediaType
}

// Extract writes the disk files of img into dir and returns their paths.
// From a containerDisk it writes the single regular file under disk/; from
// an artifact, every layer with an org.opencontainers.image.title, and
// the files in it for a directory layer (AnnotationUnpack), or the
// decompressed disk NAME.raw for a KubeVirt VM artifact's NAME.raw.zst.
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
		return nil, outputError{fmt.Errorf("oci: %w", err)}
	}
	defer tx.Rollback()
	x := &extractor{tx: tx, max: o.maxSize}
	if IsArtifact(m) {
		err = x.artifact(img, m)
	} else {
		err = x.containerDisk(img, m)
	}
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, outputError{fmt.Errorf("oci: %w", err)}
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
		if d.Annotations[AnnotationUnpack] == "true" {
			if err := x.unpackDir(img, i, d, seen); err != nil {
				return err
			}
			continue
		}
		if d.MediaType == DiskRawZstdMediaType {
			if err := x.unzstd(img, i, d, seen); err != nil {
				return err
			}
			continue
		}
		if d.Size > x.max || d.Size < 0 {
			return fmt.Errorf("%w: layer %d (%q) is %d bytes, over the size limit of %d", ErrTooLarge, i, title, d.Size, x.max)
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

func (x *extractor) containerDisk(img v1.Image, m *v1.Manifest) error {
	if m.Config.Size > MaxConfigSize || m.Config.Size < 0 {
		return fmt.Errorf("%w: config is %d bytes, limit %d MiB", ErrTooLarge, m.Config.Size, MaxConfigSize>>20)
	}
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
	// Every layer together inflates to at most the file and its headers:
	// a small gzip layer can hold gigabytes of zeros.
	budget := x.max + HeaderSlack
	for i, l := range layers {
		if i < len(m.Layers) && (m.Layers[i].Size > budget || m.Layers[i].Size < 0) {
			return fmt.Errorf("%w: layer %d is %d compressed bytes, limit %d (the size limit plus %d KiB)", ErrTooLarge, i, m.Layers[i].Size, budget, HeaderSlack>>10)
		}
		src := &source{}
		ul, err := partial.CompressedToLayer(recorded{l, src})
		if err != nil {
			return fmt.Errorf("oci: layer %d: %w", i, err)
		}
		rc, err := ul.Uncompressed()
		if err != nil {
			return layerError(i, src, err)
		}
		cr := &bounded{r: rc, left: budget}
		h := sha256.New()
		err = x.tar(io.TeeReader(cr, h))
		if err == nil {
			// Read to the end, so the whole layer is hashed and the
			// compressed stream's own digest check runs too, but no
			// further than a tar's padding.
			var n int64
			n, err = io.Copy(io.Discard, io.TeeReader(io.LimitReader(cr, TailSlack+1), h))
			if err == nil && n > TailSlack {
				err = fmt.Errorf("%w: more than %d KiB follow the end of the tar", ErrTooLarge, TailSlack>>10)
			}
		}
		rc.Close()
		if inflatedHook != nil {
			inflatedHook(budget - cr.left)
		}
		budget = cr.left
		if err != nil {
			return layerError(i, src, err)
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

// layerError says whose fault a failed layer read is: the source's (the
// network, as the source saw it), ours (an unsafe entry, a limit, the
// output directory), or else the content's (gzip or tar that does not
// parse).
func layerError(i int, src *source, err error) error {
	switch {
	case src.err != nil:
		return fmt.Errorf("oci: layer %d: %w", i, src.err)
	case errors.Is(err, ErrUnsafe), errors.Is(err, ErrTooLarge), errors.Is(err, ErrNoDisk),
		errors.Is(err, ErrDigest), isLocal(err):
		return fmt.Errorf("layer %d: %w", i, err)
	}
	return fmt.Errorf("%w: layer %d: %w", ErrCorrupt, i, err)
}

// isLocal reports whether err is about the output directory.
func isLocal(err error) bool {
	var pe *os.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le)
}

// recorded is a layer whose compressed stream goes through a source, so
// that read errors of the stream can be told from decompression errors.
// It has only the compressed side: partial.CompressedToLayer adds
// decompression (gzip, zstd or none, by the stream's magic).
type recorded struct {
	l   v1.Layer
	src *source
}

func (r recorded) Digest() (v1.Hash, error)            { return r.l.Digest() }
func (r recorded) Size() (int64, error)                { return r.l.Size() }
func (r recorded) MediaType() (types.MediaType, error) { return r.l.MediaType() }
func (r recorded) Compressed() (io.ReadCloser, error) {
	rc, err := r.l.Compressed()
	if err != nil {
		r.src.err = err
		return nil, err
	}
	r.src.rc = rc
	return r.src, nil
}

// source remembers the first error of the stream it reads, other than
// io.EOF.
type source struct {
	rc  io.ReadCloser
	err error
}

func (s *source) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

func (s *source) Close() error { return s.rc.Close() }

// bounded reads at most left bytes and fails with ErrTooLarge past them.
type bounded struct {
	r    io.Reader
	left int64
}

func (b *bounded) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%w: inflates past the size limit plus %d KiB of headers", ErrTooLarge, HeaderSlack>>10)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
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
		if errors.Is(err, ErrTooLarge) {
			return err
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
			return fmt.Errorf("%w: %s/ holds %q and %q; KubeVirt allows only one disk", ErrNoDisk, DiskDir, x.files[0], base)
		}
		if hdr.Size > x.max {
			return fmt.Errorf("%w: %q is %d bytes, over the size limit of %d", ErrTooLarge, name, hdr.Size, x.max)
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

// write stages r as the file name, at most max bytes. Errors name the
// file, never its temp name.
func (x *extractor) write(name string, r io.Reader) (n int64, err error) {
	x.files = append(x.files, name)
	src := &readErrs{r: io.LimitReader(r, x.max+1)}
	var tooLarge error
	_, err = x.tx.File(name, func(f *os.File) error {
		var err error
		n, err = io.Copy(f, src)
		if err == nil && n > x.max {
			tooLarge = fmt.Errorf("%w: %q is over the size limit of %d bytes", ErrTooLarge, name, x.max)
			return tooLarge
		}
		if err == nil {
			err = f.Sync()
		}
		return err
	})
	switch {
	case err == nil:
		return n, nil
	case err == tooLarge, src.err != nil && errors.Is(err, src.err):
		// The image's fault: a corrupt or oversized layer.
		return n, fmt.Errorf("oci: write %s: %w", name, err)
	}
	return n, outputError{fmt.Errorf("oci: write %s: %w", name, err)}
}

// ErrOutput marks a failure of the output directory (a full disk, a file
// in the way, no permission), not of the image or the registry.
var ErrOutput = errors.New("oci: cannot write the output directory")

// outputError is an error of the output directory: it reads as err and
// matches both err and ErrOutput.
type outputError struct{ err error }

func (e outputError) Error() string   { return e.err.Error() }
func (e outputError) Unwrap() []error { return []error{e.err, ErrOutput} }

// readErrs remembers the error its reader returned, so that a failed copy
// can tell a bad layer from a bad output directory.
type readErrs struct {
	r   io.Reader
	err error
}

func (r *readErrs) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// checkName accepts a plain file name: no directory part, not . or ..,
// not absolute, valid UTF-8 without control characters (a terminal
// escape or a newline in a name would be written and printed raw).
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || !filepath.IsLocal(name) {
		return fmt.Errorf("%w: %q is not a plain file name", ErrUnsafe, name)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrUnsafe, name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %q holds the control or unprintable character %U", ErrUnsafe, name, r)
		}
	}
	return nil
}
