package oci_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

// TestArtifactExtract: Extract gives back every file of the artifact,
// byte-identical, in the output directory itself.
func TestArtifactExtract(t *testing.T) {
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	img, err := oci.Artifact(files)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	paths, err := oci.Extract(img, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(files) {
		t.Fatalf("extracted %v for %d files", paths, len(files))
	}
	for i, f := range files {
		if paths[i] != filepath.Join(out, f.Format.FileName()) || !bytes.Equal(mustRead(t, paths[i]), mustRead(t, f.Path)) {
			t.Errorf("%s: extracted %s differs", f.Path, paths[i])
		}
	}
}

// dirEntry is one entry of a hand-built directory layer.
type dirEntry struct {
	name string
	typ  byte
	link string
	body string
}

// dirArtifact is an artifact whose one layer is a directory layer titled
// title holding entries; tarDigest, when not empty, replaces the tar's
// digest in the unpack annotation.
func dirArtifact(t *testing.T, title, tarDigest string, entries ...dirEntry) v1.Image {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(tb.Bytes())
	zw.Close()
	if tarDigest == "" {
		tarDigest = fmt.Sprintf("sha256:%x", sha256.Sum256(tb.Bytes()))
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer: static.NewLayer(zb.Bytes(), oci.ArtifactLayerMediaType),
		Annotations: map[string]string{
			oci.AnnotationTitle:        title,
			oci.AnnotationUnpack:       "true",
			oci.AnnotationUnpackDigest: tarDigest,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(img, oci.EmptyMediaType)
}

func TestArtifactExtractRefuses(t *testing.T) {
	dir := dirEntry{name: "d/", typ: tar.TypeDir}
	reg := func(name, body string) dirEntry { return dirEntry{name: name, typ: tar.TypeReg, body: body} }
	big := string(make([]byte, 4097))
	for _, tc := range []struct {
		name string
		img  v1.Image
		want error
	}{
		{"dotdot", dirArtifact(t, "d", "", dir, reg("d/../evil", "x")), oci.ErrUnsafe},
		{"outside the directory", dirArtifact(t, "d", "", dir, reg("evil", "x")), oci.ErrUnsafe},
		{"absolute", dirArtifact(t, "d", "", reg("/d/evil", "x")), oci.ErrUnsafe},
		{"subdirectory", dirArtifact(t, "d", "", dir, reg("d/sub/a.raw", "x")), oci.ErrUnsafe},
		{"directory entry inside", dirArtifact(t, "d", "", dir, dirEntry{name: "d/sub/", typ: tar.TypeDir}), oci.ErrUnsafe},
		{"symlink", dirArtifact(t, "d", "", dir, dirEntry{name: "d/a.raw", typ: tar.TypeSymlink, link: "/etc/passwd"}), oci.ErrUnsafe},
		{"hard link", dirArtifact(t, "d", "", dir, reg("d/a.raw", "x"), dirEntry{name: "d/b.raw", typ: tar.TypeLink, link: "d/a.raw"}), oci.ErrUnsafe},
		{"char device", dirArtifact(t, "d", "", dir, dirEntry{name: "d/null", typ: tar.TypeChar}), oci.ErrUnsafe},
		{"fifo", dirArtifact(t, "d", "", dir, dirEntry{name: "d/p", typ: tar.TypeFifo}), oci.ErrUnsafe},
		{"twice", dirArtifact(t, "d", "", dir, reg("d/a.raw", "x"), reg("d/a.raw", "y")), oci.ErrUnsafe},
		{"dotdot title", dirArtifact(t, "..", "", reg("../a.raw", "x")), oci.ErrUnsafe},
		{"too large", dirArtifact(t, "d", "", dir, reg("d/a.raw", big)), oci.ErrTooLarge},
		{"tar digest mismatch", dirArtifact(t, "d", "sha256:"+fmt.Sprintf("%064x", 0), dir, reg("d/a.raw", "x")), oci.ErrDigest},
		// A good file before the bad one must not be left behind.
		{"good then bad", dirArtifact(t, "d", "", dir, reg("d/a.raw", "x"), reg("d/../b", "y")), oci.ErrUnsafe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			_, err := oci.Extract(tc.img, out, oci.WithMaxSize(4096))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Extract: %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
			if ents, _ := os.ReadDir(out); len(ents) != 0 {
				t.Errorf("left %v in the output directory", ents)
			}
			if ents, _ := os.ReadDir(parent); len(ents) > 1 { // out itself is removed again
				t.Errorf("wrote outside the output directory: %v", ents)
			}
		})
	}
	// The same layer with a good tar is accepted: the cases above fail
	// for their entries, not for the helper.
	out := t.TempDir()
	paths, err := oci.Extract(dirArtifact(t, "d", "", dir, reg("d/a.raw", "x"), reg("./d/b.raw", "yy")), out)
	if err != nil || len(paths) != 2 || string(mustRead(t, filepath.Join(out, "b.raw"))) != "yy" {
		t.Errorf("good directory layer: %v, %v", paths, err)
	}
}

// FuzzExtractDir feeds arbitrary tar bytes to Extract as the disks
// artifact's directory layer: it must never write outside the output
// directory, leave nothing when it fails, and write only plain files
// directly in it when it succeeds.
func FuzzExtractDir(f *testing.F) {
	seed := func(hdrs ...*tar.Header) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			tw.WriteHeader(h)
			if h.Typeflag == tar.TypeReg {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		f.Add(buf.Bytes())
	}
	seed(&tar.Header{Name: "d/", Typeflag: tar.TypeDir}, &tar.Header{Name: "d/a.raw", Typeflag: tar.TypeReg, Size: 10})
	seed(&tar.Header{Name: "d/../x", Typeflag: tar.TypeReg, Size: 1})
	seed(&tar.Header{Name: "d/a", Typeflag: tar.TypeSymlink, Linkname: "../../x"})
	seed(&tar.Header{Name: "d/a", Typeflag: tar.TypeReg, Size: 1}, &tar.Header{Name: "d/b", Typeflag: tar.TypeLink, Linkname: "d/a"})
	f.Fuzz(func(t *testing.T, b []byte) {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(b)
		zw.Close()
		img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
			Layer:       static.NewLayer(zb.Bytes(), oci.ArtifactLayerMediaType),
			Annotations: map[string]string{oci.AnnotationTitle: "d", oci.AnnotationUnpack: "true"},
		})
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.ConfigMediaType(img, oci.EmptyMediaType)
		parent := t.TempDir()
		out := filepath.Join(parent, "out")
		paths, err := oci.Extract(img, out, oci.WithMaxSize(1<<20))
		if ents, _ := os.ReadDir(parent); len(ents) > 1 { // out itself is removed again
			t.Fatalf("wrote outside the output directory: %v", ents)
		}
		ents, _ := os.ReadDir(out)
		if err != nil {
			if len(ents) != 0 {
				t.Fatalf("failed (%v) but left %v", err, ents)
			}
			return
		}
		if len(paths) != len(ents) {
			t.Fatalf("succeeded with paths %v, directory %v", paths, ents)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				t.Fatalf("wrote %s, not a plain file", e.Name())
			}
		}
	})
}

