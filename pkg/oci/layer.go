package oci

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/internal/zgzip"
)

// gzipLevel is the compression level of containerDisk layers' data, gzip's
// default, 6; package zgzip codes the zero sectors itself, whatever the
// level. BestSpeed (ggcr's and ko's) stores the universal disk's formats
// about 20% larger, which pushes push --all over its 64 KB goal; 9 is no
// smaller than 6 on these mostly-zero files and slower. Changing it
// changes every digest.
const gzipLevel = gzip.DefaultCompression

// diskLayer is a containerDisk layer: a gzip-compressed tar holding disk/
// and the disk file, owned by the qemu user. Its digests are computed
// once, streaming, when the layer is made. With a blob directory
// (WithBlobDir) that one gzip pass also writes the blob, and reads come
// from it; without one, the tar is made and compressed from the file on
// every read.
type diskLayer struct {
	path  string // the file on the local disk
	name  string // its name under disk/
	mtime time.Time
	fsize int64     // the file's size when the digests were taken
	segs  []segment // its data, when it has holes worth storing as such
	blob  string    // the compressed blob written when the layer was made, if any

	digest, diffID v1.Hash
	size           int64 // compressed size
}

func newDiskLayer(p, name string, mtime time.Time, blobDir string) (*diskLayer, error) {
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
	segs, err := dataSegments(p, l.fsize)
	if err != nil {
		return nil, err
	}
	if sparse(segs, l.fsize) {
		l.segs = segs
	}
	uh := sha256.New()
	compress := func(w io.Writer) error {
		zw, err := zgzip.NewWriterLevel(w, gzipLevel)
		if err != nil {
			return err
		}
		if err := l.writeTar(io.MultiWriter(uh, zw)); err != nil {
			return err
		}
		return zw.Close()
	}
	if blobDir != "" {
		l.blob, l.digest, l.size, err = spool(blobDir, compress)
		if err != nil {
			return nil, err
		}
		l.diffID = sum(uh)
		return l, nil
	}
	dh := sha256.New()
	cw := &countWriter{w: dh}
	if err := compress(cw); err != nil {
		return nil, err
	}
	l.digest, l.diffID, l.size = sum(dh), sum(uh), cw.n
	return l, nil
}

// spoolBufs are spool's write buffers: a build spools a dozen blobs, and
// a fresh 64 KiB buffer is 16 page faults.
var spoolBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// spool writes what write produces into a temp file in dir while hashing
// it, then renames the file to dir/<hex digest>: one pass makes a blob
// and its digest. On error nothing is left in dir.
func spool(dir string, write func(io.Writer) error) (path string, digest v1.Hash, size int64, err error) {
	fail := func(err error) (string, v1.Hash, int64, error) { return "", v1.Hash{}, 0, err }
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(fmt.Errorf("oci: blob: %w", err))
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fail(fmt.Errorf("oci: blob: %w", err))
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	bw := spoolBufs.Get().(*bufio.Writer)
	bw.Reset(f)
	defer func() { bw.Reset(nil); spoolBufs.Put(bw) }()
	cw := &countWriter{w: io.MultiWriter(h, bw)}
	if err = write(cw); err != nil {
		return fail(err)
	}
	if err = bw.Flush(); err != nil {
		return fail(fmt.Errorf("oci: blob: %w", err))
	}
	if err = f.Chmod(0o644); err != nil {
		return fail(fmt.Errorf("oci: blob: %w", err))
	}
	if err = f.Close(); err != nil {
		return fail(fmt.Errorf("oci: blob: %w", err))
	}
	digest = sum(h)
	path = filepath.Join(dir, digest.Hex)
	if err = os.Rename(f.Name(), path); err != nil {
		return fail(fmt.Errorf("oci: blob: %w", err))
	}
	return path, digest, cw.n, nil
}

// openBlob opens a blob spool wrote. The reader fails at the end if the
// bytes differ from the digest.
func openBlob(p string, size int64, d v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	return newVerifier(f, size, d, p), nil
}

// writeTar writes the layer's tar stream. The headers carry no wall-clock
// time, host user or host name, so the bytes follow from the file alone.
// writeTar writes the layer's tar: disk/ and the file in it, owned by the
// qemu user, the file's zeros stored as holes (PAX sparse 1.0, see
// sparsetar.go) when it has any. Runtimes unpack it with Go's archive/tar
// (containerd, CRI-O, Docker, CDI's importer), which reads the holes back
// as zeros; hashing and compressing then skip the zeros too.
func (l *diskLayer) writeTar(w io.Writer) error {
	f := dirFile{path: l.path, name: l.name, size: l.fsize, segs: l.segs}
	return writeSparseTar(w, DiskDir, []dirFile{f}, l.mtime, qemuOwner)
}

func (l *diskLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *diskLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *diskLayer) Size() (int64, error)     { return l.size, nil }
func (l *diskLayer) MediaType() (types.MediaType, error) {
	return types.OCILayer, nil
}

// Uncompressed streams the tar.
func (l *diskLayer) Uncompressed() (io.ReadCloser, error) { return pipe(l.writeTar), nil }

// Compressed streams the gzip-compressed tar, from the blob when there is
// one. The reader fails at the end if the bytes differ from the digest
// taken when the layer was made.
func (l *diskLayer) Compressed() (io.ReadCloser, error) {
	if l.blob != "" {
		return openBlob(l.blob, l.size, l.digest)
	}
	return newVerifier(gzipped(gzipLevel, l.writeTar), l.size, l.digest, l.path), nil
}

// pipe streams what write writes.
func pipe(write func(io.Writer) error) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw)) }()
	return pr
}

// gzipped streams what write writes, gzip-compressed at level.
func gzipped(level int, write func(io.Writer) error) io.ReadCloser {
	return pipe(func(w io.Writer) error {
		zw, err := zgzip.NewWriterLevel(w, level)
		if err != nil {
			return err
		}
		if err := write(zw); err != nil {
			return err
		}
		return zw.Close()
	})
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
