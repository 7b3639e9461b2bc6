package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/registrytest"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
)

// manifestRegistry serves 512vm:qcow2 from ggcr's in-process registry on
// loopback and returns host:port and the manifest digest.
func manifestRegistry(t *testing.T) (string, string) {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host := registrytest.Start(t)
	return host, registrytest.PushRandom(t, host, "512vm:qcow2")
}

// exampleArgs turns an example command line into arguments: the program
// name and a trailing "> file" redirection or "| command" pipe go, and the documented local
// registry 127.0.0.1:5000 becomes host.
func exampleArgs(line, host string) []string {
	line = strings.TrimSpace(line)
	if i := strings.IndexAny(line, ">|"); i >= 0 {
		line = line[:i]
	}
	line = strings.ReplaceAll(line, "127.0.0.1:5000", host)
	return strings.Fields(line)[1:]
}

// TestManifestExamples runs every line of the command's Example text.
func TestManifestExamples(t *testing.T) {
	host, digest := manifestRegistry(t)
	lines := strings.Split(newManifestCmd().Example, "\n")
	if len(lines) < 5 {
		t.Fatalf("only %d examples", len(lines))
	}
	for _, line := range lines {
		args := exampleArgs(line, host)
		code, stdout, stderr := cli(t, args...)
		if code != 0 {
			t.Errorf("%s: exit %d: %s", line, code, stderr)
			continue
		}
		if _, err := kubevirt.Decode([]byte(stdout)); err != nil {
			t.Errorf("%s: %v\n%s", line, err, stdout)
		}
		if strings.Contains(line, "--resolve") && !strings.Contains(stdout, host+"/512vm@"+digest) {
			t.Errorf("%s: output does not pin %s:\n%s", line, digest, stdout)
		}
	}
}

// TestManifestGolden checks that the command prints exactly what the
// library's goldens hold.
func TestManifestGolden(t *testing.T) {
	for file, args := range map[string][]string{
		"vm.yaml":                    {"registry.example.com/512vm:qcow2"},
		"vmi.yaml":                   {"--kind", "VMI", "registry.example.com/512vm:qcow2"},
		"datavolume.yaml":            {"--kind", "datavolume", "registry.example.com/512vm:qcow2"},
		"datasource.yaml":            {"--kind", "datasource"},
		"vm-once-pinned.yaml":        {"--run-strategy", "once", "--name", "fixture", "--namespace", "ci", "registry.example.com/512vm:qcow2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		"datavolume-node-10gib.yaml": {"--kind", "datavolume", "--name", "golden-512vm", "--namespace", "os-images", "--pull-method", "node", "--size", "10GiB", "ghcr.io/acme/512vm@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		"datasource-pvc.yaml":        {"--kind", "datasource", "--namespace", "os-images", "--pvc", "golden-512vm"},
		"vm-efi.yaml":                {"--firmware", "efi", "registry.example.com/512vm:qcow2"},
		"vm-arm64.yaml":              {"--arch", "arm64", "registry.example.com/512vm:qcow2"},
		"vmi-efi-amd64.yaml":         {"--kind", "vmi", "--name", "512vm-efi", "--arch", "AMD64", "--firmware", "UEFI", "registry.example.com/512vm:qcow2"},
	} {
		want, err := os.ReadFile(filepath.Join("..", "..", "testdata", "kubevirt", file))
		if err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := cli(t, append([]string{"manifest"}, args...)...)
		if code != 0 || stdout != string(want) {
			t.Errorf("manifest %s: exit %d, stderr %q; output differs from %s:\n%s", strings.Join(args, " "), code, stderr, file, stdout)
		}
	}
}

func TestManifestResolve(t *testing.T) {
	host, digest := manifestRegistry(t)
	code, stdout, stderr := cli(t, "manifest", "--resolve", "--kind", "datavolume", host+"/512vm:qcow2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "url: docker://" + host + "/512vm@" + digest + "\n"; !strings.Contains(stdout, want) {
		t.Errorf("output lacks %q:\n%s", want, stdout)
	}
	code, stdout, stderr = cli(t, "manifest", "--resolve", host+"/512vm:missing")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "resolve "+host+"/512vm:missing: registry "+host) || !strings.Contains(stderr, "not found") {
		t.Errorf("missing tag: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestManifestErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"manifest"}, 2, "kind vm needs the image reference REF"},
		{[]string{"manifest", "--kind", "pod", "r/x"}, 2, `--kind: kubevirt: unknown kind "pod": use vm, vmi, datavolume, datasource`},
		{[]string{"manifest", "--run-strategy", "Sometimes", "r/x"}, 2, `--run-strategy: kubevirt: bad run strategy "Sometimes": use Always, Once, Halted, Manual`},
		{[]string{"manifest", "--kind", "vmi", "--run-strategy", "Once", "r/x"}, 2, "a run strategy is for kind vm, not vmi"},
		{[]string{"manifest", "--pull-method", "node", "r/x"}, 2, "a pull method is for kind datavolume, not vm"},
		{[]string{"manifest", "--kind", "datavolume", "--pull-method", "kubelet", "r/x"}, 2, `--pull-method: kubevirt: bad pull method "kubelet": use pod, node`},
		{[]string{"manifest", "--kind", "datavolume", "--size", "1.5G", "r/x"}, 2, "--size: bad size"},
		{[]string{"manifest", "--name", "My_VM", "r/x"}, 2, `kubevirt: bad name "My_VM"`},
		{[]string{"manifest", "--namespace", "Prod", "r/x"}, 2, `kubevirt: bad name namespace "Prod"`},
		{[]string{"manifest", "Not/A Reference"}, 2, "kubevirt: bad image reference"},
		{[]string{"manifest", "--kind", "datasource", "r/x"}, 2, "a datasource takes no REF"},
		{[]string{"manifest", "--kind", "datasource", "--resolve"}, 2, "--resolve: a datasource has no image"},
		{[]string{"manifest", "a/b", "c/d"}, 2, "accepts at most 1 arg"},
		{[]string{"manifest", "--firmware", "coreboot", "r/x"}, 2, `--firmware: kubevirt: bad firmware "coreboot": use bios, efi`},
		{[]string{"manifest", "--arch", "s390x", "r/x"}, 2, `--arch: kubevirt: bad architecture "s390x": use amd64, arm64`},
		{[]string{"manifest", "--arch", "arm64", "--firmware", "bios", "r/x"}, 2, "kubevirt: bad firmware: arm64 boots UEFI only: use efi"},
		{[]string{"manifest", "--kind", "datavolume", "--arch", "arm64", "r/x"}, 2, "an architecture is for kind vm or vmi, not datavolume"},
		{[]string{"manifest", "--kind", "datasource", "--firmware", "efi"}, 2, "a firmware is for kind vm or vmi, not datasource"},
	}
	for _, c := range cases {
		code, stdout, stderr := cli(t, c.args...)
		if code != c.code || stdout != "" || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, stdout, stderr, c.code, c.want)
		}
	}
}