// TestArtifactGNUTar: GNU tar, a reader that is not Go's, unpacks the
// artifact's layer, sparse entries and all, into the same files.
func TestArtifactGNUTar(t *testing.T) {
	tarBin := tooltest.Require(t, "tar", "apt-get install tar")
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	img, err := oci.Artifact(files)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := img.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, %d bytes of layer", len(files), len(blob))
	dir := t.TempDir()
	tgz := filepath.Join(dir, "layer.tar.gz")
	if err := os.WriteFile(tgz, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(tarBin, "-xzf", tgz, "-C", out).CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v\n%s", err, b)
	}
	ents, _ := os.ReadDir(filepath.Join(out, oci.ArtifactDir))
	if len(ents) != len(files) {
		t.Errorf("GNU tar unpacked %v, want %d files", ents, len(files))
	}
	for _, f := range files {
		if !bytes.Equal(mustRead(t, filepath.Join(out, oci.ArtifactDir, f.Format.FileName())), mustRead(t, f.Path)) {
			t.Errorf("GNU tar's %s differs", f.Format.FileName())
		}
	}
}

// TestArtifactHoles: files of every shape of holes and data (none, all
// zeros, holes at either end, short zero runs, sizes off the block size)
// come back byte-identical through Extract (Go's tar reader) and GNU tar.
func TestArtifactHoles(t *testing.T) {
	tarBin := tooltest.Require(t, "tar", "apt-get install tar")
	z := func(n int) []byte { return make([]byte, n) }
	d := func(n int) []byte { return bytes.Repeat([]byte{0xa5}, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	contents := [][]byte{
		{},
		z(1 << 20),
		cat(d(1), z(1<<20)),
		cat(z(1<<20), d(3)),
		cat(d(700), z(4095), d(700), z(4097), d(1)),
		cat(z(10000), d(513), z(8193), d(4096), z(5)),
		d(9999),
	}
	dir := t.TempDir()
	var files []oci.File
	for i, c := range contents {
		f := formats.Types[i] // only for a distinct file name
		p := filepath.Join(dir, f.FileName())
		if err := os.WriteFile(p, c, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, oci.File{Path: p, Format: f})
	}
	img, err := oci.Artifact(files)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := oci.Extract(img, out); err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	layer, err := img.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(t.TempDir(), "layer.tar.gz")
	if err := os.WriteFile(tgz, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	gnu := t.TempDir()
	if b, err := exec.Command(tarBin, "-xzf", tgz, "-C", gnu).CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v\n%s", err, b)
	}
	for i, f := range files {
		name := f.Format.FileName()
		if got := mustRead(t, filepath.Join(out, name)); !bytes.Equal(got, contents[i]) {
			t.Errorf("file %d: Extract gives %d bytes, want %d", i, len(got), len(contents[i]))
		}
		if got := mustRead(t, filepath.Join(gnu, oci.ArtifactDir, name)); !bytes.Equal(got, contents[i]) {
			t.Errorf("file %d: GNU tar gives %d bytes, want %d", i, len(got), len(contents[i]))
		}
	}
}
