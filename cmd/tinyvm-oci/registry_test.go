package main

// Tests against the real thing: Debian's docker-registry (the CNCF
// distribution registry) and the clients KubeVirt, CDI and CI jobs use.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/tinyvm-oci/tinyvm-oci/internal/faultproxy"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

const craneHint = "go install github.com/google/go-containerregistry/cmd/crane@v0.22.1"

func init() {
	// Retries in tests wait milliseconds, not seconds.
	retryBackoff = ggcr.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 6}
}

// runTool runs a tool and fails the test with its output on error.
func runTool(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(tool), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRealRegistry(t *testing.T) {
	skopeo := tooltest.Require(t, "skopeo", tooltest.Skopeo)
	umoci := tooltest.Require(t, "umoci", tooltest.Umoci)
	oras := tooltest.Require(t, "oras", tooltest.Oras)
	crane := tooltest.Require(t, "crane", craneHint)
	qemuImg := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})

	first := pushAll(t, reg.Host)
	if again := pushAll(t, reg.Host); strings.Join(again, " ") != strings.Join(first, " ") {
		t.Errorf("same push twice gave different digests:\n%v\n%v", first, again)
	}
	want := wantFiles(t, build.Options{})
	want["512vm.raw"] = want["512-byte-vm.raw"] // the VM artifact's disk

	for _, line := range first {
		ref := line[:strings.Index(line, "@")]
		tag := ref[strings.LastIndex(ref, ":")+1:]

		// crane and ggcr's validate.Image both accept every tag.
		runTool(t, crane, "validate", "--remote", ref)
		manifest := runTool(t, crane, "manifest", line)
		if tag == oci.ArtifactTag && !strings.Contains(manifest, `"artifactType":"`+oci.ArtifactType+`"`) {
			t.Errorf("crane manifest %s: %s", line, manifest)
		}
		r, err := name.ParseReference(line)
		if err != nil {
			t.Fatal(err)
		}
		img, err := ggcr.Image(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("validate.Image(%s): %v", line, err)
		}

		// tinyvm-oci pull gives back the built files.
		dir := t.TempDir()
		code, out, errs := tvo(t, "pull", ref, "-o", dir)
		if code != 0 {
			t.Fatalf("pull %s: %s", ref, errs)
		}
		for _, p := range strings.Fields(out) {
			if b, _ := os.ReadFile(p); !bytes.Equal(b, want[filepath.Base(p)]) {
				t.Errorf("pull %s: %s differs", ref, p)
			}
		}
		if tag == oci.ArtifactTag || tag == oci.VMTag {
			continue // TestRealVMArtifact reads the VM artifact
		}

		// skopeo (containers/image, as CDI and CRI-O use) copies the
		// containerDisk; umoci unpacks it as a runtime would.
		f, err := formats.Lookup(tag)
		if err != nil {
			t.Fatal(err)
		}
		layout := filepath.Join(t.TempDir(), "layout")
		runTool(t, skopeo, "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":"+tag)
		bundle := filepath.Join(t.TempDir(), "bundle")
		args := []string{"unpack", "--image", layout + ":" + tag, bundle}
		if os.Geteuid() != 0 {
			args = append([]string{"unpack", "--rootless"}, args[1:]...)
		}
		runTool(t, umoci, args...)
		disk := filepath.Join(bundle, "rootfs", "disk", f.FileName())
		b, err := os.ReadFile(disk)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want[f.FileName()]) {
			t.Errorf("%s: umoci's %s differs from the built file", ref, disk)
		}
		st, err := os.Stat(disk)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o444 {
			t.Errorf("%s mode %o, want 0444", disk, st.Mode().Perm())
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && (sys.Uid != 107 || sys.Gid != 107) {
			t.Errorf("%s owner %d:%d, want 107:107", disk, sys.Uid, sys.Gid)
		}
		if ents, _ := os.ReadDir(filepath.Join(bundle, "rootfs", "disk")); len(ents) != 1 {
			t.Errorf("rootfs/disk holds %v, KubeVirt wants one file", ents)
		}
		// virt-launcher's own check: qemu-img info must see raw, or
		// qcow2 without a backing file. CDI's importer: qemu-img info
		// detects one of raw, qcow2, vmdk, vdi, vpc, vhdx, and qemu-img
		// convert -O raw gives the disk.
		var info struct {
			Format  string `json:"format"`
			Backing string `json:"backing-filename"`
		}
		js := runTool(t, qemuImg, "info", "--output=json", disk)
		if err := json.Unmarshal([]byte(js), &info); err != nil {
			t.Fatal(err)
		}
		if (f.Type == "raw" || f.Type == "qcow2") && (info.Format != f.Type || info.Backing != "") {
			t.Errorf("qemu-img info %s: format %q backing %q, want %s without backing", disk, info.Format, info.Backing, f.Type)
		}
		if slices.Contains([]string{"raw", "qcow2", "vmdk", "vdi", "vpc", "vhdx"}, f.QemuDriver) && f.Media == formats.MediaDisk {
			if info.Format != f.QemuDriver {
				t.Errorf("qemu-img info %s: format %q, want %s", disk, info.Format, f.QemuDriver)
			}
			conv := filepath.Join(t.TempDir(), "converted.raw")
			runTool(t, qemuImg, "convert", "-O", "raw", disk, conv)
			if b, _ := os.ReadFile(conv); !bytes.Equal(b, want["512-byte-vm.raw"]) {
				t.Errorf("%s: qemu-img convert -O raw of the unpacked disk differs from the raw disk", ref)
			}
		}
	}

	// oras pull unpacks every format into 512-byte-vm/, byte-identical.
	dir := t.TempDir()
	cmd := exec.Command(oras, "pull", "--plain-http", reg.Host+"/512vm:"+oci.ArtifactTag, "-o", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras pull: %v\n%s", err, out)
	}
	delete(want, "512vm.raw")
	for fname, b := range want {
		got, err := os.ReadFile(filepath.Join(dir, oci.ArtifactDir, fname))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("oras pull: %s differs or is missing (%v)", fname, err)
		}
	}
}

