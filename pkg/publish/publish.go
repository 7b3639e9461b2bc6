// Package publish builds the VM and pushes it to a registry: the library
// behind `tinyvm-oci push`. It decides what a reference asks for (one
// containerDisk, the all-formats artifact, or every tag), builds those
// files, turns them into images and pushes them in one run.
package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

// DefaultFormat is pushed when neither the tag nor --format names one:
// KubeVirt boots qcow2 and raw containerDisks, and qcow2 is the smaller.
const DefaultFormat = "qcow2"

// Mode is what a push publishes.
type Mode int

// What a push can publish.
const (
	// ContainerDisk is one format as a KubeVirt containerDisk.
	ContainerDisk Mode = iota
	// Artifact is the OCI artifact holding every selected format.
	Artifact
	// All is every format under its own tag plus the artifact under
	// oci.ArtifactTag.
	All
)

// Target is what one push publishes.
type Target struct {
	// Ref is the reference pushed to; with All, its repository.
	Ref name.Reference
	// Mode is what is pushed.
	Mode Mode
	// Formats are the formats to build.
	Formats []formats.Format
}

// ErrUsage marks a request that contradicts itself; the CLI reports it as
// a usage error.
var ErrUsage = errors.New("publish: bad request")

// Resolve works out what pushing to ref means. A tag that names a format
// pushes that containerDisk and the tag "disks" the artifact; all and
// artifact ask for those outright; flagged are the formats --format lists.
func Resolve(ref name.Reference, all, artifact bool, flagged []formats.Format) (Target, error) {
	if _, ok := ref.(name.Digest); ok {
		return Target{}, fmt.Errorf("%w: push needs a tag, not a digest: %s", ErrUsage, ref)
	}
	if all && artifact {
		return Target{}, fmt.Errorf("%w: --all already pushes the artifact; use one of --all and --artifact", ErrUsage)
	}
	tag := ""
	if t, ok := ref.(name.Tag); ok {
		tag = t.TagStr()
	}
	switch {
	case all:
		return Target{Ref: ref, Mode: All, Formats: flagged}, nil
	case artifact || tag == oci.ArtifactTag:
		return Target{Ref: ref, Mode: Artifact, Formats: flagged}, nil
	}
	f, err := containerDiskFormat(tag, flagged)
	if err != nil {
		return Target{}, err
	}
	return Target{Ref: ref, Mode: ContainerDisk, Formats: []formats.Format{f}}, nil
}

// containerDiskFormat picks the one format a containerDisk push holds.
func containerDiskFormat(tag string, flagged []formats.Format) (formats.Format, error) {
	if slices.Contains(formats.Names(), tag) {
		f, _ := formats.Lookup(tag)
		if len(flagged) > 0 && (len(flagged) != 1 || flagged[0].Type != tag) {
			return f, fmt.Errorf("%w: tag %q names a format, --format says otherwise", ErrUsage, tag)
		}
		return f, nil
	}
	switch len(flagged) {
	case 0:
		return formats.Lookup(DefaultFormat)
	case 1:
		return flagged[0], nil
	}
	return formats.Format{}, fmt.Errorf("%w: a containerDisk holds one format; --format lists %d (use --all or --artifact for several)", ErrUsage, len(flagged))
}

// Push builds t's formats with bo into a temporary directory, makes the
// images (stamped with bo's time and version) and pushes them in one run:
// every blob before any manifest, so a failed push leaves no tag pointing
// at missing content. It returns the build result (for its warnings) and
// what was pushed.
//
// progress, when not nil, receives upload progress; it is closed when
// Push returns, whether or not the upload started.
func Push(ctx context.Context, t Target, bo build.Options, version string, progress chan v1.Update, opts ...remote.Option) (*build.Result, []remote.Pushed, error) {
	res, refs, imgs, cleanup, err := images(t, bo, version)
	defer cleanup()
	if err != nil {
		if progress != nil {
			close(progress) // remote.Push, which would close it, never runs
		}
		return res, nil, err
	}
	if progress != nil {
		opts = append(opts, remote.WithProgress(progress))
	}
	pushed, err := remote.Push(ctx, refs, imgs, opts...)
	return res, pushed, err
}

// images builds the files into a temporary directory and makes the images
// and their references. The images read the files, so cleanup, which
// removes them, runs only after the push.
func images(t Target, bo build.Options, version string) (res *build.Result, refs []name.Reference, imgs []v1.Image, cleanup func(), err error) {
	cleanup = func() {}
	bo.Formats, bo.OCILayout, bo.ImageRepo = t.Formats, false, ""
	tmp, cleanup, err := txn.Scratch("") // a killed push leaves it; the next removes it
	if err != nil {
		return nil, nil, nil, func() {}, err
	}
	if res, err = build.Files(tmp, bo); err != nil {
		return nil, nil, nil, cleanup, err
	}
	files := make([]oci.File, len(res.Files))
	for i, f := range res.Files {
		files[i] = oci.File{Path: f.Path, Format: f.Format}
	}
	iopts := []oci.Option{oci.WithCreated(bo.Format.Stamp()), oci.WithVersion(version)}
	switch t.Mode {
	case All:
		tagged, err := oci.Images(files, iopts...)
		if err != nil {
			return res, nil, nil, cleanup, err
		}
		for _, tg := range tagged {
			refs = append(refs, t.Ref.Context().Tag(tg.Tag))
			imgs = append(imgs, tg.Image)
		}
		return res, refs, imgs, cleanup, nil
	case Artifact:
		img, err := oci.Artifact(files, iopts...)
		return res, []name.Reference{t.Ref}, []v1.Image{img}, cleanup, err
	}
	if len(files) != 1 {
		return res, nil, nil, cleanup, fmt.Errorf("publish: a containerDisk holds one file, the build made %d", len(files))
	}
	img, err := oci.ContainerDisk(files[0], iopts...)
	return res, []name.Reference{t.Ref}, []v1.Image{img}, cleanup, err
}
