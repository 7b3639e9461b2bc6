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

	// A sparse 1 TiB disk, over the VM artifact's limit: the
	// containerDisks and the artifact read only the files' data, so the
	// layout holds them (reading the whole raw disk would take minutes);
	// the VM artifact, whose zstd layer would read every byte, is left
	// out with a warning that names it.
	big := t.TempDir()
	code, _, errs = tvo(t, "build", "-o", big, "--format", "raw,qcow2", "--size", "1TiB")
	if code != 0 || !strings.Contains(errs, "vm (KubeVirt's VM artifact) left out of the OCI layout: 512-byte-vm.raw is 1099511627776 bytes") {
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
	if strings.Join(refs, ",") != "raw,qcow2,"+oci.ArtifactTag {
		t.Errorf("layout refs %v, want raw, qcow2 and %s", refs, oci.ArtifactTag)
	}
	// The raw containerDisk's layer holds the disk's data, not its
	// zeros.
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
	if total > 1<<20 {
		t.Errorf("the 1 TiB disk's layout stores %d bytes of blobs, want the data only (under 1 MiB)", total)
	}
}
