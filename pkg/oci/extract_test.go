package oci_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// tarEntry is one entry of a hand-built layer.
type tarEntry struct {
	name string
	typ  byte
	link string
	size int64 // for regular files; content is that many 'x'
}

func tarLayer(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: e.size}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(e.size)))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type titled struct {
	title string
	data  []byte
}

func artifactOf(t *testing.T, layers ...titled) v1.Image {
	t.Helper()
	var adds []mutate.Addendum
	for _, l := range layers {
		ann := map[string]string{}
		if l.title != "" {
			ann[oci.AnnotationTitle] = l.title
		}
		adds = append(adds, mutate.Addendum{Layer: static.NewLayer(l.data, "application/vnd.tinyvm-oci.disk.raw"), Annotations: ann})
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), adds...)
	if err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(img, oci.EmptyMediaType)
}

// lyingLayer claims the digest of other bytes.
type lyingLayer struct {
	v1.Layer
	digest v1.Hash
}

func (l lyingLayer) Digest() (v1.Hash, error) { return l.digest, nil }

func TestExtractRefuses(t *testing.T) {
	reg := func(name string, size int64) tarEntry { return tarEntry{name: name, typ: tar.TypeReg, size: size} }
	dir := tarEntry{name: "disk/", typ: tar.TypeDir}
	other := static.NewLayer([]byte("other"), "application/vnd.tinyvm-oci.disk.raw")
	otherDigest, _ := other.Digest()
	liar, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       lyingLayer{static.NewLayer([]byte("real"), "application/vnd.tinyvm-oci.disk.raw"), otherDigest},
		Annotations: map[string]string{oci.AnnotationTitle: "a.raw"},
	})
	if err != nil {
		t.Fatal(err)
	}
	liar = mutate.ConfigMediaType(liar, oci.EmptyMediaType)
	good := imageOf(t, tarLayer(t, dir, reg("disk/a.raw", 10)))
	cfg, _ := good.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs[0] = otherDigest
	badDiffID, err := mutate.ConfigFile(good, cfg)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		img  v1.Image
		want error
	}{
		{"dotdot", imageOf(t, tarLayer(t, dir, reg("../evil", 10))), oci.ErrUnsafe},
		{"dotdot inside disk", imageOf(t, tarLayer(t, dir, reg("disk/../../evil", 10))), oci.ErrUnsafe},
		{"absolute", imageOf(t, tarLayer(t, reg("/disk/evil", 10))), oci.ErrUnsafe},
		{"symlink", imageOf(t, tarLayer(t, dir, tarEntry{name: "disk/a.raw", typ: tar.TypeSymlink, link: "/etc/passwd"})), oci.ErrUnsafe},
		{"symlink outside disk", imageOf(t, tarLayer(t, tarEntry{name: "x", typ: tar.TypeSymlink, link: "/"}, dir, reg("disk/a.raw", 1))), oci.ErrUnsafe},
		{"hard link", imageOf(t, tarLayer(t, dir, reg("disk/a.raw", 10), tarEntry{name: "disk/b.raw", typ: tar.TypeLink, link: "disk/a.raw"})), oci.ErrUnsafe},
		{"char device", imageOf(t, tarLayer(t, dir, tarEntry{name: "disk/null", typ: tar.TypeChar})), oci.ErrUnsafe},
		{"block device", imageOf(t, tarLayer(t, dir, tarEntry{name: "disk/sda", typ: tar.TypeBlock})), oci.ErrUnsafe},
		{"fifo", imageOf(t, tarLayer(t, dir, tarEntry{name: "disk/p", typ: tar.TypeFifo})), oci.ErrUnsafe},
		{"subdirectory", imageOf(t, tarLayer(t, dir, reg("disk/sub/a.raw", 10))), oci.ErrUnsafe},
		{"two disks", imageOf(t, tarLayer(t, dir, reg("disk/a.raw", 10), reg("disk/b.raw", 10))), oci.ErrNoDisk},
		{"two disks in two layers", imageOf(t, tarLayer(t, dir, reg("disk/a.raw", 10)), tarLayer(t, reg("disk/b.raw", 10))), oci.ErrNoDisk},
		{"no disk", imageOf(t, tarLayer(t, reg("etc/a.raw", 10))), oci.ErrNoDisk},
		{"too large", imageOf(t, tarLayer(t, dir, reg("disk/a.raw", 4097))), oci.ErrTooLarge},
		{"diff_id mismatch", badDiffID, oci.ErrDigest},
		{"artifact dotdot", artifactOf(t, titled{"../evil", []byte("x")}), oci.ErrUnsafe},
		{"artifact absolute", artifactOf(t, titled{"/tmp/evil", []byte("x")}), oci.ErrUnsafe},
		{"artifact subdir", artifactOf(t, titled{"a/b", []byte("x")}), oci.ErrUnsafe},
		{"artifact duplicate", artifactOf(t, titled{"a.raw", []byte("x")}, titled{"a.raw", []byte("y")}), oci.ErrUnsafe},
		{"artifact too large", artifactOf(t, titled{"a.raw", make([]byte, 4097)}), oci.ErrTooLarge},
		{"artifact no titles", artifactOf(t, titled{"", []byte("x")}), oci.ErrNoDisk},
		{"artifact digest mismatch", liar, oci.ErrDigest},
		// A good file before the bad one must not be left behind.
		{"artifact good then bad", artifactOf(t, titled{"a.raw", []byte("x")}, titled{"../b", []byte("y")}), oci.ErrUnsafe},
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
			if ents, _ := os.ReadDir(parent); len(ents) > 1 {
				t.Errorf("wrote outside the output directory: %v", ents)
			}
		})
	}
}

