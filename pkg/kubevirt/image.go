package kubevirt

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
// request, with credentials from authn.DefaultKeychain) and returns
// repository@digest. A reference that already has a digest is returned
// pinned without a request. Registries on loopback (localhost, 127.0.0.0/8,
// ::1) are spoken to over plain HTTP, as push does. opts are added after
// the defaults, so tests can set a transport.
func Resolve(ctx context.Context, ref string, opts ...remote.Option) (string, error) {
	ref = strings.TrimSpace(ref)
	var nameOpts []name.Option
	if r, err := name.ParseReference(ref); err == nil && isLoopback(r.Context().RegistryStr()) {
		nameOpts = append(nameOpts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nameOpts...)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrImage, ref, err)
	}
	if _, ok := r.(name.Digest); ok {
		return PinnedImage(ref)
	}
	all := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	desc, err := remote.Head(r, all...)
	if err != nil {
		return "", fmt.Errorf("kubevirt: resolve %s in registry %s: %w", ref, r.Context().RegistryStr(), err)
	}
	return stripTag(ref) + "@" + desc.Digest.String(), nil
}

// isLoopback reports whether a registry host[:port] is this machine.
func isLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
