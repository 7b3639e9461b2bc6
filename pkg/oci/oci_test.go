package oci_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
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

// variant is what each entry's platform and config must say: ARMv8 for
// arm64, so that every client's platform matching finds it.
var variant = map[string]string{"amd64": "", "arm64": "v8"}

func TestContainerDisk(t *testing.T) {
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	for _, f := range files {
		t.Run(f.Format.Type, func(t *testing.T) {
			idx, err := oci.ContainerDisk(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(idx); err != nil {
				t.Fatalf("validate.Index: %v", err)
			}
			want := map[string]string{
				oci.AnnotationTitle:    "512-byte-vm " + f.Format.Type,
				oci.AnnotationSource:   oci.DefaultSource,
				oci.AnnotationVersion:  oci.DefaultVersion,
				oci.AnnotationLicenses: oci.DefaultLicenses,
				oci.AnnotationCreated:  "2024-01-01T00:00:00Z",
				oci.AnnotationFormat:   f.Format.Type,
			}
			ix := rawIndex(t, idx)
			if ix.SchemaVersion != 2 || ix.MediaType != "application/vnd.oci.image.index.v1+json" {
				t.Errorf("index schemaVersion %d mediaType %q", ix.SchemaVersion, ix.MediaType)
			}
			for k, v := range want {
				if ix.Annotations[k] != v {
					t.Errorf("index annotation %s = %q, want %q", k, ix.Annotations[k], v)
				}
			}
			if len(ix.Manifests) != 2 {
				t.Fatalf("%d index entries, want linux/amd64 and linux/arm64", len(ix.Manifests))
			}
			var layers []v1.Hash
			var configs [][]byte
			for i, arch := range []string{"amd64", "arm64"} {
				d := ix.Manifests[i]
				if d.MediaType != "application/vnd.oci.image.manifest.v1+json" || d.Platform.OS != "linux" || d.Platform.Architecture != arch || d.Platform.Variant != variant[arch] {
					t.Errorf("entry %d: %+v, want an image manifest for linux/%s variant %q", i, d, arch, variant[arch])
				}
				h, err := v1.NewHash(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				img, err := idx.Image(h)
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := img.Digest(); got != h {
					t.Errorf("entry %d digest %s, image %s", i, h, got)
				}
				checkDiskImage(t, f, img, arch, variant[arch], want)
				m, _ := img.Manifest()
				layers = append(layers, m.Layers[0].Digest)
				cfg, _ := img.RawConfigFile()
				configs = append(configs, cfg)
			}
			if layers[0] != layers[1] {
				t.Errorf("the entries have different layers %s and %s: the disk is universal", layers[0], layers[1])
			}
			// The configs differ in their architecture and variant and
			// nothing else.
			var c0, c1 map[string]any
			if err := errors.Join(json.Unmarshal(configs[0], &c0), json.Unmarshal(configs[1], &c1)); err != nil {
				t.Fatal(err)
			}
			for _, c := range []map[string]any{c0, c1} {
				delete(c, "architecture")
				delete(c, "variant")
			}
			if !equalJSON(t, c0, c1) {
				t.Errorf("configs differ beyond the architecture:\n%s\n%s", configs[0], configs[1])
			}
		})
	}
}

// checkDiskImage checks one index entry: an OCI image for linux/arch whose
// one layer holds disk/ and f's bytes, owned by the qemu user.
func checkDiskImage(t *testing.T, f oci.File, img v1.Image, arch, variant string, want map[string]string) {
	t.Helper()
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
	// The index has the full set of annotations; an entry's manifest names
	// its format only, and its config has them all as labels.
	if len(m.Annotations) != 1 || m.Annotations[oci.AnnotationFormat] != f.Format.Type {
		t.Errorf("entry annotations %v, want only %s=%s", m.Annotations, oci.AnnotationFormat, f.Format.Type)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != arch || cfg.Variant != variant || !cfg.Created.Time.Equal(formats.DefaultTime) {
		t.Errorf("config os %q arch %q variant %q created %v, want linux/%s variant %q", cfg.OS, cfg.Architecture, cfg.Variant, cfg.Created, arch, variant)
	}
	for k, v := range want {
		if cfg.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Config.Labels[k], v)
		}
	}
	if !strings.Contains(cfg.Config.Labels[oci.AnnotationDescription], "containerDisk") {
		t.Errorf("description label %q", cfg.Config.Labels[oci.AnnotationDescription])
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
}

// specIndex is an image index as the spec and other clients read it, not
// through ggcr's types.
type specIndex struct {
	SchemaVersion int    `json:"schemaVersion"`
	MediaType     string `json:"mediaType"`
	Manifests     []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
		Platform  struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		} `json:"platform"`
	} `json:"manifests"`
	Annotations map[string]string `json:"annotations"`
}

func rawIndex(t *testing.T, idx v1.ImageIndex) specIndex {
	t.Helper()
	raw, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	var ix specIndex
	if err := json.Unmarshal(raw, &ix); err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); d != digestBytes(raw) {
		t.Errorf("index digest %s is not the digest of its bytes", d)
	}
	return ix
}

func digestBytes(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

// platformImage is idx's entry for linux/arch.
func platformImage(t *testing.T, idx v1.ImageIndex, arch string) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no linux/%s entry in %+v", arch, im.Manifests)
	return nil
}