func TestExtractContainerDisk(t *testing.T) {
	// "./disk/" prefixes, as some tar tools write them, and files outside
	// disk/ are accepted; an existing symlink at the target is replaced,
	// not followed.
	img := imageOf(t, tarLayer(t, tarEntry{name: "./disk/", typ: tar.TypeDir}, tarEntry{name: "./disk/a.raw", typ: tar.TypeReg, size: 100}, tarEntry{name: "README", typ: tar.TypeReg, size: 3}))
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	os.MkdirAll(out, 0o755)
	victim := filepath.Join(parent, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	os.Symlink(victim, filepath.Join(out, "a.raw"))
	paths, err := oci.Extract(img, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || filepath.Base(paths[0]) != "a.raw" {
		t.Fatalf("paths %v", paths)
	}
	if b := mustRead(t, paths[0]); !bytes.Equal(b, bytes.Repeat([]byte("x"), 100)) {
		t.Errorf("content %q", b)
	}
	if b := mustRead(t, victim); string(b) != "keep" {
		t.Errorf("followed a symlink: victim now %q", b)
	}
}

// FuzzExtract feeds arbitrary tar streams to Extract as a containerDisk
// layer: it must never panic, never write outside the output directory,
// and never leave a file behind when it fails.
func FuzzExtract(f *testing.F) {
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
	seed(&tar.Header{Name: "disk/", Typeflag: tar.TypeDir}, &tar.Header{Name: "disk/a.raw", Typeflag: tar.TypeReg, Size: 10})
	seed(&tar.Header{Name: "disk/../x", Typeflag: tar.TypeReg, Size: 1})
	seed(&tar.Header{Name: "disk/a", Typeflag: tar.TypeSymlink, Linkname: "../../x"})
	seed(&tar.Header{Name: "disk/a", Typeflag: tar.TypeReg, Size: 1}, &tar.Header{Name: "disk/b", Typeflag: tar.TypeLink, Linkname: "disk/a"})
	f.Fuzz(fuzzBody)
}

// fuzzBody is FuzzExtract's check of one input.
func fuzzBody(t *testing.T, b []byte) {
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), l)
	if err != nil {
		return
	}
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	var paths []string
	done := make(chan struct{})
	go func() { paths, err = oci.Extract(img, out, oci.WithMaxSize(1<<20)); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Extract hangs on %q", b)
	}
	if ents, _ := os.ReadDir(parent); len(ents) > 1 {
		t.Fatalf("wrote outside the output directory: %v", ents)
	}
	ents, _ := os.ReadDir(out)
	if err != nil && len(ents) != 0 {
		t.Fatalf("failed (%v) but left %v", err, ents)
	}
	if err == nil && (len(paths) != 1 || len(ents) != 1 || filepath.Dir(paths[0]) != out) {
		t.Fatalf("succeeded with paths %v, directory %v", paths, ents)
	}
}
