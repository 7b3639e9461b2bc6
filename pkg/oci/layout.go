package oci

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/tinyvm-oci/tinyvm-oci/internal/parallel"
	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
)

// ErrNotLayout is a directory that holds something other than an OCI image
// layout, which a new layout must not replace.
var ErrNotLayout = errors.New("oci: not an OCI image layout")

// WriteLayout writes an OCI image layout at dir holding every file's
// containerDisk index and the artifact (see Images), each with an
// org.opencontainers.image.ref.name annotation naming its tag in
// index.json, so that
// `skopeo copy oci:DIR:qcow2 docker://...`, `oras cp --from-oci-layout
// DIR:disks ...` and `crane push DIR ...` can publish it.
//
// The layout is written into a temp directory beside dir and renamed into
// place. It replaces a previous layout at dir (see CheckLayout), never
// anything else, and a failed write leaves dir as it was.
//
// Each blob is written once, as its layer is made (WithBlobDir): every
// layer is compressed straight into its blob file while it is hashed.
func WriteLayout(dir string, files []File, opts ...Option) error {
	return writeLayout(dir, func(tmp string) ([]Tagged, error) {
		return Images(files, append(opts, WithBlobDir(LayoutBlobDir(tmp)))...)
	})
}

// LayoutBlobDir is where the OCI image layout at dir keeps its sha256
// blobs, for WithBlobDir.
func LayoutBlobDir(dir string) string { return filepath.Join(dir, "blobs", "sha256") }

// WriteImages writes the tagged images as an OCI image layout at dir, in
// order, replacing a previous layout there as WriteLayout does.
func WriteImages(dir string, imgs []Tagged) error {
	return writeLayout(dir, func(string) ([]Tagged, error) { return imgs, nil })
}

// writeLayout stages a temp directory for dir, writes there the images
// that make returns (given that directory, so that their blobs can go
// straight into it), and commits.
func writeLayout(dir string, make func(tmp string) ([]Tagged, error)) (err error) {
	clean := filepath.Clean(dir)
	tx, err := txn.Begin(filepath.Dir(clean))
	if err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	defer tx.Rollback()
	tmp, err := tx.TempDir()
	if err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	if err := tx.Add(filepath.Base(clean), tmp, CheckLayout); err != nil {
		return err
	}
	imgs, err := make(tmp)
	if err != nil {
		return tx.Redact(err)
	}
	if err := WriteLayoutDir(tmp, imgs); err != nil {
		return tx.Redact(err)
	}
	return tx.Commit()
}

// WriteLayoutDir writes the tagged images, in order, as an OCI image
// layout into dir, an empty directory, with files 0644 and directories
// 0755 whatever the umask. It renames nothing: callers that replace a
// layout stage dir and rename it (as WriteImages does).
func WriteLayoutDir(dir string, imgs []Tagged) error {
	// One index, written once: appending each tag with AppendIndex would
	// read and rewrite index.json for every tag.
	adds := make([]mutate.IndexAddendum, 0, len(imgs))
	for _, t := range imgs {
		switch t.Image.(type) {
		case v1.ImageIndex, v1.Image:
		default:
			return fmt.Errorf("oci: layout: %s: %T is neither an image nor an image index", t.Tag, t.Image)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        t.Image,
			Descriptor: v1.Descriptor{Annotations: map[string]string{AnnotationRefName: t.Tag}},
		})
	}
	// What layout.Write does, with the images' blobs written on every
	// CPU: each tag's index or image (ggcr's Path writes a blob only if it
	// is not there yet, and the tags share none but layers, which are
	// there already), then oci-layout and index.json. It was a serial
	// 4 ms at the end of a build, mostly system calls.
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	errs := make([]error, len(imgs))
	parallel.Each(len(imgs), func(i int) {
		switch x := imgs[i].Image.(type) {
		case v1.ImageIndex:
			errs[i] = lp.WriteIndex(x)
		case v1.Image:
			errs[i] = lp.WriteImage(x)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	raw, err := mutate.AppendManifests(empty.Index, adds...).RawManifest()
	if err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	if err := lp.WriteFile(layoutIndex, raw, 0o644); err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	// The layout package creates everything with os.ModePerm, which the
	// umask trims to 0755 or 0700 files; a layout is shared like the disks.
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(path, mode)
	})
	if err != nil {
		return fmt.Errorf("oci: layout: %w", err)
	}
	return nil
}

// CheckLayout returns nil if dir holds only an OCI image layout: an
// oci-layout file, index.json and blobs/<algorithm>/<hex digest> files,
// nothing else. Only such a directory, one this package (or another OCI
// tool) wrote, may be replaced by a new layout; anything else at dir is
// the user's, and the error names the first entry that shows it.
func CheckLayout(dir string) error {
	notOurs := func(what string) error {
		return fmt.Errorf("%w: %s %s: move it away or write the layout elsewhere", ErrNotLayout, dir, what)
	}
	if st, err := os.Lstat(dir); err != nil {
		return fmt.Errorf("oci: %w", err)
	} else if !st.IsDir() {
		return notOurs("is not a directory")
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	seen := map[string]bool{}
	for _, e := range es {
		switch {
		case e.Name() == "blobs" && e.IsDir():
		case (e.Name() == "oci-layout" || e.Name() == layoutIndex) && e.Type().IsRegular():
		default:
			return notOurs("holds " + e.Name() + ", which is not part of an OCI layout")
		}
		seen[e.Name()] = true
	}
	if !seen["oci-layout"] || !seen[layoutIndex] {
		return notOurs("lacks oci-layout or " + layoutIndex)
	}
	b, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	var marker struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err != nil || json.Unmarshal(b, &marker) != nil || marker.Version == "" {
		return notOurs("has an oci-layout file without an imageLayoutVersion")
	}
	if !seen["blobs"] {
		return nil
	}
	algs, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	for _, a := range algs {
		if !a.IsDir() {
			return notOurs("holds blobs/" + a.Name() + ", which is not a blob directory")
		}
		blobs, err := os.ReadDir(filepath.Join(dir, "blobs", a.Name()))
		if err != nil {
			return fmt.Errorf("oci: %w", err)
		}
		for _, b := range blobs {
			if _, err := hex.DecodeString(b.Name()); err != nil || len(b.Name()) < 32 || !b.Type().IsRegular() {
				return notOurs("holds blobs/" + a.Name() + "/" + b.Name() + ", which is not a blob")
			}
		}
	}
	return nil
}

// layoutIndex is the layout's top-level index file.
const layoutIndex = "index.json"
