package kubevirt

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

// PinnedImage checks an image reference and returns the form the manifests
// use. A reference with a digest becomes repository@digest: containers/image,
// which CDI imports with, refuses a reference carrying both a tag and a
// digest, and the digest alone already names the content. A reference
// without a digest is returned as given (trimmed).
func PinnedImage(ref string) (string, error) {
	ref = strings.TrimSpace(ref)
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrImage, ref, err)
	}
	d, ok := r.(name.Digest)
	if !ok {
		return ref, nil
	}
	return stripTag(ref[:strings.LastIndex(ref, "@")]) + "@" + d.DigestStr(), nil
}

// stripTag removes a :tag from repository[:tag], leaving a registry port
// (the colon before the last slash) alone.
func stripTag(repo string) string {
	i := strings.LastIndex(repo, ":")
	if i > strings.LastIndex(repo, "/") {
		return repo[:i]
	}
	return repo
}

// Resolve looks the reference's digest up in its registry (one HEAD
// request through pkg/oci/remote, with push's credentials and plain-HTTP
// rule: loopback registries over HTTP, others only WithInsecure) and
// returns repository@digest. A reference that already has a digest is
// returned pinned without a request.
func Resolve(ctx context.Context, ref string, opts ...remote.Option) (string, error) {
	pinned, _, err := ResolveFormat(ctx, ref, opts...)
	return pinned, err
}

// ResolveFormat is Resolve that also returns the disk format the image
// records (oci.AnnotationFormat on its index or manifest), read with the
// one GET that finds the digest; "" when the image records none, or when
// ref already has a digest.
func ResolveFormat(ctx context.Context, ref string, opts ...remote.Option) (string, string, error) {
	ref = strings.TrimSpace(ref)
	r, err := remote.ParseReference(ref, opts...)
	if err != nil {
		return "", "", fmt.Errorf("%w %q: %v", ErrImage, ref, err)
	}
	if _, ok := r.(name.Digest); ok {
		pinned, err := PinnedImage(ref)
		return pinned, "", err
	}
	d, ann, err := remote.Annotations(ctx, r, opts...)
	if err != nil {
		return "", "", fmt.Errorf("kubevirt: resolve %s: %w", ref, err)
	}
	return stripTag(ref) + "@" + d.String(), ann[oci.AnnotationFormat], nil
}
