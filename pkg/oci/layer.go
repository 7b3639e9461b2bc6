package oci

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// gzipLevel is the compression level of containerDisk layers: BestSpeed, as
// ggcr and ko use; level 9 takes ten times longer on a large raw disk and
// saves little on the small formats. Changing it
// changes every digest.
const gzipLevel = gzip.BestCompression

// diskLayer is a containerDisk layer: a gzip-compressed tar holding disk/
// and the disk file, owned by the qemu user, made from the file on every
// read. Its digests are computed once, streaming, when the layer is made.
type diskLayer struct {
	path  string // the file on the local disk
	name  string // its name under disk/
	mtime time.Time
	fsize int64 // the file's size when the digests were taken

	digest, diffID v1.Hash
	size           int64 // compressed size
}

func newDiskLayer(p, name string, mtime time.Time) (*diskLayer, error) {
	f, err := openRegular(p)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	l := &diskLayer{path: p, name: name, mtime: mtime, fsize: st.Size()}
	dh, uh := sha256.New(), sha256.New()
	cw := &countWriter{w: dh}
	zw, err := gzip.NewWriterLevel(cw, gzipLevel)
	if err != nil {
		return nil, err
	}
	if err := l.writeTar(io.MultiWriter(uh, zw)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	l.digest, l.diffID, l.size = sum(dh), sum(uh), cw.n
	return l, nil
}

// writeTar writes the layer's tar stream. The headers carry no wall-clock
// time, host user or host name, so the bytes follow from the file alone.
func (l *diskLayer) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	dir := &tar.Header{
		Typeflag: tar.TypeDir,
		Name:     DiskDir + "/",
		Mode:     0o555,
		Uid:      QemuUID, Gid: QemuUID,
		Uname: QemuUser, Gname: QemuUser,
		ModTime: l.mtime,
	}
	file := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     path.Join(DiskDir, l.name),
		Mode:     0o444,
		Uid:      QemuUID, Gid: QemuUID,
		Uname: QemuUser, Gname: QemuUser,
		ModTime: l.mtime,
		Size:    l.fsize,
	}
	if err := tw.WriteHeader(dir); err != nil {
		return fmt.Errorf("oci: tar: %w", err)
	}
	if err := tw.WriteHeader(file); err != nil {
		return fmt.Errorf("oci: tar: %w", err)
	}
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	defer f.Close()
	// Copy exactly the size in the header: a file that grew or shrank
	// since the layer was made is an error, not a corrupt tar.
	n, err := io.Copy(tw, io.LimitReader(f, l.fsize))
	if err != nil {
		return fmt.Errorf("oci: read %s: %w", l.path, err)
	}
	if n != l.fsize {
		return fmt.Errorf("oci: %s shrank from %d to %d bytes while being read", l.path, l.fsize, n)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("oci: tar: %w", err)
	}
	return nil
}

func (l *diskLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *diskLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *diskLayer) Size() (int64, error)     { return l.size, nil }
func (l *diskLayer) MediaType() (types.MediaType, error) {
	return types.OCILayer, nil
}

// Uncompressed streams the tar.
func (l *diskLayer) Uncompressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(l.writeTar(pw)) }()
	return pr, nil
}

// Compressed streams the gzip-compressed tar. The reader fails at the end
// if the bytes differ from the digest taken when the layer was made.
func (l *diskLayer) Compressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		zw, err := gzip.NewWriterLevel(pw, gzipLevel)
		if err == nil {
			err = l.writeTar(zw)
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	return newVerifier(pr, l.size, l.digest, l.path), nil
}

// verifier passes a stream through and, at its end, checks its size and
// sha256 against what the layer promised.
type verifier struct {
	rc   io.ReadCloser
	h    hash.Hash
	n    int64
	size int64
	want v1.Hash
	name string
}

// ErrChanged is returned when a file no longer matches the digest its layer
// was made with.
var ErrChanged = errors.New("oci: file changed after its digest was taken")

func newVerifier(rc io.ReadCloser, size int64, want v1.Hash, name string) io.ReadCloser {
	return &verifier{rc: rc, h: sha256.New(), size: size, want: want, name: name}
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if v.n != v.size || sum(v.h) != v.want {
			return n, fmt.Errorf("%w: %s", ErrChanged, v.name)
		}
	}
	return n, err
}

func (v *verifier) Close() error { return v.rc.Close() }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

// openRegular opens p and checks that it is a regular file.
func openRegular(p string) (*os.File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("oci: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("oci: %s is not a regular file", p)
	}
	return f, nil
}