// TestRealLayout publishes build's OCI layout with skopeo and checks the
// registry then serves what push --all does: the same digests for the
// artifacts, and for each containerDisk the same layers and a config that
// differs only in its history's created_by ("tinyvm-oci build" against
// "tinyvm-oci push").
func TestRealLayout(t *testing.T) {
	skopeo := tooltest.Require(t, "skopeo", tooltest.Skopeo)
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})
	dist := t.TempDir()
	if code, _, errs := tvo(t, "build", "-o", dist); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	pushed := pushAll(t, reg.Host)
	for _, line := range pushed {
		ref := line[:strings.Index(line, "@")]
		tag := ref[strings.LastIndex(ref, ":")+1:]
		dst := reg.Host + "/fromlayout:" + tag
		// --all: a containerDisk tag is an index, copied with every entry.
		runTool(t, skopeo, "copy", "--all", "--dest-tls-verify=false", "--preserve-digests", "oci:"+filepath.Join(dist, "oci")+":"+tag, "docker://"+dst)
		r, _ := name.ParseReference(dst)
		d, err := ggcr.Head(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := ref + "@" + d.Digest.String(); got == line {
			continue
		}
		if tag == oci.ArtifactTag || tag == oci.VMTag {
			t.Errorf("layout's %s is %s, push --all gave %s", tag, d.Digest, line)
			continue
		}
		sameButCreatedBy(t, tag, r, line)
	}
	// oras copies the artifact out of the layout unchanged.
	oras := tooltest.Require(t, "oras", tooltest.Oras)
	dst := reg.Host + "/orascp:" + oci.ArtifactTag
	runTool(t, oras, "cp", "--from-oci-layout", filepath.Join(dist, "oci")+":"+oci.ArtifactTag, "--to-plain-http", dst)
	r, _ := name.ParseReference(dst)
	d, err := ggcr.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := pushed[slices.Index(allTags(), oci.ArtifactTag)]; !strings.HasSuffix(want, "@"+d.Digest.String()) {
		t.Errorf("oras cp from the layout gave %s, push --all %s", d.Digest, want)
	}
}

