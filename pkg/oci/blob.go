package oci

import (
	"bytes"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// staticBlob is a small in-memory blob: an image config or the empty
// descriptor's "{}", with its own media type.
type staticBlob struct {
	b      []byte
	mt     types.MediaType
	digest v1.Hash
}

func (s *staticBlob) Digest() (v1.Hash, error)            { return s.digest, nil }
func (s *staticBlob) DiffID() (v1.Hash, error)            { return s.digest, nil }
func (s *staticBlob) Size() (int64, error)                { return int64(len(s.b)), nil }
func (s *staticBlob) MediaType() (types.MediaType, error) { return s.mt, nil }
func (s *staticBlob) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s.b)), nil
}
func (s *staticBlob) Uncompressed() (io.ReadCloser, error) { return s.Compressed() }

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
