package remote

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"

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
// v1.ImageIndex) under its reference, in one session per repository and
// in two phases: first every blob of every image (each once per
// repository, a few at a time, connections reused), then the manifests,
// one at a time in the order given (an index's entries before it). So a failed push never
// leaves a tag pointing at missing content, and no tag moves until every
// blob is in place.
//
// It spends few requests: one ping per repository, a POST and one PUT per
// blob (a HEAD first only for blobs over 1 MiB, which may be there from
// an earlier push), and one PUT per manifest, with no HEAD: writing a
// manifest that is already there changes nothing.
//
// It returns the references written, in order, even when it fails; the
// error is then a *PartialError naming the others.
func Push(ctx context.Context, refs []name.Reference, imgs []oci.Taggable, opts ...Option) ([]Pushed, error) {
	o := makeOptions(opts)
	if o.progress != nil {
		// Close the channel on every path, so that a reader never waits
		// forever.
		defer close(o.progress)
	}
	plan, err := plan(refs, imgs)
	if err != nil || len(plan) == 0 {
		return nil, err
	}
	rt := o.guard()
	sessions := map[string]*session{}
	for _, ref := range refs {
		repo := ref.Context()
		if sessions[repo.Name()] != nil {
			continue
		}
		s, err := newSession(ctx, repo, rt, o)
		if err != nil {
			return nil, &PartialError{NotWritten: plan, Err: wrap(ref, err)}
		}
		sessions[repo.Name()] = s
	}
	if ref, err := uploadBlobs(ctx, sessions, refs, imgs, o); err != nil {
		return nil, &PartialError{NotWritten: plan, Err: wrap(ref, err)}
	}
	var written []Pushed
	for i, ref := range refs {
		if err := putManifests(ctx, sessions[ref.Context().Name()], ref, imgs[i]); err != nil {
			return written, &PartialError{NotWritten: plan[i:], Err: wrap(ref, err)}
		}
		written = append(written, plan[i])
	}
	return written, nil
}

// manifest is what a tag or an index can point at.
type manifest = oci.Taggable

// putManifests writes t under ref: an index's own manifests first, by
// digest, then t under ref's tag.
func putManifests(ctx context.Context, s *session, ref name.Reference, t manifest) error {
	if idx, ok := t.(v1.ImageIndex); ok {
		children, err := children(idx)
		if err != nil {
			return err
		}
		for _, c := range children {
			d, err := c.Digest()
			if err != nil {
				return err
			}
			if err := putManifests(ctx, s, ref.Context().Digest(d.String()), c); err != nil {
				return err
			}
		}
	}
	raw, err := t.RawManifest()
	if err != nil {
		return err
	}
	mt, err := t.MediaType()
	if err != nil {
		return err
	}
	return s.putManifest(ctx, ref.Identifier(), raw, mt)
}

// children returns the images and indexes idx points at.
func children(idx v1.ImageIndex) ([]manifest, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []manifest
	for _, d := range im.Manifests {
		var c manifest
		if d.MediaType.IsIndex() {
			c, err = idx.ImageIndex(d.Digest)
		} else {
			c, err = idx.Image(d.Digest)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// blobsOf returns every layer and config of an image, or of every image
// an index holds.
func blobsOf(t manifest) ([]v1.Layer, error) {
	if idx, ok := t.(v1.ImageIndex); ok {
		cs, err := children(idx)
		if err != nil {
			return nil, err
		}
		var out []v1.Layer
		for _, c := range cs {
			ls, err := blobsOf(c)
			if err != nil {
				return nil, err
			}
			out = append(out, ls...)
		}
		return out, nil
	}
	img, ok := t.(v1.Image)
	if !ok {
		return nil, fmt.Errorf("remote: %T is neither an image nor an image index", t)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	cfg, err := partial.ConfigLayer(img)
	if err != nil {
		return nil, err
	}
	return append(layers, cfg), nil
}

// blob is one upload: a layer or config of the image pushed to ref.
type blob struct {
	ref   name.Reference
	layer v1.Layer
	size  int64
}

// uploadBlobs uploads every layer and config of imgs, each digest once per
// repository, o.jobs at a time. After the first failure it starts no more
// uploads, and returns the failure and the reference it was for.
func uploadBlobs(ctx context.Context, sessions map[string]*session, refs []name.Reference, imgs []oci.Taggable, o options) (name.Reference, error) {
	var todo []blob
	var total int64
	seen := map[string]bool{}
	for i, img := range imgs {
		layers, err := blobsOf(img)
		if err != nil {
			return refs[i], err
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return refs[i], err
			}
			size, err := l.Size()
			if err != nil {
				return refs[i], err
			}
			key := refs[i].Context().Name() + "@" + d.String()
			if !seen[key] {
				seen[key] = true
				todo = append(todo, blob{refs[i], l, size})
				total += size
			}
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fail  error
		where name.Reference
		done  int64
	)
	sem := make(chan struct{}, max(o.jobs, 1))
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
			err := sessions[b.ref.Context().Name()].upload(ctx, b.layer)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if fail == nil {
					fail, where = err, b.ref
				}
				return
			}
			done += b.size
			if o.progress != nil {
				select {
				case o.progress <- v1.Update{Total: total, Complete: done}:
				case <-ctx.Done():
				}
			}
		}()
	}
	wg.Wait()
	if fail == nil && ctx.Err() != nil {
		return refs[0], ctx.Err()
	}
	return where, fail
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
