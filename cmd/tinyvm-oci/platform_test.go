package main

// Multi-arch containerDisks against the real thing: each tag push --all
// writes is an image index, and crane, skopeo (containers/image, as CDI
// and CRI-O use), umoci and containerd's ctr (as the kubelet's runtime
// pulls) each pick the entry for the platform they are asked for.

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

// indexJSON is an image index as the registry serves it.
type indexJSON struct {
	MediaType string `json:"mediaType"`
	Manifests []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Platform  struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		} `json:"platform"`
	} `json:"manifests"`
}

// indexEntries reads the index ref names with crane and returns each
// architecture's manifest digest, failing unless it lists exactly
// linux/amd64 and linux/arm64/v8.
func indexEntries(t *testing.T, crane, ref string) map[string]string {
	t.Helper()
	var ix indexJSON
	if err := json.Unmarshal([]byte(runTool(t, crane, "manifest", ref)), &ix); err != nil {
		t.Fatal(err)
	}
	if ix.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("%s: media type %q, want an OCI image index", ref, ix.MediaType)
	}
	got := map[string]string{}
	var platforms []string
	for _, m := range ix.Manifests {
		p := m.Platform.OS + "/" + m.Platform.Architecture
		if m.Platform.Variant != "" {
			p += "/" + m.Platform.Variant
		}
		platforms = append(platforms, p)
		got[m.Platform.Architecture] = m.Digest
	}
	if strings.Join(platforms, ",") != "linux/amd64,linux/arm64/v8" {
		t.Fatalf("%s: platforms %v, want linux/amd64 and linux/arm64/v8", ref, platforms)
	}
	return got
}

// configJSON is the part of an image config the platform checks read.
type configJSON struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
}

func TestRealPlatforms(t *testing.T) {
	skopeo := tooltest.Require(t, "skopeo", tooltest.Skopeo)
	umoci := tooltest.Require(t, "umoci", tooltest.Umoci)
	crane := tooltest.Require(t, "crane", craneHint)
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})
	want := wantFiles(t, build.Options{})

	for _, line := range pushAll(t, reg.Host) {
		ref := line[:strings.Index(line, "@")]
		tag := ref[strings.LastIndex(ref, ":")+1:]
		if tag == oci.ArtifactTag {
			// The artifact stays a single manifest: oras reads it.
			if m := runTool(t, crane, "manifest", ref); !strings.Contains(m, `"mediaType":"application/vnd.oci.image.manifest.v1+json"`) {
				t.Errorf("%s is not an image manifest: %s", ref, m)
			}
			continue
		}
		f, err := formats.Lookup(tag)
		if err != nil {
			continue // the VM artifact: TestRealVMArtifact reads its entries
		}
		digests := indexEntries(t, crane, line)
		for _, arch := range oci.Architectures {
			platforms := []string{"linux/" + arch}
			if arch == "arm64" {
				platforms = append(platforms, "linux/arm64/v8")
			}
			// crane: the manifest and config of the entry asked for.
			for _, p := range platforms {
				if d := strings.TrimSpace(runTool(t, crane, "digest", "--platform", p, ref)); d != digests[arch] {
					t.Errorf("crane digest --platform %s %s = %s, want the index's %s entry %s", p, ref, d, arch, digests[arch])
				}
				var cfg configJSON
				if err := json.Unmarshal([]byte(runTool(t, crane, "config", "--platform", p, ref)), &cfg); err != nil {
					t.Fatal(err)
				}
				if cfg.OS != "linux" || cfg.Architecture != arch {
					t.Errorf("crane config --platform %s %s: %+v", p, ref, cfg)
				}
			}

			// skopeo: inspect reads the config of the entry for
			// --override-arch; copy takes that entry alone.
			var info struct{ Architecture, Os string }
			js := runTool(t, skopeo, "inspect", "--tls-verify=false", "--override-arch", arch, "docker://"+ref)
			if err := json.Unmarshal([]byte(js), &info); err != nil {
				t.Fatal(err)
			}
			if info.Architecture != arch || info.Os != "linux" {
				t.Errorf("skopeo inspect --override-arch %s %s: %s/%s", arch, ref, info.Os, info.Architecture)
			}
			var cfg configJSON
			js = runTool(t, skopeo, "inspect", "--config", "--tls-verify=false", "--override-arch", arch, "docker://"+ref)
			if err := json.Unmarshal([]byte(js), &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Architecture != arch {
				t.Errorf("skopeo inspect --config --override-arch %s %s: architecture %q", arch, ref, cfg.Architecture)
			}
			layout := filepath.Join(t.TempDir(), "layout")
			runTool(t, skopeo, "copy", "--src-tls-verify=false", "--override-arch", arch, "docker://"+ref, "oci:"+layout+":"+tag)
			var copied struct {
				Manifests []struct{ Digest string } `json:"manifests"`
			}
			if b, err := os.ReadFile(filepath.Join(layout, "index.json")); err != nil || json.Unmarshal(b, &copied) != nil || len(copied.Manifests) != 1 || copied.Manifests[0].Digest != digests[arch] {
				t.Errorf("skopeo copy --override-arch %s %s did not copy the %s entry %s: %+v, %v", arch, ref, arch, digests[arch], copied, err)
			}
			// umoci unpacks the entry as a runtime would.
			bundle := filepath.Join(t.TempDir(), "bundle")
			args := []string{"unpack", "--image", layout + ":" + tag, bundle}
			if os.Geteuid() != 0 {
				args = append([]string{"unpack", "--rootless"}, args[1:]...)
			}
			runTool(t, umoci, args...)
			b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "disk", f.FileName()))
			if err != nil || !bytes.Equal(b, want[f.FileName()]) {
				t.Errorf("%s for %s: umoci's disk/%s differs from the built file (%v)", ref, arch, f.FileName(), err)
			}
		}
		// No fallback: a platform the index lacks is refused.
		out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "--override-arch", "s390x", "docker://"+ref).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "s390x") {
			t.Errorf("skopeo inspect --override-arch s390x %s: %v\n%s", ref, err, out)
		}
	}
}