func TestRealAuth(t *testing.T) {
	htpasswd := tooltest.Require(t, "htpasswd", "apt-get install apache2-utils")
	const user, password = "tinyvm", "s3cret-Pa55word-never-printed"
	hp := filepath.Join(t.TempDir(), "htpasswd")
	runTool(t, htpasswd, "-Bbc", hp, user, password)
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{Htpasswd: hp})

	// No docker config anywhere the keychain looks.
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	config := func(pass string) {
		dir := t.TempDir()
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		js, _ := json.Marshal(map[string]any{"auths": map[string]any{reg.Host: map[string]string{"auth": auth}}})
		if err := os.WriteFile(filepath.Join(dir, "config.json"), js, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DOCKER_CONFIG", dir)
	}
	noLeak := func(out, errs string) {
		t.Helper()
		if strings.Contains(out+errs, password) || strings.Contains(out+errs, base64.StdEncoding.EncodeToString([]byte(user+":"+password))) {
			t.Errorf("the password appears in the output:\n%s\n%s", out, errs)
		}
	}

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	code, out, errs := tvo(t, "push", reg.Host+"/512vm:raw")
	noLeak(out, errs)
	if code != exitError || !strings.Contains(errs, "unauthorized") || !strings.Contains(errs, "registry "+reg.Host+", repository 512vm") {
		t.Errorf("push without credentials: exit %d: %s", code, errs)
	}
	config("wrong-" + password)
	code, out, errs = tvo(t, "push", reg.Host+"/512vm:raw")
	noLeak(out, errs)
	if code != exitError || !strings.Contains(lastLine(errs), "tinyvm-oci: registry "+reg.Host+", repository 512vm: unauthorized") {
		t.Errorf("push with a wrong password: exit %d: %q", code, errs)
	}
	t.Logf("wrong password: %s", lastLine(errs))

	config(password)
	code, out, errs = tvo(t, "push", "--all", reg.Host+"/512vm")
	noLeak(out, errs)
	if code != 0 {
		t.Fatalf("push with credentials: exit %d: %s", code, errs)
	}
	code, out, errs = tvo(t, "pull", reg.Host+"/512vm:disks", "-o", t.TempDir())
	noLeak(out, errs)
	if code != 0 {
		t.Fatalf("pull with credentials: exit %d: %s", code, errs)
	}
}

func TestRealFaults(t *testing.T) {
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})
	// Half of the kinds of request fail once each, with 500, 429 or a
	// connection reset in turn.
	proxy := faultproxy.New(t, reg.Host, faultproxy.Options{Share: 0.5, Max: -1, Once: true, Faults: []faultproxy.Fault{faultproxy.Status500, faultproxy.Status429, faultproxy.Reset}})
	lines := pushAll(t, proxy.Host)
	// Three failures or more: each of 500, 429 and reset happened.
	if n, failed := proxy.Counts(); failed < 3 {
		t.Fatalf("the proxy failed none of %d requests", n)
	} else {
		t.Logf("push --all succeeded through %d injected faults in %d requests", failed, n)
	}
	direct := pushAll(t, reg.Host)
	for i := range lines {
		if strings.Replace(lines[i], proxy.Host, reg.Host, 1) != direct[i] {
			t.Errorf("through the proxy %s, direct %s", lines[i], direct[i])
		}
	}

	// Blob uploads that always fail: non-zero exit, a clear error, and no
	// tag in the repository.
	for _, f := range []faultproxy.Fault{faultproxy.Status500, faultproxy.Status429, faultproxy.Reset} {
		uploads := func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/uploads/") }
		bad := faultproxy.New(t, reg.Host, faultproxy.Options{Share: 1, Max: -1, Match: uploads, Faults: []faultproxy.Fault{f}})
		code, _, errs := tvo(t, "push", "--all", bad.Host+"/broken")
		if code != exitError || !strings.HasPrefix(lastLine(errs), "tinyvm-oci: registry "+bad.Host+", repository broken: ") {
			t.Errorf("fault %d forever: exit %d: %q", f, code, errs)
		}
		t.Logf("fault %d forever: %s", f, lastLine(errs))
		if strings.Contains(errs, "_state") || strings.Contains(errs, "?") && !strings.Contains(errs, "?REDACTED") {
			t.Errorf("fault %d: an upload URL's query is not redacted: %q", f, errs)
		}
		repo, _ := name.NewRepository(reg.Host + "/broken")
		tags, err := ggcr.List(repo)
		var te *transport.Error
		if err != nil && !(errors.As(err, &te) && te.StatusCode == http.StatusNotFound) {
			t.Fatalf("list tags: %v", err)
		}
		if len(tags) > 0 {
			t.Errorf("fault %d: tags %v written after a failed push", f, tags)
		}
	}
}