// TestManifestOncePairing checks what docs/kubevirt.md promises for a CI
// fixture: --run-strategy Once gives a VM that KubeVirt will not restart.
func TestManifestOncePairing(t *testing.T) {
	code, stdout, stderr := cli(t, "manifest", "--run-strategy", "Once", "r/x:qcow2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	obj, err := kubevirt.Decode([]byte(stdout))
	if err != nil {
		t.Fatal(err)
	}
	vm := obj.(*kubevirtv1.VirtualMachine)
	if vm.Spec.RunStrategy == nil || *vm.Spec.RunStrategy != kubevirtv1.RunStrategyOnce {
		t.Errorf("runStrategy %v, want Once", vm.Spec.RunStrategy)
	}
}

// TestDocsKubeVirt runs the tinyvm-oci commands in docs/kubevirt.md: push
// lines against an in-process registry standing in for ghcr.io and
// 127.0.0.1:5000, and every manifest line. Where a yaml block follows a
// manifest command, the output must match it exactly, so the docs cannot
// drift from the code. (kubectl and virtctl lines need a cluster.)
func TestDocsKubeVirt(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "kubevirt.md"))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := manifestRegistry(t)
	block := regexp.MustCompile("(?s)```(\\w+)\\n(.*?)```")
	blocks := block.FindAllSubmatch(doc, -1)
	ran := map[string]int{}
	for i, b := range blocks {
		if string(b[1]) != "sh" {
			continue
		}
		for _, line := range strings.Split(string(b[2]), "\n") {
			switch {
			case strings.HasPrefix(line, "tinyvm-oci push "):
				line = strings.ReplaceAll(line, "ghcr.io/acme", host)
				code, stdout, stderr := cli(t, exampleArgs(line, host)...)
				ran["push"]++
				if code != 0 || !strings.Contains(stdout, "@sha256:") {
					t.Errorf("%s: exit %d, stdout %q: %s", line, code, stdout, stderr)
				}
			case strings.HasPrefix(line, "tinyvm-oci manifest "):
				code, stdout, stderr := cli(t, exampleArgs(line, host)...)
				ran["manifest"]++
				if code != 0 {
					t.Errorf("%s: exit %d: %s", line, code, stderr)
					continue
				}
				if _, err := kubevirt.Decode([]byte(stdout)); err != nil {
					t.Errorf("%s: %v", line, err)
				}
				if i+1 < len(blocks) && string(blocks[i+1][1]) == "yaml" {
					if want := blocks[i+1][2]; !bytes.Equal([]byte(stdout), want) {
						t.Errorf("docs/kubevirt.md: the yaml after %q is stale; the command prints:\n%s", line, stdout)
					}
				}
			case strings.HasPrefix(line, "tinyvm-oci"):
				t.Errorf("docs/kubevirt.md: %q is not exercised by this test", line)
			}
		}
	}
	if ran["manifest"] < 5 || ran["push"] < 2 {
		t.Errorf("ran %v commands from docs/kubevirt.md; the docs show more", ran)
	}
}