// TestRealContainerd pulls the containerDisks with containerd's ctr for
// linux/arm64, as an arm64 node's kubelet would: ctr fetches the arm64
// entry alone, and its unpacked layer holds the disk.
func TestRealContainerd(t *testing.T) {
	crane := tooltest.Require(t, "crane", craneHint)
	ctd := ocitest.StartContainerd(t)
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})
	want := wantFiles(t, build.Options{})
	snapshots := filepath.Join(ctd.Root, "io.containerd.snapshotter.v1.native", "snapshots")

	for _, line := range pushAll(t, reg.Host) {
		ref := line[:strings.Index(line, "@")]
		f, err := formats.Lookup(ref[strings.LastIndex(ref, ":")+1:])
		if err != nil {
			continue // the artifacts
		}
		digests := indexEntries(t, crane, line)
		pull := func(p string) {
			t.Helper()
			if out, err := ctd.Ctr("images", "pull", "--plain-http", "--platform", p, "--snapshotter", "native", ref); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		pull("linux/arm64")
		// ctr fetched the arm64 entry alone, not the amd64 one.
		if out, err := ctd.Ctr("content", "get", digests["amd64"]); err == nil {
			t.Errorf("%s: pulling linux/arm64 also fetched the amd64 entry %s:\n%s", ref, digests["amd64"], out)
		}
		// Pulled by tag, the image is the index push printed, for both
		// platforms once the amd64 entry is there too.
		pull("linux/amd64")
		out, err := ctd.Ctr("images", "ls")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !containsLine(out, ref, line[strings.Index(line, "@")+1:], "linux/amd64,linux/arm64/v8") {
			t.Errorf("ctr images ls does not list %s with platforms linux/amd64,linux/arm64/v8:\n%s", line, out)
		}
		// The arm64 entry's config, from containerd's content store.
		var m struct{ Config struct{ Digest string } }
		js, err := ctd.Ctr("content", "get", digests["arm64"])
		if err != nil || json.Unmarshal([]byte(js), &m) != nil {
			t.Fatalf("ctr content get %s (the arm64 entry): %v\n%s", digests["arm64"], err, js)
		}
		var cfg configJSON
		js, err = ctd.Ctr("content", "get", m.Config.Digest)
		if err != nil || json.Unmarshal([]byte(js), &cfg) != nil || cfg.Architecture != "arm64" || cfg.Variant != "v8" {
			t.Errorf("%s: the arm64 entry's config in containerd: %+v, %v", ref, cfg, err)
		}
		// The native snapshotter unpacked the layer: the disk is there,
		// byte for byte.
		found, _ := filepath.Glob(filepath.Join(snapshots, "*", "disk", f.FileName()))
		if len(found) != 1 {
			t.Fatalf("%s: unpacked disk/%s in %v, want one", ref, f.FileName(), found)
		}
		if b, err := os.ReadFile(found[0]); err != nil || !bytes.Equal(b, want[f.FileName()]) {
			t.Errorf("%s: containerd's unpacked %s differs from the built file (%v)", ref, found[0], err)
		}
	}
	// A platform the index lacks fails the pull.
	ref := reg.Host + "/512vm:" + formats.Types[0].Type
	if out, err := ctd.Ctr("images", "pull", "--plain-http", "--platform", "linux/s390x", "--snapshotter", "native", ref); err == nil || !strings.Contains(out, "no match for platform") {
		t.Errorf("ctr pull --platform linux/s390x %s: %v\n%s", ref, err, out)
	}
}

// containsLine reports whether one line of out holds every field.
func containsLine(out string, fields ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		all := true
		for _, f := range fields {
			all = all && strings.Contains(l, f)
		}
		if all {
			return true
		}
	}
	return false
}
