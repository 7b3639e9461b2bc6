package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OS is the operating system of every containerDisk image: the KubeVirt
// nodes that pull them run Linux, whatever the guest is.
const OS = "linux"

// Architectures are the architectures a containerDisk index can list, in
// the order it lists them. The disk is universal (BIOS and UEFI on x86-64,
// UEFI on aarch64), so every entry holds the same layer.
var Architectures = []string{"amd64", "arm64"}

// variants are the platform variants the entries name. arm64 is ARMv8:
// containerd and containers/image treat linux/arm64 and linux/arm64/v8 as
// one platform, but crane and ggcr match linux/arm64/v8 only when the
// index says v8 (and linux/arm64 either way), so the index says v8.
var variants = map[string]string{"arm64": "v8"}

// ErrArchitecture is returned when WithArchitectures names an architecture
// the index cannot list, names one twice, or names none.
var ErrArchitecture = errors.New("oci: bad architecture")

// architectures checks the WithArchitectures list and puts it in index
// order.
func (o options) architectures() ([]string, error) {
	use := "use " + strings.Join(Architectures, ", ")
	if len(o.archs) == 0 {
		return nil, fmt.Errorf("%w: none given: %s", ErrArchitecture, use)
	}
	seen := map[string]bool{}
	for _, a := range o.archs {
		norm := strings.ToLower(strings.TrimSpace(a))
		if !slices.Contains(Architectures, norm) {
			return nil, fmt.Errorf("%w %q: %s", ErrArchitecture, a, use)
		}
		if seen[norm] {
			return nil, fmt.Errorf("%w: %s given twice", ErrArchitecture, norm)
		}
		seen[norm] = true
	}
	var out []string
	for _, a := range Architectures {
		if seen[a] {
			out = append(out, a)
		}
	}
	return out, nil
}

// ContainerDisk returns the KubeVirt containerDisk of f as an OCI image
// index (application/vnd.oci.image.index.v1+json) with one entry per
// architecture (WithArchitectures; default linux/amd64 and linux/arm64/v8),
// its platform in the index descriptor. Each entry is a full image: the
// same gzip layer holding disk/<file name>, its own linux/ARCH config, and
// the standard annotations plus AnnotationFormat on its manifest (as
// labels, too, in its config). The index carries the same annotations.
//
// A runtime pulling the tag (containerd, CRI-O, skopeo, crane) picks the
// entry for its node's platform; the layer blob is stored once.
func ContainerDisk(f File, opts ...Option) (v1.ImageIndex, error) {
	o := makeOptions(opts)
	if f.Format.Type == "" {
		return nil, fmt.Errorf("oci: %s: no format", f.Path)
	}
	archs, err := o.architectures()
	if err != nil {
		return nil, err
	}
	l, err := newDiskLayer(f.Path, f.Format.FileName(), o.created, o.blobDir)
	if err != nil {
		return nil, err
	}
	desc := o.description
	if desc == "" {
		desc = fmt.Sprintf("The 512-byte VM as a KubeVirt containerDisk: %s (%s) at /disk/%s", f.Format.Type, f.Format.Description, f.Format.FileName())
	}
	ann := o.annotations("512-byte-vm "+f.Format.Type, desc)
	ann[AnnotationFormat] = f.Format.Type

	m := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Annotations:   ann,
	}
	imgs := make(map[v1.Hash]v1.Image, len(archs))
	for _, arch := range archs {
		img, err := containerDiskImage(f, l, arch, ann, o)
		if err != nil {
			return nil, err
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		n, err := img.Size()
		if err != nil {
			return nil, err
		}
		m.Manifests = append(m.Manifests, v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Size:      n,
			Digest:    d,
			Platform:  &v1.Platform{OS: OS, Architecture: arch, Variant: variants[arch]},
		})
		imgs[d] = img
	}
	return newIndex(m, imgs)
}

// index is a v1.ImageIndex over images this package made, whose manifest
// bytes are exactly what it marshalled.
type index struct {
	raw    []byte
	digest v1.Hash
	images map[v1.Hash]v1.Image
}

func newIndex(m v1.IndexManifest, imgs map[v1.Hash]v1.Image) (*index, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &index{raw: raw, digest: digestOf(raw), images: imgs}, nil
}

func (i *index) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }
func (i *index) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *index) Digest() (v1.Hash, error)            { return i.digest, nil }
func (i *index) Size() (int64, error)                { return int64(len(i.raw)), nil }

// IndexManifest parses the manifest again, so callers get their own copy.
func (i *index) IndexManifest() (*v1.IndexManifest, error) {
	return v1.ParseIndexManifest(bytes.NewReader(i.raw))
}

func (i *index) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := i.images[h]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("oci: no image %s in index", h)
}

func (i *index) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("oci: no index %s in index", h)
}
