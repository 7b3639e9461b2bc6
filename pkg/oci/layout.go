package oci

import (
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// WriteLayout writes an OCI image layout at dir holding every file's
// containerDisk index and the artifact (see Images), each with an
// org.opencontainers.image.ref.name annotation naming its tag in
// index.json, so that
// `skopeo copy oci:DIR:qcow2 docker://...`, `oras cp --from-oci-layout
// DIR:disks ...` and `crane push DIR ...` can publish it.
//
// The layout is written next to dir and renamed into place, replacing any
// previous layout at dir, so a failed write leaves the old one.
func WriteLayout(dir string, files []File, opts ...Option) error {
	imgs, err := Images(files, opts...)
	if err != nil {
		return err
	}
	return WriteImages(dir, imgs)
}

// WriteImages writes the tagged images as an OCI image layout at dir, in
// order, replacing any previous layout there.
func WriteImages(dir string, imgs []Tagged) (err error) {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	// MkdirTemp makes the directory 0700; a layout is shared like the disks.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	for _, t := range imgs {
		if err := appendTagged(p, t); err != nil {
			return fmt.Errorf("oci: layout: %s: %w", t.Tag, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	return nil
}

// appendTagged writes t's manifests and blobs into the layout and adds its
// descriptor, named by its tag, to index.json: an image index as an index
// (its per-platform manifests are blobs only it points to), anything else
// as an image.
func appendTagged(p layout.Path, t Tagged) error {
	ref := layout.WithAnnotations(map[string]string{AnnotationRefName: t.Tag})
	switch c := t.Image.(type) {
	case v1.ImageIndex:
		return p.AppendIndex(c, ref)
	case v1.Image:
		return p.AppendImage(c, ref)
	}
	return fmt.Errorf("%T is neither an image nor an image index", t.Image)
}
