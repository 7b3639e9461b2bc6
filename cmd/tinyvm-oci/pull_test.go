package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// evilTar is a layer holding the given headers, regular files filled with
// 'x'.
func evilTar(t *testing.T, hdrs ...*tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestPullRefuses pushes hand-built hostile images and artifacts to a
// registry and checks that pull refuses each, writing nothing.
func TestPullRefuses(t *testing.T) {
	host := memRegistry(t)
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	reg := func(n string, size int64) *tar.Header {
		return &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}
	}
	image := func(hdrs ...*tar.Header) v1.Image {
		img, err := mutate.AppendLayers(base, evilTar(t, hdrs...))
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	artifact := func(titles ...string) v1.Image {
		var adds []mutate.Addendum
		for i, ti := range titles {
			adds = append(adds, mutate.Addendum{
				Layer:       static.NewLayer([]byte{byte(i), 'x'}, "application/vnd.tinyvm-oci.disk.raw"),
				Annotations: map[string]string{oci.AnnotationTitle: ti},
			})
		}
		img, err := mutate.Append(base, adds...)
		if err != nil {
			t.Fatal(err)
		}
		return mutate.ConfigMediaType(img, oci.EmptyMediaType)
	}
	cases := map[string]struct {
		img  v1.Image
		want string
	}{
		"dotdot":        {image(reg("disk/../../../evil", 1)), "contains .."},
		"absolute":      {image(reg("/etc/evil", 1)), "absolute path"},
		"symlink":       {image(&tar.Header{Name: "disk/vm.raw", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}), "symlink"},
		"hardlink":      {image(reg("disk/a", 1), &tar.Header{Name: "disk/b", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}), "hard link"},
		"device":        {image(&tar.Header{Name: "disk/mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1}), "device"},
		"two-disks":     {image(reg("disk/a.raw", 1), reg("disk/b.qcow2", 1)), "only one disk"},
		"oversized":     {image(reg("disk/a.raw", 2048)), "too large"},
		"art-dotdot":    {artifact("../../evil"), "not a plain file name"},
		"art-absolute":  {artifact("/tmp/evil"), "not a plain file name"},
		"art-duplicate": {artifact("a.raw", "a.raw"), "used twice"},
	}
	big, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(make([]byte, 2048), "application/vnd.tinyvm-oci.disk.raw"),
		Annotations: map[string]string{oci.AnnotationTitle: "big.raw"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases["art-oversized"] = struct {
		img  v1.Image
		want string
	}{mutate.ConfigMediaType(big, oci.EmptyMediaType), "too large"}
	for tag, tc := range cases {
		ref, _ := name.ParseReference(host + "/evil:" + tag)
		if err := ggcr.Write(ref, tc.img); err != nil {
			t.Fatal(err)
		}
		parent := t.TempDir()
		out := filepath.Join(parent, "out")
		code, stdout, errs := tvo(t, "pull", ref.String(), "-o", out, "--max-size", "1KiB")
		if code != exitError || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "repository evil") || stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q: want a refusal saying %q", tag, code, stdout, errs, tc.want)
		}
		if ents, _ := os.ReadDir(out); len(ents) != 0 {
			t.Errorf("%s: left %v in the output directory", tag, ents)
		}
		if ents, _ := os.ReadDir(parent); len(ents) > 1 {
			t.Errorf("%s: wrote outside the output directory: %v", tag, ents)
		}
	}
}
