package remote

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
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

// PartialError is a push that failed after it started: the references it
// did not write, with the digests they would have had. The ones it wrote
// are Push's result.
type PartialError struct {
	NotWritten []Pushed
	Err        error
}

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// Push writes each image or image index (oci.Taggable: a v1.Image or a
// v1.ImageIndex) under its reference, in one session and in two
// phases: first every blob of every image (each once per repository, a
// few at a time, connections reused), then the manifests, one at a time in
// the order given. So a failed push never leaves a tag pointing at missing
// content, and no tag moves until every blob is in place.
//
// It returns the references written, in order, even when it fails; the
// error is then a *PartialError naming the others.
func Push(ctx context.Context, refs []name.Reference, imgs []oci.Taggable, opts ...Option) ([]Pushed, error) {
	o := makeOptions(opts)
	if o.progress != nil {
		// ggcr's Pusher never closes the channel; we do, on every path,
		// so that a reader never waits forever.
		defer close(o.progress)
	}
	plan, err := plan(refs, imgs)
	if err != nil || len(plan) == 0 {
		return nil, err
	}
	p, err := ggcr.NewPusher(o.remoteOptions(ctx)...)
	if err != nil {
		return nil, &PartialError{NotWritten: plan, Err: wrap(refs[0], err)}
	}
	if ref, err := uploadBlobs(ctx, p, refs, imgs, o.jobs); err != nil {
		return nil, &PartialError{NotWritten: plan, Err: wrap(ref, err)}
	}
	var written []Pushed
	for i, ref := range refs {
		if err := p.Push(ctx, ref, imgs[i]); err != nil {
			return written, &PartialError{NotWritten: plan[i:], Err: wrap(ref, err)}
		}
		written = append(written, plan[i])
	}
	return written, nil
}

// blob is one upload: a layer or config of the image pushed to ref.
type blob struct {
	ref   name.Reference
	layer v1.Layer
}

// uploadBlobs uploads every layer and config of imgs, each digest once per
// repository, jobs at a time. After the first failure it starts no more
// uploads, and returns the failure and the reference it was for.
func uploadBlobs(ctx context.Context, p *ggcr.Pusher, refs []name.Reference, imgs []oci.Taggable, jobs int) (name.Reference, error) {
	var todo []blob
	seen := map[string]bool{}
	for i, t := range imgs {
		ims, err := imagesOf(t)
		if err != nil {
			return refs[i], err
		}
		for _, img := range ims {
			layers, err := img.Layers()
			if err != nil {
				return refs[i], err
			}
			cfg, err := partial.ConfigLayer(img)
			if err != nil {
				return refs[i], err
			}
			for _, l := range append(layers, cfg) {
				d, err := l.Digest()
				if err != nil {
					return refs[i], err
				}
				key := refs[i].Context().Name() + "@" + d.String()
				if !seen[key] {
					seen[key] = true
					todo = append(todo, blob{refs[i], l})
				}
			}
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fail  error
		where name.Reference
	)
	sem := make(chan struct{}, max(jobs, 1))
	for _, b := range todo {
		sem <- struct{}{}
		mu.Lock()
		stop := fail != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := p.Upload(ctx, b.ref.Context(), b.layer); err != nil {
				mu.Lock()
				if fail == nil {
					fail, where = err, b.ref
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if fail == nil && ctx.Err() != nil {
		return refs[0], ctx.Err()
	}
	return where, fail
}

// imagesOf is the images t holds: t itself, or each entry of an index
// (whose manifests the Pusher writes before the index).
func imagesOf(t oci.Taggable) ([]v1.Image, error) {
	switch t := t.(type) {
	case v1.Image:
		return []v1.Image{t}, nil
	case v1.ImageIndex:
		return partial.FindImages(t, func(v1.Descriptor) bool { return true })
	}
	return nil, fmt.Errorf("remote: %T is neither an image nor an image index", t)
}

// plan pairs references with images and their digests.
func plan(refs []name.Reference, imgs []oci.Taggable) ([]Pushed, error) {
	if len(refs) != len(imgs) {
		return nil, fmt.Errorf("remote: %d references for %d images", len(refs), len(imgs))
	}
	seen := make(map[string]bool, len(refs))
	out := make([]Pushed, len(refs))
	for i, ref := range refs {
		if seen[ref.Name()] {
			return nil, fmt.Errorf("remote: %s given twice", ref)
		}
		seen[ref.Name()] = true
		d, err := imgs[i].Digest()
		if err != nil {
			return nil, err
		}
		out[i] = Pushed{Ref: ref, Digest: d}
	}
	return out, nil
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
