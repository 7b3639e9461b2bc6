package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// Platform is the platform chosen when a reference names an index.
var Platform = v1.Platform{OS: "linux", Architecture: "amd64"}

// Pull fetches ref and writes its disk files into dir with oci.Extract:
// the file under disk/ of a containerDisk, or every titled layer of an
// artifact. An image index gives its Platform entry's files. It returns
// the paths written and the digest of the manifest or index ref names.
// Errors about dir itself are not *Error: the registry is not at fault.
func Pull(ctx context.Context, ref name.Reference, dir string, opts ...Option) ([]string, v1.Hash, error) {
	o := makeOptions(opts)
	ro := append(o.remoteOptions(ctx), ggcr.WithPlatform(Platform))
	// The digest is the one ref names, an index's for a containerDisk,
	// so that REF@digest pins what REF pointed at; the files come from
	// the Platform entry.
	desc, err := ggcr.Get(ref, ro...)
	if err != nil {
		return nil, v1.Hash{}, wrap(ref, err)
	}
	d := desc.Digest
	img, err := desc.Image()
	if err != nil {
		return nil, d, wrap(ref, err)
	}
	paths, err := oci.Extract(img, dir, oci.WithMaxSize(o.maxSize))
	var pe *os.PathError
	var le *os.LinkError
	switch {
	case err == nil:
	case errors.Is(err, oci.ErrOutput), errors.As(err, &pe), errors.As(err, &le):
		// The output directory failed, not the registry.
		return nil, d, fmt.Errorf("pull into %s: %w", dir, err)
	default:
		return nil, d, wrap(ref, err)
	}
	return paths, d, nil
}

// Digest looks up the manifest digest ref points at, with one HEAD
// request and the same credentials, plain-HTTP rule and retries as Push
// and Pull. Manifests pin images with it.
func Digest(ctx context.Context, ref name.Reference, opts ...Option) (v1.Hash, error) {
	o := makeOptions(opts)
	desc, err := ggcr.Head(ref, o.remoteOptions(ctx)...)
	if err != nil {
		return v1.Hash{}, wrap(ref, err)
	}
	return desc.Digest, nil
}

// Annotations fetches the manifest or index ref points at, with the same
// credentials, plain-HTTP rule and retries as Push and Pull, and returns
// its digest and top-level annotations, such as the disk format a
// containerDisk records (oci.AnnotationFormat).
func Annotations(ctx context.Context, ref name.Reference, opts ...Option) (v1.Hash, map[string]string, error) {
	o := makeOptions(opts)
	desc, err := ggcr.Get(ref, o.remoteOptions(ctx)...)
	if err != nil {
		return v1.Hash{}, nil, wrap(ref, err)
	}
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return desc.Digest, nil, fmt.Errorf("registry %s: the manifest of %s is not JSON: %w", ref.Context().RegistryStr(), ref, err)
	}
	return desc.Digest, m.Annotations, nil
}
