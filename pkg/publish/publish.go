// Package publish builds the VM and pushes it to a registry: the library
// behind `tinyvm-oci push`. It decides what a reference asks for (one
// containerDisk, the all-formats artifact, or every tag), builds those
// files, turns them into images and pushes them in one run.
package publish

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

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
	// oci.ArtifactTag (and, when raw is among the formats, the VM artifact
	// under oci.VMTag).
	All
	// VM is KubeVirt's VM artifact of the raw disk (oci.VirtualMachine).
	VM
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
	case all && hasTag(ref):
		return Target{}, fmt.Errorf("%w: --all pushes every format under its own tag and would ignore %q; give the repository alone", ErrUsage, tag)
	case artifact && tag != oci.ArtifactTag && slices.Contains(formats.Names(), tag):
		return Target{}, fmt.Errorf("%w: tag %q names the %s containerDisk, --artifact pushes the artifact; use the tag %q or drop --artifact", ErrUsage, tag, tag, oci.ArtifactTag)
	case all:
		return Target{Ref: ref, Mode: All, Formats: flagged}, nil
	case artifact || tag == oci.ArtifactTag:
		return Target{Ref: ref, Mode: Artifact, Formats: flagged}, nil
	case tag == oci.VMTag:
		raw, _ := formats.Lookup("raw")
		if len(flagged) > 0 && (len(flagged) != 1 || flagged[0].Type != raw.Type) {
			return Target{}, fmt.Errorf("%w: tag %q is KubeVirt's VM artifact, which holds the raw disk; drop --format", ErrUsage, tag)
		}
		return Target{Ref: ref, Mode: VM, Formats: []formats.Format{raw}}, nil
	}
	f, err := containerDiskFormat(tag, flagged)
	if err != nil {
		return Target{}, err
	}
	if err := oci.CheckContainerDisk(f); err != nil {
		return Target{}, fmt.Errorf("%w: %w; the %s is a file of %s (push or pull that), or push raw or qcow2 as the containerDisk",
			ErrUsage, err, f.Type, ref.Context().Tag(oci.ArtifactTag))
	}
	return Target{Ref: ref, Mode: ContainerDisk, Formats: []formats.Format{f}}, nil
}

// hasTag reports whether the user wrote a tag: ggcr fills in "latest"
// when there is none, and keeps what was typed in String.
func hasTag(ref name.Reference) bool {
	s := ref.String()
	return strings.Contains(s[strings.LastIndex(s, "/")+1:], ":")
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
// the tags written, in order, also when it fails; a push that failed after
// it started is a *remote.PartialError naming the tags not written.
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
func images(t Target, bo build.Options, version string) (res *build.Result, refs []name.Reference, imgs []oci.Taggable, cleanup func(), err error) {
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
	// Blobs go into the temp directory as the images are made, so each
	// layer is compressed once, not again for the upload.
	iopts := append(bo.ImageOptions(), oci.WithVersion(version), oci.WithCreatedBy("tinyvm-oci push"),
		oci.WithBlobDir(filepath.Join(tmp, "blobs")))
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
	case VM:
		idx, err := oci.VirtualMachine(files[0], bo.ExportedVM, iopts...)
		return res, []name.Reference{t.Ref}, []oci.Taggable{idx}, cleanup, err
	case Artifact:
		img, err := oci.Artifact(files, iopts...)
		return res, []name.Reference{t.Ref}, []oci.Taggable{img}, cleanup, err
	}
	if len(files) != 1 {
		return res, nil, nil, cleanup, fmt.Errorf("publish: a containerDisk holds one file, the build made %d", len(files))
	}
	idx, err := oci.ContainerDisk(files[0], iopts...)
	return res, []name.Reference{t.Ref}, []oci.Taggable{idx}, cleanup, err
}