// TestRealPatchResetRedacted: docker-registry's upload locations carry
// the session state in the query (_state=...); a reset while the blob's
// bytes go up (the upload's PUT) must not print it.
func TestRealPatchResetRedacted(t *testing.T) {
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})
	bad := faultproxy.New(t, reg.Host, faultproxy.Options{Share: 1, Max: -1, Match: uploadData, Faults: []faultproxy.Fault{faultproxy.Reset}})
	code, _, errs := tvo(t, "push", bad.Host+"/broken:raw")
	if code != exitError || !strings.Contains(lastLine(errs), "?REDACTED") {
		t.Errorf("exit %d, %q: want a failure naming the redacted upload URL", code, errs)
	}
	if strings.Contains(errs, "_state") {
		t.Errorf("the upload state is printed: %q", errs)
	}
	t.Logf("%s", lastLine(errs))
}

// TestRealInterruptedPull cuts every blob download: pull fails and leaves
// nothing, not even a partial file.
func TestRealInterruptedPull(t *testing.T) {
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})
	pushAll(t, reg.Host)
	blobs := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
	}
	cut := faultproxy.New(t, reg.Host, faultproxy.Options{Share: 1, Max: -1, Match: blobs, Faults: []faultproxy.Fault{faultproxy.Reset}})
	for _, tag := range []string{formats.Types[0].Type, oci.ArtifactTag} {
		dir := t.TempDir()
		code, out, errs := tvo(t, "pull", cut.Host+"/512vm:"+tag, "-o", dir)
		if code != exitError || out != "" || !strings.Contains(errs, "unreachable") {
			t.Errorf("pull %s with every download cut: exit %d, %q, %q", tag, code, out, errs)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("pull %s left %v", tag, ents)
		}
	}
}

// lastLine is the last line of s: the CLI's one-line error.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// sameButCreatedBy checks that the containerDisks a and b have the same
// layers and configs that differ only in created_by, which names build
// for a and push for b.
func sameButCreatedBy(t *testing.T, tag string, a name.Reference, b string) {
	t.Helper()
	rb, err := name.ParseReference(b)
	if err != nil {
		t.Fatal(err)
	}
	var cfgs [2]*v1.ConfigFile
	var layers [2][]v1.Descriptor
	for i, r := range []name.Reference{a, rb} {
		img, err := ggcr.Image(r)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		layers[i] = m.Layers
		if cfgs[i], err = img.ConfigFile(); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(layers[0]) != fmt.Sprint(layers[1]) {
		t.Errorf("%s: layout layers %v, push's %v", tag, layers[0], layers[1])
	}
	hb, hp := cfgs[0].History[0].CreatedBy, cfgs[1].History[0].CreatedBy
	if hb != "tinyvm-oci build --format "+tag || hp != "tinyvm-oci push --format "+tag {
		t.Errorf("%s: created_by %q (layout) and %q (push)", tag, hb, hp)
	}
	cfgs[0].History[0].CreatedBy = hp
	if ja, jb := mustJSON(t, cfgs[0]), mustJSON(t, cfgs[1]); ja != jb {
		t.Errorf("%s: configs differ beyond created_by:\n%s\n%s", tag, ja, jb)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