// TestManifestFormatTraps: a VM or VMI of a format virt-launcher refuses
// is an error that points at qcow2, raw or a DataVolume, whether the tag
// says the format or, with --resolve, the image's own annotation does; a
// DataVolume's storage request covers the image file CDI copies into its
// scratch space (a 1 MiB disk's vhdx is 5 MiB).
func TestManifestFormatTraps(t *testing.T) {
	for _, f := range []string{"vmdk", "vdi", "vhd", "vhdx"} {
		for _, kind := range []string{"vm", "vmi"} {
			code, stdout, stderr := cli(t, "manifest", "--kind", kind, "r.example/512vm:"+f)
			if code != 2 || stdout != "" || !strings.Contains(stderr, "a "+f+" containerDisk fails in virt-launcher, which takes only raw and qcow2; use the qcow2 or raw tag for a "+kind+", or --kind datavolume") {
				t.Errorf("%s %s: exit %d, %q", kind, f, code, stderr)
			}
		}
	}
	for _, tc := range []struct{ tag, want string }{
		{"qcow2", "storage: 1Mi"}, {"raw", "storage: 1Mi"}, {"vdi", "storage: 2Mi"}, {"vhd", "storage: 3Mi"}, {"vhdx", "storage: 5Mi"},
	} {
		code, stdout, stderr := cli(t, "manifest", "--kind", "datavolume", "r.example/512vm:"+tc.tag)
		if code != 0 || !strings.Contains(stdout, tc.want+"\n") {
			t.Errorf("datavolume %s: exit %d, %s%s; want %s", tc.tag, code, stdout, stderr, tc.want)
		}
	}
	if code, stdout, _ := cli(t, "manifest", "--kind", "datavolume", "--format", "vhdx", "r.example/512vm:latest"); code != 0 || !strings.Contains(stdout, "storage: 5Mi\n") {
		t.Errorf("datavolume --format vhdx: exit %d, %s", code, stdout)
	}
	for _, tag := range []string{"ova", "vm", "disks"} {
		if code, _, stderr := cli(t, "manifest", "--kind", "datavolume", "r.example/512vm:"+tag); code != 2 {
			t.Errorf("datavolume of %s: exit %d, %q", tag, code, stderr)
		}
	}

	// The image's own annotation: a vmdk containerDisk pushed under a tag
	// that names no format.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host := registrytest.Start(t)
	if code, _, stderr := cli(t, "push", "--format", "vmdk", host+"/512vm:latest"); code != 0 {
		t.Fatalf("push: exit %d: %s", code, stderr)
	}
	code, stdout, stderr := cli(t, "manifest", "--resolve", host+"/512vm:latest")
	if code != 2 || stdout != "" || !strings.Contains(stderr, "a vmdk containerDisk fails in virt-launcher") {
		t.Errorf("--resolve of a vmdk under :latest: exit %d, %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = cli(t, "manifest", "--resolve", "--kind", "datavolume", host+"/512vm:latest")
	if code != 0 || !strings.Contains(stdout, "url: docker://"+host+"/512vm@sha256:") {
		t.Errorf("--resolve datavolume of a vmdk: exit %d, %s %s", code, stdout, stderr)
	}
}
