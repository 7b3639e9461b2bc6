package oci_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/compress/zstd"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

const vmGoldenPath = "../../testdata/oci-vm-digests.txt"

func exportedVM(arch string) (*kubevirtv1.VirtualMachine, error) {
	return kubevirt.ExportedVM(kubevirt.Options{}, "512vm", arch)
}

func rawFile(t *testing.T, o build.Options) oci.File {
	t.Helper()
	raw, _ := formats.Lookup("raw")
	o.Formats = []formats.Format{raw}
	return ocitest.Files(t, t.TempDir(), o)[0]
}

// TestVirtualMachine reads the VM artifact's JSON field by field, as
// KubeVirt's hack/oci-import.sh does with jq.
func TestVirtualMachine(t *testing.T) {
	raw := rawFile(t, build.Options{})
	idx, err := oci.VirtualMachine(raw, exportedVM)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("validate.Index: %v", err)
	}
	rawIdx, _ := idx.RawManifest()
	var im struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		ArtifactType  string `json:"artifactType"`
		Manifests     []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
			Size      int64  `json:"size"`
			Platform  struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(rawIdx, &im); err != nil {
		t.Fatal(err)
	}
	if im.SchemaVersion != 2 || im.MediaType != "application/vnd.oci.image.index.v1+json" || im.ArtifactType != "application/vnd.kubevirt.virtualmachine.v1" {
		t.Errorf("index %s", rawIdx)
	}
	if im.Annotations["org.opencontainers.image.created"] != "2024-01-01T00:00:00Z" {
		t.Errorf("index annotations %v", im.Annotations)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d manifests, want amd64 and arm64", len(im.Manifests))
	}
	want := mustRead(t, raw.Path)
	layerDigest := ""
	for i, arch := range []string{"amd64", "arm64"} {
		d := im.Manifests[i]
		if d.MediaType != "application/vnd.oci.image.manifest.v1+json" || d.Platform.OS != "linux" || d.Platform.Architecture != arch {
			t.Errorf("manifest %d: %+v", i, d)
		}
		h, _ := v1.NewHash(d.Digest)
		img, err := idx.Image(h)
		if err != nil {
			t.Fatal(err)
		}
		rm, _ := img.RawManifest()
		var m struct {
			MediaType    string `json:"mediaType"`
			ArtifactType string `json:"artifactType"`
			Config       struct {
				MediaType string `json:"mediaType"`
				Digest    string `json:"digest"`
			} `json:"config"`
			Layers []struct {
				MediaType   string            `json:"mediaType"`
				Digest      string            `json:"digest"`
				Size        int64             `json:"size"`
				Annotations map[string]string `json:"annotations"`
			} `json:"layers"`
			Annotations map[string]string `json:"annotations"`
		}
		if err := json.Unmarshal(rm, &m); err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != "application/vnd.kubevirt.virtualmachine.v1" || m.Config.MediaType != "application/vnd.kubevirt.virtualmachine.config.v1+json" || len(m.Layers) != 1 || m.Annotations != nil {
			t.Fatalf("manifest %s", rm)
		}
		l := m.Layers[0]
		wantAnn := map[string]string{"io.kubevirt.disk.name": "512vm", "io.kubevirt.disk.size": "1Mi", "org.opencontainers.image.title": "512vm.raw.zst"}
		if l.MediaType != "application/vnd.kubevirt.disk.raw+zstd" || fmt.Sprint(l.Annotations) != fmt.Sprint(wantAnn) {
			t.Errorf("layer %+v", l)
		}
		if layerDigest != "" && l.Digest != layerDigest {
			t.Errorf("%s layer %s, amd64 layer %s: want one blob", arch, l.Digest, layerDigest)
		}
		layerDigest = l.Digest

		// The config is the VirtualMachine, strictly, for this
		// architecture, its one volume the PVC the layer names.
		cfg, _ := img.RawConfigFile()
		obj, err := kubevirt.Decode(cfg)
		if err != nil {
			t.Fatalf("config does not decode strictly: %v\n%s", err, cfg)
		}
		vm, ok := obj.(*kubevirtv1.VirtualMachine)
		if !ok {
			t.Fatalf("config is a %T", obj)
		}
		spec := vm.Spec.Template.Spec
		if spec.Architecture != arch || spec.Volumes[0].PersistentVolumeClaim.ClaimName != l.Annotations["io.kubevirt.disk.name"] || vm.Namespace != "" {
			t.Errorf("%s config: architecture %q, volumes %+v", arch, spec.Architecture, spec.Volumes)
		}
		if (arch == "arm64") != (spec.Domain.Firmware.Bootloader.EFI != nil) {
			t.Errorf("%s bootloader %+v", arch, spec.Domain.Firmware.Bootloader)
		}

		// The layer is the raw disk, zstd-compressed: frames with
		// their sizes in the headers (zzstd's tests add them up).
		lh, _ := v1.NewHash(l.Digest)
		layer, err := img.LayerByDigest(lh)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		blob, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || int64(len(blob)) != l.Size {
			t.Fatalf("layer blob: %d bytes, %v; manifest says %d", len(blob), err, l.Size)
		}
		var hdr zstd.Header
		if err := hdr.Decode(blob); err != nil || !hdr.HasFCS || hdr.FrameContentSize == 0 || hdr.FrameContentSize > uint64(len(want)) {
			t.Errorf("zstd frame header %+v, %v: want a content size of at most %d", hdr, err, len(want))
		}
		zr, _ := zstd.NewReader(nil)
		got, err := zr.DecodeAll(blob, nil)
		zr.Close()
		if err != nil || string(got) != string(want) {
			t.Errorf("%s layer does not decompress to the raw disk: %v", arch, err)
		}
	}
	again, err := oci.VirtualMachine(raw, exportedVM)
	if err != nil {
		t.Fatal(err)
	}
	if d1, d2 := digestOf(t, idx), digestOf(t, again); d1 != d2 {
		t.Errorf("same inputs, digests %s and %s", d1, d2)
	}
}

