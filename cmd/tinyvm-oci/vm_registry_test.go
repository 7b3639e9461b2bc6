package main

// KubeVirt's VM artifact and the compressed disks artifact against the
// real thing: Debian's docker-registry, skopeo, oras, crane, jq and zstd.

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

// readerScript reads the VM artifact as KubeVirt's hack/oci-import.sh
// does, with skopeo, jq and zstd.
const readerScript = "../../testdata/kubevirt-vm-read.sh"

// checkVMRead checks what the reader script wrote to out: the raw disk,
// byte-identical, named after the PVC, and a config that decodes
// strictly into a VirtualMachine for arch whose volume is that PVC.
func checkVMRead(t *testing.T, out, arch string, raw []byte) {
	t.Helper()
	disks, err := os.ReadFile(filepath.Join(out, "disks.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(disks) != "512vm 1Mi\n" {
		t.Errorf("disk layers %q, want \"512vm 1Mi\"", disks)
	}
	if got, err := os.ReadFile(filepath.Join(out, "512vm.raw")); err != nil || !bytes.Equal(got, raw) {
		t.Errorf("%s: the decompressed disk differs from the raw disk (%v)", arch, err)
	}
	cfg, err := os.ReadFile(filepath.Join(out, "vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := kubevirt.Decode(cfg)
	if err != nil {
		t.Fatalf("%s: vm.json does not decode strictly: %v", arch, err)
	}
	vm, ok := obj.(*kubevirtv1.VirtualMachine)
	if !ok {
		t.Fatalf("vm.json is a %T", obj)
	}
	spec := vm.Spec.Template.Spec
	if spec.Architecture != arch || len(spec.Volumes) != 1 || spec.Volumes[0].PersistentVolumeClaim == nil || spec.Volumes[0].PersistentVolumeClaim.ClaimName != "512vm" {
		t.Errorf("%s: VM architecture %q volumes %+v", arch, spec.Architecture, spec.Volumes)
	}
}

func TestRealVMArtifact(t *testing.T) {
	skopeo := tooltest.Require(t, "skopeo", tooltest.Skopeo)
	tooltest.Require(t, "jq", "apt-get install jq")
	zstd := tooltest.Require(t, "zstd", "apt-get install zstd")
	oras := tooltest.Require(t, "oras", tooltest.Oras)
	crane := tooltest.Require(t, "crane", craneHint)
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})
	raw := wantFiles(t, build.Options{})["512-byte-vm.raw"]

	code, out, errs := tvo(t, "push", reg.Host+"/512vm:vm")
	if code != 0 {
		t.Fatalf("push :vm: exit %d: %s", code, errs)
	}
	pinned := strings.TrimSpace(out)
	all := pushAll(t, reg.Host)
	if vm := all[len(all)-1]; vm != pinned {
		t.Errorf("push --all's vm is %s, push :vm's %s", vm, pinned)
	}
	ref := reg.Host + "/512vm:" + oci.VMTag

	// The reader written from the format, for each platform.
	for _, arch := range []string{"amd64", "arm64"} {
		dir := t.TempDir()
		runTool(t, "bash", readerScript, "docker://"+ref, dir, arch)
		checkVMRead(t, dir, arch, raw)
	}

	// oras and crane read the index, its manifests and the zstd blob.
	var idx struct {
		MediaType    string `json:"mediaType"`
		ArtifactType string `json:"artifactType"`
		Manifests    []struct {
			Digest   string `json:"digest"`
			Platform struct{ Architecture, OS string }
		} `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(runTool(t, oras, "manifest", "fetch", "--plain-http", ref)), &idx); err != nil {
		t.Fatal(err)
	}
	if idx.MediaType != "application/vnd.oci.image.index.v1+json" || idx.ArtifactType != oci.VMArtifactType || len(idx.Manifests) != 2 ||
		idx.Manifests[0].Platform.Architecture != "amd64" || idx.Manifests[1].Platform.Architecture != "arm64" {
		t.Errorf("oras manifest fetch: %+v", idx)
	}
	if got := runTool(t, crane, "manifest", ref); !strings.Contains(got, `"artifactType":"`+oci.VMArtifactType+`"`) {
		t.Errorf("crane manifest: %s", got)
	}
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(runTool(t, crane, "manifest", reg.Host+"/512vm@"+idx.Manifests[1].Digest)), &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("crane manifest of the arm64 entry: %+v, %v", m, err)
	}
	zst := filepath.Join(t.TempDir(), "disk.zst")
	zf, err := os.Create(zst)
	if err != nil {
		t.Fatal(err)
	}
	blob := exec.Command(crane, "blob", reg.Host+"/512vm@"+m.Layers[0].Digest)
	blob.Stdout = zf
	err = blob.Run()
	zf.Close()
	if err != nil {
		t.Fatalf("crane blob: %v", err)
	}
	runTool(t, zstd, "-q", "-d", zst, "-o", zst+".raw")
	if b, _ := os.ReadFile(zst + ".raw"); !bytes.Equal(b, raw) {
		t.Error("crane blob | zstd -d differs from the raw disk")
	}
	dir := t.TempDir()
	runTool(t, oras, "pull", "--plain-http", "--platform", "linux/arm64", ref, "-o", dir)
	runTool(t, zstd, "-q", "-d", filepath.Join(dir, "512vm.raw.zst"), "-o", filepath.Join(dir, "512vm.raw"))
	if b, _ := os.ReadFile(filepath.Join(dir, "512vm.raw")); !bytes.Equal(b, raw) {
		t.Error("oras pull then zstd -d differs from the raw disk")
	}

	// build's layout holds the same VM artifact: the reader gets the
	// same disk from it, and skopeo publishes it with the same digest.
	dist := t.TempDir()
	if code, _, errs := tvo(t, "build", "-o", dist); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	layout := filepath.Join(dist, "oci")
	dir = t.TempDir()
	runTool(t, "bash", readerScript, "oci:"+layout+":"+oci.VMTag, dir, "amd64")
	checkVMRead(t, dir, "amd64", raw)
	dst := reg.Host + "/fromlayout:" + oci.VMTag
	runTool(t, skopeo, "copy", "--multi-arch=all", "--preserve-digests", "--dest-tls-verify=false", "oci:"+layout+":"+oci.VMTag, "docker://"+dst)
	if got := runTool(t, crane, "digest", dst); strings.TrimSpace(got) != pinned[strings.Index(pinned, "@")+1:] {
		t.Errorf("layout's vm is %s, push's %s", strings.TrimSpace(got), pinned)
	}

	// KubeVirt's own script, when given, with stand-ins for the cluster
	// tools (virtctl image-upload, kubectl create) that keep what they
	// are handed. KubeVirt's code is not part of this repository; point
	// TINYVM_OCI_IMPORT_SH at a copy of kubevirt/kubevirt's
	// hack/oci-import.sh to run it.
	script := os.Getenv("TINYVM_OCI_IMPORT_SH")
	if script == "" {
		t.Log("TINYVM_OCI_IMPORT_SH not set: KubeVirt's hack/oci-import.sh not run")
		return
	}
	runImportScript(t, script, ref, raw)
}

// runImportScript runs KubeVirt's hack/oci-import.sh --registry ref with
// stub virtctl, kubectl and a skopeo that allows plain HTTP, and checks
// the disk it uploads and the VM it creates.
func runImportScript(t *testing.T, script, ref string, raw []byte) {
	t.Helper()
	skopeo, _ := exec.LookPath("skopeo")
	bin, got := t.TempDir(), t.TempDir()
	stubs := map[string]string{
		// virtctl image-upload dv NAME --size=S --image-path=P --namespace=N
		"virtctl": `for a; do case $a in --image-path=*) cp "${a#*=}" "$GOT/upload.raw";; --size=*) echo "${a#*=}" >"$GOT/size";; esac; done; echo "$3" >"$GOT/pvc"`,
		// kubectl config view ... / kubectl create -f FILE
		"kubectl": `case $1 in config) echo testns;; create) cp "$3" "$GOT/vm.json";; esac`,
		"skopeo":  `if [ "$1" = copy ]; then shift; exec ` + skopeo + ` copy --src-tls-verify=false "$@"; fi; exec ` + skopeo + ` "$@"`,
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", script, "--registry", ref)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "GOT="+got)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/oci-import.sh: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(got, "upload.raw")); !bytes.Equal(b, raw) {
		t.Error("hack/oci-import.sh uploaded a disk that differs from the raw disk")
	}
	pvc, _ := os.ReadFile(filepath.Join(got, "pvc"))
	size, _ := os.ReadFile(filepath.Join(got, "size"))
	if string(pvc) != "512vm-512vm\n" || string(size) != "1Mi\n" {
		t.Errorf("hack/oci-import.sh uploaded PVC %q size %q", pvc, size)
	}
	vmJSON, err := os.ReadFile(filepath.Join(got, "vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := kubevirt.Decode(vmJSON)
	if err != nil {
		t.Fatalf("the VM hack/oci-import.sh creates does not decode strictly: %v", err)
	}
	vm := obj.(*kubevirtv1.VirtualMachine)
	if vm.Namespace != "testns" || vm.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "512vm-512vm" {
		t.Errorf("hack/oci-import.sh creates VM in %q with volumes %+v: want the uploaded PVC", vm.Namespace, vm.Spec.Template.Spec.Volumes)
	}
	t.Log("KubeVirt's hack/oci-import.sh imported the VM artifact")
}

// TestRealStoredBytes: everything push --all publishes takes under 64 KB
// of the registry's storage, and oras pull of the disks artifact still
// gives every file, byte-identical.
func TestRealStoredBytes(t *testing.T) {
	oras := tooltest.Require(t, "oras", tooltest.Oras)
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})
	pushAll(t, reg.Host)
	var stored int64
	blobs := filepath.Join(reg.Dir, "storage", "docker", "registry", "v2", "blobs")
	err := filepath.WalkDir(blobs, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "data" {
			return err
		}
		st, err := os.Stat(p)
		if err == nil {
			stored += st.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push --all stores %d bytes of blobs (manifests included)", stored)
	if stored == 0 || stored >= 64_000 {
		t.Errorf("push --all stores %d bytes, want under 64 KB", stored)
	}

	dir := t.TempDir()
	runTool(t, oras, "pull", "--plain-http", reg.Host+"/512vm:"+oci.ArtifactTag, "-o", dir)
	want := wantFiles(t, build.Options{})
	ents, err := os.ReadDir(filepath.Join(dir, oci.ArtifactDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(want) {
		t.Errorf("oras pull wrote %v, want %d files", ents, len(want))
	}
	for name, b := range want {
		if got, err := os.ReadFile(filepath.Join(dir, oci.ArtifactDir, name)); err != nil || !bytes.Equal(got, b) {
			t.Errorf("oras pull: %s differs or is missing (%v)", name, err)
		}
	}
}
