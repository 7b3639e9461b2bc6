package oci_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
	"github.com/tinyvm-oci/tinyvm-oci/internal/txn/txntest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

// TestExtractAllOrNothing makes the second of two renames fail for real
// (an immutable file in the way, which even root cannot replace): the
// first file, already renamed in, is put back as it was.
func TestExtractAllOrNothing(t *testing.T) {
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "a.raw"), []byte("previous a"), 0o644)
	os.WriteFile(filepath.Join(out, "b.raw"), []byte("previous b"), 0o644)
	txntest.Immutable(t, filepath.Join(out, "b.raw"))
	before := txntest.Snapshot(t, out)
	img := artifactOf(t, titled{"a.raw", []byte("new a")}, titled{"b.raw", []byte("new b")})
	_, err := oci.Extract(img, out)
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Extract: %v, want a permission error on b.raw", err)
	}
	if !strings.Contains(err.Error(), filepath.Join(out, "b.raw")) || strings.Contains(err.Error(), txn.Prefix) {
		t.Errorf("error %q: want it to name b.raw and no temp file", err)
	}
	if after := txntest.Snapshot(t, out); after != before {
		t.Errorf("a failed pull changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestWriteLayoutOverUsers: a layout replaces only a layout; a directory
// holding anything else is refused, by name, and left untouched.
func TestWriteLayoutOverUsers(t *testing.T) {
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	for _, tc := range []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"user's directory", func(dir string) {
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
		}, "holds notes.txt"},
		{"user's file", func(dir string) {
			os.WriteFile(dir, []byte("mine"), 0o644)
		}, "is not a directory"},
		{"a layout with a user's file in it", func(dir string) {
			if err := oci.WriteLayout(dir, files); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "blobs", "sha256", "notes.txt"), []byte("mine"), 0o644)
		}, "blobs/sha256/notes.txt"},
		{"empty directory", func(dir string) { os.MkdirAll(dir, 0o755) }, "lacks oci-layout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "oci")
			tc.setup(dir)
			before := txntest.Snapshot(t, parent)
			err := oci.WriteLayout(dir, files)
			if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("WriteLayout over %s: %v, want an error naming %s and %q", tc.name, err, dir, tc.want)
			}
			if after := txntest.Snapshot(t, parent); after != before {
				t.Errorf("changed:\n%s", after)
			}
		})
	}
}

// TestLayoutModes: files 0644 and directories 0755, whatever the umask.
func TestLayoutModes(t *testing.T) {
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	old := syscall.Umask(0o077)
	dir := filepath.Join(t.TempDir(), "oci")
	err := oci.WriteLayout(dir, files)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Lstat(p)
		want := fs.FileMode(0o644)
		if d.IsDir() {
			want = fs.ModeDir | 0o755
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode(), want)
		}
		n++
		return nil
	})
	if n < 5 {
		t.Errorf("only %d entries in the layout", n)
	}
}

// TestWriteImagesAsGGCR: WriteImages of images whose layers are nowhere
// yet (made without WithBlobDir, so every blob is written, layers
// included) gives the same directory, byte for byte, as ggcr's own
// layout.Write of the same tagged index, and WriteLayout (layers made in
// place) gives that too.
func TestWriteImagesAsGGCR(t *testing.T) {
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	imgs, err := oci.Images(files)
	if err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(t.TempDir(), "oci")
	if err := oci.WriteImages(ours, imgs); err != nil {
		t.Fatal(err)
	}
	adds := make([]mutate.IndexAddendum, len(imgs))
	for i, x := range imgs {
		adds[i] = mutate.IndexAddendum{Add: x.Image, Descriptor: v1.Descriptor{Annotations: map[string]string{oci.AnnotationRefName: x.Tag}}}
	}
	theirs := filepath.Join(t.TempDir(), "oci")
	if _, err := layout.Write(theirs, mutate.AppendManifests(empty.Index, adds...)); err != nil {
		t.Fatal(err)
	}
	inPlace := filepath.Join(t.TempDir(), "oci")
	if err := oci.WriteLayout(inPlace, files); err != nil {
		t.Fatal(err)
	}
	want := contents(t, theirs)
	if len(want) < 40 {
		t.Fatalf("ggcr wrote only %d files", len(want))
	}
	for _, dir := range []string{ours, inPlace} {
		got := contents(t, dir)
		for name, b := range want {
			if got[name] != b {
				t.Errorf("%s: %s differs from ggcr's (%d bytes, want %d)", dir, name, len(got[name]), len(b))
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("%s: %s is not in ggcr's layout", dir, name)
			}
		}
	}
}

// contents maps each regular file under dir, by its slash path relative
// to dir, to its bytes. Not txntest.Snapshot, which compares modes too:
// ggcr's files are 0755 under the umask and ours 0644 (TestLayoutModes).
func contents(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
