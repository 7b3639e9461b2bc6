package remote

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// Pushed is one reference written by Push and the digest it now points to.
type Pushed struct {
	Ref    name.Reference
	Digest v1.Hash
}

// String is REF@sha256:..., the form the CLI prints.
func (p Pushed) String() string { return p.Ref.String() + "@" + p.Digest.String() }

// Push writes each image or image index (oci.Taggable: a v1.Image or a
// v1.ImageIndex) under its reference, in one session: blobs
// shared between images are uploaded once per repository, connections are
// reused, and each manifest is written only after all its blobs, so a
// failed push never leaves a tag pointing at missing content.
func Push(ctx context.Context, refs []name.Reference, imgs []oci.Taggable, opts ...Option) ([]Pushed, error) {
	o := makeOptions(opts)
	out, todo, err := plan(refs, imgs)
	if err != nil || len(todo) == 0 {
		// ggcr closes the progress channel when it ran; so must we when
		// it did not, or a reader would wait forever.
		if o.progress != nil {
			close(o.progress)
		}
		return nil, err
	}
	if err := ggcr.MultiWrite(todo, o.remoteOptions(ctx)...); err != nil {
		return nil, wrap(refs[0], err)
	}
	return out, nil
}

// plan pairs references with images and their digests.
func plan(refs []name.Reference, imgs []oci.Taggable) ([]Pushed, map[name.Reference]ggcr.Taggable, error) {
	if len(refs) != len(imgs) {
		return nil, nil, fmt.Errorf("remote: %d references for %d images", len(refs), len(imgs))
	}
	todo := make(map[name.Reference]ggcr.Taggable, len(refs))
	out := make([]Pushed, len(refs))
	for i, ref := range refs {
		if _, dup := todo[ref]; dup {
			return nil, nil, fmt.Errorf("remote: %s given twice", ref)
		}
		todo[ref] = imgs[i]
		d, err := imgs[i].Digest()
		if err != nil {
			return nil, nil, err
		}
		out[i] = Pushed{Ref: ref, Digest: d}
	}
	return out, todo, nil
}

// PushTagged pushes tagged images to repo: each under repo:Tag.
func PushTagged(ctx context.Context, repo name.Repository, imgs []oci.Tagged, opts ...Option) ([]Pushed, error) {
	refs := make([]name.Reference, len(imgs))
	vs := make([]oci.Taggable, len(imgs))
	for i, t := range imgs {
		refs[i] = repo.Tag(t.Tag)
		vs[i] = t.Image
	}
	return Push(ctx, refs, vs, opts...)
}
