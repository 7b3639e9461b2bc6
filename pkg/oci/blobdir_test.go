package oci_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

// TestBlobDir: images made WithBlobDir (containerDisks, the artifact, the
// VM artifact) have the same digests as without it; the directory then
// holds exactly their layer blobs, each named by its sha256, with no temp
// file left; and reads come from those blobs, failing if one is changed.
func TestBlobDir(t *testing.T) {
	src := t.TempDir()
	vm := oci.WithVirtualMachine(exportedVM)
	want := digests(t, src, vm)
	dir := filepath.Join(t.TempDir(), "blobs", "sha256")
	got := digests(t, t.TempDir(), vm, oci.WithBlobDir(dir))
	if !slices.Equal(got, want) {
		t.Fatalf("digests WithBlobDir:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	files := ocitest.Files(t, t.TempDir(), build.Options{})
	dir = t.TempDir()
	imgs, err := oci.Images(files, vm, oci.WithBlobDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	layers := map[string]v1.Layer{}
	for _, ti := range imgs {
		for _, img := range entries(t, ti.Image) {
			ls, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ls {
				d, _ := l.Digest()
				layers[d.Hex] = l
			}
		}
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != len(layers) {
		t.Errorf("%d files in the blob directory for %d layers", len(es), len(layers))
	}
	for _, e := range es {
		b := mustRead(t, filepath.Join(dir, e.Name()))
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != e.Name() || layers[e.Name()] == nil {
			t.Errorf("blob %s: sha256 %x, a layer: %v", e.Name(), h, layers[e.Name()] != nil)
		}
		if st, _ := e.Info(); st.Mode().Perm() != 0o644 {
			t.Errorf("blob %s: mode %v, want 0644", e.Name(), st.Mode())
		}
	}

	// A changed blob fails the read.
	for hexd, l := range layers {
		p := filepath.Join(dir, hexd)
		b := mustRead(t, p)
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err == nil {
			t.Errorf("read of the changed blob %s succeeded", hexd)
		}
		break
	}
}

// entries is img itself, or each image of an index.
func entries(t *testing.T, img oci.Taggable) []v1.Image {
	t.Helper()
	idx, ok := img.(v1.ImageIndex)
	if !ok {
		return []v1.Image{img.(v1.Image)}
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Image
	for _, d := range im.Manifests {
		i, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, i)
	}
	return out
}
