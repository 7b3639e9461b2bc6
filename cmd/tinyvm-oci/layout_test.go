package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// TestBuildLayout checks that build writes dist/oci with a ref.name per
// tag, and leaves out the VM artifact, with a warning, for a raw disk too
// large for it.
func TestBuildLayout(t *testing.T) {
	dist := t.TempDir()
	code, out, errs := tvo(t, "build", "-o", dist, "--format", "raw")
	if code != 0 || !strings.Contains(out, filepath.Join(dist, "oci")) {
		t.Fatalf("build: exit %d, %q: %s", code, out, errs)
	}
	p, err := layout.FromPath(filepath.Join(dist, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, d := range im.Manifests {
		refs = append(refs, d.Annotations[oci.AnnotationRefName])
	}
	if strings.Join(refs, ",") != "raw,"+oci.ArtifactTag+","+oci.VMTag {
		t.Errorf("layout refs %v", refs)
	}

	// A sparse 1 TiB disk: every image reads only the files' data
	// (reading the whole raw disk would take minutes), so the layout
	// holds them all, the VM artifact too.
	big := t.TempDir()
	code, _, errs = tvo(t, "build", "-o", big, "--format", "raw,qcow2", "--size", "1TiB")
	if code != 0 || strings.Contains(errs, oci.VMTag+" (") {
		t.Fatalf("build --format raw,qcow2 --size 1TiB: exit %d: %s", code, errs)
	}
	p, err = layout.FromPath(filepath.Join(big, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	if ii, err = p.ImageIndex(); err != nil {
		t.Fatal(err)
	}
	if im, err = ii.IndexManifest(); err != nil {
		t.Fatal(err)
	}
	refs = nil
	for _, d := range im.Manifests {
		refs = append(refs, d.Annotations[oci.AnnotationRefName])
	}
	if strings.Join(refs, ",") != "raw,qcow2,"+oci.ArtifactTag+","+oci.VMTag {
		t.Errorf("layout refs %v, want raw, qcow2, %s and %s", refs, oci.ArtifactTag, oci.VMTag)
	}
	// The containerDisks' layers hold the disk's data, not its zeros;
	// the VM artifact's zstd has no holes, and codes its zeros in 4
	// bytes per 128 KiB block: 32 MiB.
	blobs, err := os.ReadDir(filepath.Join(big, "oci", "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range blobs {
		info, err := b.Info()
		if err != nil {
			t.Fatal(err)
		}
		total += info.Size()
	}
	if total > 33<<20 {
		t.Errorf("the 1 TiB disk's layout stores %d bytes of blobs, want the data and 32 MiB of zstd blocks (under 33 MiB)", total)
	}
}
