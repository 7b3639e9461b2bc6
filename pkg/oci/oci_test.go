package oci_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

var update = flag.Bool("update", false, "rewrite testdata/oci-digests.txt")

const goldenPath = "../../testdata/oci-digests.txt"

func TestContainerDisk(t *testing.T) {
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	for _, f := range files {
		t.Run(f.Format.Type, func(t *testing.T) {
			img, err := oci.ContainerDisk(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(img); err != nil {
				t.Fatalf("validate.Image: %v", err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
				t.Errorf("media types %s, %s: want OCI manifest and config", m.MediaType, m.Config.MediaType)
			}
			if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
				t.Fatalf("layers %+v: want one %s", m.Layers, types.OCILayer)
			}
			want := map[string]string{
				oci.AnnotationTitle:    "512-byte-vm " + f.Format.Type,
				oci.AnnotationSource:   oci.DefaultSource,
				oci.AnnotationVersion:  oci.DefaultVersion,
				oci.AnnotationLicenses: oci.DefaultLicenses,
				oci.AnnotationCreated:  "2024-01-01T00:00:00Z",
				oci.AnnotationFormat:   f.Format.Type,
			}
			for k, v := range want {
				if m.Annotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], v)
				}
			}
			if !strings.Contains(m.Annotations[oci.AnnotationDescription], "containerDisk") {
				t.Errorf("description %q", m.Annotations[oci.AnnotationDescription])
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OS != "linux" || cfg.Architecture != "amd64" || !cfg.Created.Time.Equal(formats.DefaultTime) {
				t.Errorf("config os %q arch %q created %v", cfg.OS, cfg.Architecture, cfg.Created)
			}
			for k, v := range want {
				if cfg.Config.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, cfg.Config.Labels[k], v)
				}
			}
			entries := readTar(t, img)
			if len(entries) != 2 {
				t.Fatalf("%d tar entries, want 2", len(entries))
			}
			dir, file := entries[0], entries[1]
			if dir.hdr.Name != "disk/" || dir.hdr.Typeflag != tar.TypeDir || dir.hdr.Mode != 0o555 {
				t.Errorf("first entry %q type %c mode %o: want disk/ dir 0555", dir.hdr.Name, dir.hdr.Typeflag, dir.hdr.Mode)
			}
			if file.hdr.Name != "disk/"+f.Format.FileName() || file.hdr.Typeflag != tar.TypeReg || file.hdr.Mode != 0o444 {
				t.Errorf("second entry %q type %c mode %o: want disk/%s file 0444", file.hdr.Name, file.hdr.Typeflag, file.hdr.Mode, f.Format.FileName())
			}
			for _, e := range entries {
				h := e.hdr
				if h.Uid != 107 || h.Gid != 107 || h.Uname != "qemu" || h.Gname != "qemu" || !h.ModTime.Equal(formats.DefaultTime) {
					t.Errorf("%s: owner %d:%d %s:%s mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
				}
			}
			if want := mustRead(t, f.Path); !bytes.Equal(file.data, want) {
				t.Errorf("disk file in layer differs from %s", f.Path)
			}
		})
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, img v1.Image) []entry {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []entry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h, b})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestArtifact(t *testing.T) {
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	img, err := oci.Artifact(files)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	// Read the JSON as the spec and oras see it, not through ggcr's types.
	var m struct {
		MediaType    string `json:"mediaType"`
		ArtifactType string `json:"artifactType"`
		Config       struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
			Size      int64  `json:"size"`
		} `json:"config"`
		Layers []struct {
			MediaType   string            `json:"mediaType"`
			Digest      string            `json:"digest"`
			Size        int64             `json:"size"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.ArtifactType != "application/vnd.tinyvm-oci.disks.v1" {
		t.Errorf("mediaType %q artifactType %q", m.MediaType, m.ArtifactType)
	}
	if m.Config.MediaType != "application/vnd.oci.empty.v1+json" || m.Config.Size != 2 ||
		m.Config.Digest != "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
		t.Errorf("config %+v is not the empty descriptor", m.Config)
	}
	if cfg, err := img.RawConfigFile(); err != nil || string(cfg) != "{}" {
		t.Errorf("config blob %q, %v: want {}", cfg, err)
	}
	// One layer, as oras push of a directory makes it: a gzip-compressed
	// tar of 512-byte-vm/ and the files, the tar's digest annotated.
	if len(m.Layers) != 1 {
		t.Fatalf("%d layers, want the one directory layer", len(m.Layers))
	}
	l := m.Layers[0]
	if l.MediaType != "application/vnd.tinyvm-oci.disks.v1.tar+gzip" || l.Annotations[oci.AnnotationTitle] != "512-byte-vm" ||
		l.Annotations["io.deis.oras.content.unpack"] != "true" || l.Annotations[oci.AnnotationFormat] != "raw,qcow2,vmdk,vdi,vhd,vhdx,iso,ova" {
		t.Errorf("layer %+v", l)
	}
	h, _ := v1.NewHash(l.Digest)
	layer, err := img.LayerByDigest(h)
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
	if int64(len(blob)) != l.Size || fmt.Sprintf("sha256:%x", sha256.Sum256(blob)) != l.Digest {
		t.Errorf("layer blob: %d bytes, manifest says %d", len(blob), l.Size)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	tarBytes, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(tarBytes)); got != l.Annotations["io.deis.oras.content.digest"] {
		t.Errorf("tar digest %s, annotation %s", got, l.Annotations["io.deis.oras.content.digest"])
	}
	tr := tar.NewReader(bytes.NewReader(tarBytes))
	hdr, err := tr.Next()
	if err != nil || hdr.Name != "512-byte-vm/" || hdr.Typeflag != tar.TypeDir {
		t.Fatalf("first entry %+v, %v: want the directory 512-byte-vm/", hdr, err)
	}
	for _, f := range files {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(tr)
		if hdr.Name != "512-byte-vm/"+f.Format.FileName() || hdr.Typeflag != tar.TypeReg || !hdr.ModTime.Equal(formats.DefaultTime) || !bytes.Equal(got, mustRead(t, f.Path)) {
			t.Errorf("entry %q (type %c, mtime %v) is not %s", hdr.Name, hdr.Typeflag, hdr.ModTime, f.Path)
		}
	}
	if hdr, err := tr.Next(); err != io.EOF {
		t.Errorf("extra entry %+v, %v", hdr, err)
	}
	if m.Annotations[oci.AnnotationCreated] != "2024-01-01T00:00:00Z" || m.Annotations[oci.AnnotationTitle] == "" {
		t.Errorf("annotations %v", m.Annotations)
	}
}

// digests returns "tag digest" lines for the default images built in dir.
func digests(t *testing.T, dir string, opts ...oci.Option) []string {
	t.Helper()
	imgs, err := oci.Images(ocitest.Files(t, dir, build.Options{}), opts...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ti := range imgs {
		d, err := ti.Image.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ti.Tag+" "+d.String())
	}
	return out
}

// TestGolden pins the digests of the default images. When a format writer
// or this package changes the bytes on purpose, rerun with -update and say
// why in the commit.
func TestGolden(t *testing.T) {
	got := strings.Join(digests(t, t.TempDir()), "\n") + "\n"
	header := fmt.Sprintf("# tag manifest-digest of the default images (tinyvm-oci build defaults, version %q)\n# made with %s; gzip bytes may change with the Go version (docs/oci.md)\n", oci.DefaultVersion, runtime.Version())
	if *update {
		if err := os.WriteFile(goldenPath, []byte(header+got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for _, line := range strings.Split(string(mustRead(t, goldenPath)), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	if w := strings.Join(want, "\n") + "\n"; w != got {
		t.Errorf("digests changed (go test ./pkg/oci -run TestGolden -update to accept):\ngot:\n%swant:\n%s", got, w)
	}
}

func TestReproducible(t *testing.T) {
	a, b := digests(t, t.TempDir()), digests(t, t.TempDir())
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Fatalf("two builds differ:\n%v\n%v", a, b)
	}
	later := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	c := digests(t, t.TempDir(), oci.WithCreated(later))
	for i := range a {
		if a[i] == c[i] {
			t.Errorf("WithCreated did not change %s", a[i])
		}
	}
	// The time is the only thing that changed: every header but ModTime
	// and the content are the same.
	dir := t.TempDir()
	files := ocitest.Files(t, dir, build.Options{})
	i1, _ := oci.ContainerDisk(files[0])
	i2, _ := oci.ContainerDisk(files[0], oci.WithCreated(later))
	e1, e2 := readTar(t, i1), readTar(t, i2)
	for i := range e1 {
		if !e2[i].hdr.ModTime.Equal(later) {
			t.Errorf("mtime %v, want %v", e2[i].hdr.ModTime, later)
		}
		e2[i].hdr.ModTime = e1[i].hdr.ModTime
		j1, _ := json.Marshal(e1[i].hdr)
		j2, _ := json.Marshal(e2[i].hdr)
		if !bytes.Equal(j1, j2) || !bytes.Equal(e1[i].data, e2[i].data) {
			t.Errorf("entry %d differs beyond its mtime:\n%s\n%s", i, j1, j2)
		}
	}
}

func TestWriteLayout(t *testing.T) {
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	dir := filepath.Join(t.TempDir(), "dist", "oci")
	for range 2 { // the second write replaces the first
		if err := oci.WriteLayout(dir, files); err != nil {
			t.Fatal(err)
		}
	}
	p, err := layout.FromPath(dir)
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
	want := digests(t, t.TempDir())
	if len(im.Manifests) != len(want) {
		t.Fatalf("%d manifests in index.json, want %d", len(im.Manifests), len(want))
	}
	for i, d := range im.Manifests {
		got := d.Annotations[oci.AnnotationRefName] + " " + d.Digest.String()
		if got != want[i] {
			t.Errorf("index entry %d: %s, want %s", i, got, want[i])
		}
		img, err := p.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: %v", got, err)
		}
	}
	// Extract from the layout gives back every file.
	img, err := p.Image(im.Manifests[len(im.Manifests)-1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	paths, err := oci.Extract(img, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(files) {
		t.Fatalf("extracted %v", paths)
	}
	for i, f := range files {
		if !bytes.Equal(mustRead(t, paths[i]), mustRead(t, f.Path)) {
			t.Errorf("%s differs", paths[i])
		}
	}
}

// TestStreams checks that a 256 MiB raw disk goes into a containerDisk and
// the artifact without being held in memory.
func TestStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 256 MiB")
	}
	files := ocitest.Files(t, t.TempDir(), build.Options{Size: 256 << 20, Formats: []formats.Format{formats.Types[0]}})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cd, err := oci.ContainerDisk(files[0])
	if err != nil {
		t.Fatal(err)
	}
	art, err := oci.Artifact(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []v1.Image{cd, art} {
		ls, _ := img.Layers()
		rc, err := ls[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("allocated %d MiB for a 256 MiB disk: layers must stream", alloc>>20)
	}
}

// TestChanged checks that a file changed after its layer was made fails the
// read instead of uploading bytes that do not match the manifest.
func TestChanged(t *testing.T) {
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	art, err := oci.Artifact(files)
	if err != nil {
		t.Fatal(err)
	}
	cd, err := oci.ContainerDisk(files[0])
	if err != nil {
		t.Fatal(err)
	}
	b := mustRead(t, files[0].Path)
	b[0] ^= 0xff
	if err := os.WriteFile(files[0].Path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, img := range []v1.Image{art, cd} {
		ls, _ := img.Layers()
		rc, err := ls[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err == nil {
			t.Errorf("read of a changed file succeeded")
		}
	}
}