func TestArchitectures(t *testing.T) {
	f := ocitest.Files(t, t.TempDir(), build.Options{Formats: []formats.Format{formats.Types[0]}})[0]
	all, err := oci.ContainerDisk(f)
	if err != nil {
		t.Fatal(err)
	}
	// Order and case do not matter: the same set is the same index.
	same, err := oci.ContainerDisk(f, oci.WithArchitectures("ARM64", " amd64"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := rawIndex(t, all), rawIndex(t, same); !equalJSON(t, a, b) {
		t.Errorf("arm64,amd64 gave a different index from the default")
	}
	for _, arch := range oci.Architectures {
		one, err := oci.ContainerDisk(f, oci.WithArchitectures(arch))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(one); err != nil {
			t.Fatal(err)
		}
		ix := rawIndex(t, one)
		if len(ix.Manifests) != 1 || ix.Manifests[0].Platform.Architecture != arch {
			t.Fatalf("WithArchitectures(%s): %+v", arch, ix.Manifests)
		}
		// The entry is the same image as in the full index.
		d1, _ := platformImage(t, one, arch).Digest()
		d2, _ := platformImage(t, all, arch).Digest()
		if d1 != d2 {
			t.Errorf("%s entry alone %s, in the full index %s", arch, d1, d2)
		}
		if d, _ := one.Digest(); d == mustDigest(t, all) {
			t.Errorf("a one-entry index has the digest of the two-entry one")
		}
	}
	for _, c := range []struct {
		archs []string
		text  string
	}{
		{[]string{"s390x"}, `oci: bad architecture "s390x": use amd64, arm64`},
		{[]string{"amd64", "AMD64"}, "oci: bad architecture: amd64 given twice"},
		{nil, "oci: bad architecture: none given: use amd64, arm64"},
		{[]string{"linux/arm64"}, `"linux/arm64"`},
	} {
		_, err := oci.ContainerDisk(f, oci.WithArchitectures(c.archs...))
		if !errors.Is(err, oci.ErrArchitecture) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("WithArchitectures(%q): error %v, want ErrArchitecture containing %q", c.archs, err, c.text)
		}
	}
	// Images and WriteLayout pass the option on.
	imgs, err := oci.Images([]oci.File{f}, oci.WithArchitectures("amd64"))
	if err != nil {
		t.Fatal(err)
	}
	if ix := rawIndex(t, imgs[0].Image.(v1.ImageIndex)); len(ix.Manifests) != 1 {
		t.Errorf("Images with amd64 only: %d entries", len(ix.Manifests))
	}
	if _, err := oci.Images([]oci.File{f}, oci.WithArchitectures("riscv64")); !errors.Is(err, oci.ErrArchitecture) {
		t.Errorf("Images with riscv64: %v", err)
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func mustDigest(t *testing.T, x oci.Taggable) v1.Hash {
	t.Helper()
	d, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
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

// digests returns a "tag digest" line for each of the default images built
// in dir and, after a containerDisk's index, a "tag os/arch digest" line
// for each of its entries.
func digests(t *testing.T, dir string, opts ...oci.Option) []string {
	t.Helper()
	imgs, err := oci.Images(ocitest.Files(t, dir, build.Options{}), opts...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ti := range imgs {
		out = append(out, ti.Tag+" "+mustDigest(t, ti.Image).String())
		idx, ok := ti.Image.(v1.ImageIndex)
		if !ok {
			continue
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range im.Manifests {
			out = append(out, ti.Tag+" "+d.Platform.String()+" "+d.Digest.String())
		}
	}
	return out
}

// tagDigests keeps the "tag digest" lines of digests: what index.json
// and a push list.
func tagDigests(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.Count(l, " ") == 1 {
			out = append(out, l)
		}
	}
	return out
}

// TestGolden pins the digests of the default images. When a format writer
// or this package changes the bytes on purpose, rerun with -update and say
// why in the commit.
func TestGolden(t *testing.T) {
	got := strings.Join(digests(t, t.TempDir()), "\n") + "\n"
	header := fmt.Sprintf("# tag manifest-digest of the default images (tinyvm-oci build defaults, version %q);\n# each containerDisk tag is an image index, followed by its entries as tag os/arch[/variant] manifest-digest\n# made with %s; gzip bytes may change with the Go version (docs/oci.md)\n", oci.DefaultVersion, runtime.Version())
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
	x1, _ := oci.ContainerDisk(files[0])
	x2, _ := oci.ContainerDisk(files[0], oci.WithCreated(later))
	e1, e2 := readTar(t, platformImage(t, x1, "arm64")), readTar(t, platformImage(t, x2, "arm64"))
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
	want := tagDigests(digests(t, t.TempDir()))
	if len(im.Manifests) != len(want) {
		t.Fatalf("%d manifests in index.json, want %d", len(im.Manifests), len(want))
	}
	for i, d := range im.Manifests {
		got := d.Annotations[oci.AnnotationRefName] + " " + d.Digest.String()
		if got != want[i] {
			t.Errorf("index entry %d: %s, want %s", i, got, want[i])
		}
		// Every containerDisk is an index, read back from the layout's
		// blobs with both its entries; the artifact is an image.
		if d.Annotations[oci.AnnotationRefName] == oci.ArtifactTag {
			if d.MediaType != types.OCIManifestSchema1 {
				t.Errorf("%s: media type %s", got, d.MediaType)
			}
			img, err := p.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(img); err != nil {
				t.Errorf("%s: %v", got, err)
			}
			continue
		}
		if d.MediaType != types.OCIImageIndex {
			t.Errorf("%s: media type %s, want an image index", got, d.MediaType)
		}
		idx, err := ii.ImageIndex(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(idx); err != nil {
			t.Errorf("%s: %v", got, err)
		}
		for _, arch := range oci.Architectures {
			if cfg, err := platformImage(t, idx, arch).ConfigFile(); err != nil || cfg.Architecture != arch {
				t.Errorf("%s: the layout's %s entry has config %+v, %v", got, arch, cfg, err)
			}
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
	for _, img := range []v1.Image{platformImage(t, cd, "amd64"), art} {
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
	for _, img := range []v1.Image{art, platformImage(t, cd, "arm64")} {
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