func digestOf(t *testing.T, x oci.Taggable) string {
	t.Helper()
	d, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestVirtualMachineArchitectures(t *testing.T) {
	raw := rawFile(t, build.Options{})
	idx, err := oci.VirtualMachine(raw, exportedVM, oci.WithVMArchitectures("amd64"))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 1 || m.Manifests[0].Platform.Architecture != "amd64" {
		t.Errorf("manifests %+v", m.Manifests)
	}
	if _, err := oci.VirtualMachine(raw, exportedVM, oci.WithVMArchitectures()); err == nil {
		t.Error("no architectures accepted")
	}
	for _, archs := range [][]string{{}, {"amd64", "amd64"}, {"s390x"}} {
		if _, err := oci.VirtualMachine(raw, exportedVM, oci.WithVMArchitectures(archs...)); err == nil {
			t.Errorf("architectures %q accepted", archs)
		} else {
			t.Logf("%q: %v", archs, err)
		}
	}
}

func TestVirtualMachineRefuses(t *testing.T) {
	raw := rawFile(t, build.Options{})
	qcow2, _ := formats.Lookup("qcow2")
	containerDiskVM := func(string) (*kubevirtv1.VirtualMachine, error) {
		obj, err := kubevirt.Object(kubevirt.Options{Image: "example.com/512vm:raw"})
		if err != nil {
			return nil, err
		}
		return obj.(*kubevirtv1.VirtualMachine), nil
	}
	for _, tc := range []struct {
		name string
		f    oci.File
		vm   oci.VMFunc
	}{
		{"not raw", oci.File{Path: raw.Path, Format: qcow2}, exportedVM},
		{"no vm", raw, nil},
		{"containerDisk volume", raw, containerDiskVM},
		{"nil vm", raw, func(string) (*kubevirtv1.VirtualMachine, error) { return nil, nil }},
	} {
		_, err := oci.VirtualMachine(tc.f, tc.vm)
		if !errors.Is(err, oci.ErrVM) {
			t.Errorf("%s: %v, want ErrVM", tc.name, err)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

// TestVMGolden pins the VM artifact's digest for the default raw disk.
// Its bytes follow from klauspost/compress's zstd (go.mod) and
// encoding/json, not from the Go version's gzip.
func TestVMGolden(t *testing.T) {
	raw := rawFile(t, build.Options{})
	idx, err := oci.VirtualMachine(raw, exportedVM)
	if err != nil {
		t.Fatal(err)
	}
	got := oci.VMTag + " " + digestOf(t, idx) + "\n"
	if *update {
		header := fmt.Sprintf("# tag index-digest of KubeVirt's VM artifact of the default raw disk (oci.VirtualMachine, kubevirt.ExportedVM)\n# made with %s\n", runtime.Version())
		if err := os.WriteFile(vmGoldenPath, []byte(header+got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for _, line := range strings.Split(string(mustRead(t, vmGoldenPath)), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	if w := strings.Join(want, "\n") + "\n"; w != got {
		t.Errorf("VM artifact digest changed (go test ./pkg/oci -run TestVMGolden -update to accept):\ngot:  %swant: %s", got, w)
	}
}

// TestVirtualMachineExtract: Extract (tinyvm-oci pull REF:vm) gives back
// the raw disk, decompressed, and stops a disk over the size limit.
func TestVirtualMachineExtract(t *testing.T) {
	raw := rawFile(t, build.Options{})
	idx, err := oci.VirtualMachine(raw, exportedVM)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	paths, err := oci.Extract(img, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || filepath.Base(paths[0]) != "512vm.raw" || !bytes.Equal(mustRead(t, paths[0]), mustRead(t, raw.Path)) {
		t.Errorf("extracted %v, want 512vm.raw, the raw disk", paths)
	}
	// The 1 MiB disk is a few hundred bytes of zstd: the limit applies to
	// what it decompresses to.
	out = t.TempDir()
	if _, err := oci.Extract(img, out, oci.WithMaxSize(64<<10)); !errors.Is(err, oci.ErrTooLarge) {
		t.Errorf("Extract with a 64 KiB limit: %v, want ErrTooLarge", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}
