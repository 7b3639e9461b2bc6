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
// tag, and leaves it out, with a warning, for a disk too large for it.
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

	big := t.TempDir()
	code, _, errs = tvo(t, "build", "-o", big, "--format", "raw", "--size", "512MiB")
	if code != 0 || !strings.Contains(errs, "OCI layout not written") {
		t.Fatalf("build --size 512MiB: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(big, "oci")); !os.IsNotExist(err) {
		t.Errorf("layout written for a 512 MiB disk: %v", err)
	}

	// With a format that fits, the layout holds that one, and says which
	// file it left out.
	code, _, errs = tvo(t, "build", "-o", big, "--format", "raw,qcow2", "--size", "512MiB")
	if code != 0 || !strings.Contains(errs, "left out of the OCI layout: 512-byte-vm.raw is 536870912 bytes") {
		t.Fatalf("build --format raw,qcow2 --size 512MiB: exit %d: %s", code, errs)
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
	if strings.Join(refs, ",") != "qcow2,"+oci.ArtifactTag {
		t.Errorf("layout refs %v, want qcow2 and %s", refs, oci.ArtifactTag)
	}
}
