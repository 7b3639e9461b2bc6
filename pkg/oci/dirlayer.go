package oci

import (
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/internal/zgzip"
)

// ORAS's directory annotations (oras-go content/file): a layer with
// AnnotationUnpack "true" is a gzip-compressed tar that oras pull unpacks
// into the directory its title names, checking the tar against
// AnnotationUnpackDigest.
const (
	AnnotationUnpack       = "io.deis.oras.content.unpack"
	AnnotationUnpackDigest = "io.deis.oras.content.digest"
)

// ArtifactLayerMediaType is the media type of the artifact's one layer, a
// gzip-compressed tar. Not the image spec's tar+gzip layer type: with the
// empty config there are no diff_ids, and go-containerregistry's validate
// (crane validate) rejects a filesystem layer without one; oras unpacks by
// the annotation, whatever the media type.
const ArtifactLayerMediaType types.MediaType = "application/vnd.tinyvm-oci.disks.v1.tar+gzip"

// ArtifactDir is the directory the artifact's layer unpacks into: oras
// pull writes ArtifactDir/512-byte-vm.<ext>.
const ArtifactDir = "512-byte-vm"

// dirGzipLevel compresses the artifact's one layer. Its tar stores the
// zeros as holes (sparsetar.go), so only the files' data is compressed:
// about 116 KB of tar for the default files, which gzip's default level
// stores 66 bytes larger than BestCompression but in 1.4 ms instead of
// 8.7 ms (BestCompression's long match chains on the sectors of zeros
// between data). Changing it changes the artifact's digest.
const dirGzipLevel = gzip.DefaultCompression

// dirFile is one file of a dirLayer, the size its digests were taken at
// and, when it has holes, its data segments.
type dirFile struct {
	path, name string
	size       int64
	segs       []segment // nil: stored whole
}

// dirLayer is the artifact's layer: a gzip-compressed tar holding
// ArtifactDir/ and every file in it, as oras push of a directory makes
// it. Its digests are taken once, streaming, when the layer is made; with
// a blob directory (WithBlobDir) that pass also writes the blob, which
// reads then come from, and without one reads make it from the files.
type dirLayer struct {
	files          []dirFile
	mtime          time.Time
	blob           string
	digest, diffID v1.Hash
	size           int64
}

func newDirLayer(files []dirFile, mtime time.Time, blobDir string) (*dirLayer, error) {
	for i, f := range files {
		r, err := openRegular(f.path)
		if err != nil {
			return nil, err
		}
		st, err := r.Stat()
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("oci: %w", err)
		}
		files[i].size = st.Size()
		segs, err := dataSegments(f.path, st.Size())
		if err != nil {
			return nil, err
		}
		if sparse(segs, st.Size()) {
			files[i].segs = append([]segment{}, segs...)
		}
	}
	l := &dirLayer{files: files, mtime: mtime}
	uh := sha256.New()
	compress := func(w io.Writer) error {
		zw, err := zgzip.NewWriterLevel(w, dirGzipLevel)
		if err != nil {
			return err
		}
		if err := l.writeTar(io.MultiWriter(uh, zw)); err != nil {
			return err
		}
		return zw.Close()
	}
	if blobDir != "" {
		var err error
		if l.blob, l.digest, l.size, err = spool(blobDir, compress); err != nil {
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

// writeTar writes the tar stream (writeSparseTar): headers with no
// wall-clock time, owner or host name, so the bytes follow from the files
// alone.
func (l *dirLayer) writeTar(w io.Writer) error {
	return writeSparseTar(w, ArtifactDir, l.files, l.mtime, artifactOwner)
}

// copyExactly copies size bytes of the file at p to w: a file that shrank
// since its size was taken is an error, not a corrupt tar.
func copyExactly(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("oci: read %s: %w", p, err)
	}
	if n != size {
		return fmt.Errorf("oci: %s shrank from %d to %d bytes while being read", p, size, n)
	}
	return nil
}

func (l *dirLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *dirLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *dirLayer) Size() (int64, error)     { return l.size, nil }
func (l *dirLayer) MediaType() (types.MediaType, error) {
	return ArtifactLayerMediaType, nil
}

// Uncompressed streams the tar.
func (l *dirLayer) Uncompressed() (io.ReadCloser, error) { return pipe(l.writeTar), nil }

// Compressed streams the gzip-compressed tar. The reader fails at the end
// if the bytes differ from the digest taken when the layer was made.
func (l *dirLayer) Compressed() (io.ReadCloser, error) {
	if l.blob != "" {
		return openBlob(l.blob, l.size, l.digest)
	}
	return newVerifier(gzipped(dirGzipLevel, l.writeTar), l.size, l.digest, ArtifactDir), nil
}
