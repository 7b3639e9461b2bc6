package main

// The registry side of issue 12: usage errors, honest push reports under
// faults, and pulls from a hostile registry, through the CLI.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/internal/faultproxy"
	"github.com/tinyvm-oci/tinyvm-oci/internal/hostile"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// TestRegistryUsageErrors: contradictory or malformed requests exit 2
// with one line, before any request; a password is never repeated.
func TestRegistryUsageErrors(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host := memRegistry(t)
	const secret = "s3cret-never-printed"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"push", "--artifact", host + "/512vm:qcow2"}, "--artifact pushes the artifact"},
		{[]string{"push", "--all", host + "/512vm:foo"}, `would ignore "foo"`},
		{[]string{"push", "--vhd-type", "fixed", host + "/512vm:raw"}, "--vhd-type applies to vhd, which is not built here (raw)"},
		{[]string{"push", "127.0.0.1:99999/x:raw"}, "not a number from 1 to 65535"},
		{[]string{"pull", "127.0.0.1:99999/x:raw"}, "not a number from 1 to 65535"},
		{[]string{"pull", "--max-size", "0", host + "/512vm:raw"}, "positive whole number"},
		{[]string{"pull", "--timeout", "-1s", host + "/512vm:raw"}, "must not be negative"},
		{[]string{"push", "https://" + host + "/512vm:raw"}, "without a scheme"},
		{[]string{"push", "user:" + secret + "@" + host + "/512vm:raw"}, "must not hold credentials"},
		{[]string{"pull", "user:" + secret + "@" + host + "/512vm:raw"}, "must not hold credentials"},
		{[]string{"manifest", "--resolve", "user:" + secret + "@" + host + "/512vm:qcow2"}, "must not hold credentials"},
		{[]string{"manifest", "--resolve", host + "/512vm:disks"}, "not a containerDisk"},
		{[]string{"manifest", host + "/512vm:disks"}, "not a containerDisk"},
		{[]string{"manifest", "--name", "", host + "/512vm:qcow2"}, "--name must not be empty"},
	} {
		code, stdout, stderr := tvo(t, tc.args...)
		first := strings.SplitN(stderr, "\n", 2)[0]
		if code != exitUsage || !strings.Contains(first, tc.want) || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 saying %q", tc.args, code, stdout, stderr, tc.want)
		}
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("%q: the password appears: %q", tc.args, stderr)
		}
	}
}

// TestPushAllPartial: with every PUT of the last manifest (the VM
// artifact's) failing, push --all prints every tag it wrote, with digests,
// in order, and names the one it did not; --json lists them all
// with "written".
func TestPushAllPartial(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host := memRegistry(t)
	// What push --all writes, in order: every containerDisk, the disks
	// artifact, then the VM artifact, whose PUT fails.
	var written []string
	for _, f := range formats.Types {
		if oci.CheckContainerDisk(f) == nil {
			written = append(written, f.Type)
		}
	}
	written = append(written, oci.ArtifactTag)
	putLast := func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/"+oci.VMTag)
	}
	proxy := faultproxy.New(t, host, faultproxy.Options{Share: 1, Max: -1, Match: putLast})
	code, stdout, stderr := tvo(t, "push", "--all", proxy.Host+"/512vm")
	lines := strings.Fields(stdout)
	if code != exitError || len(lines) != len(written) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and %d tags", code, stdout, stderr, len(written))
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, proxy.Host+"/512vm:"+written[i]+"@sha256:") {
			t.Errorf("line %q, want the %s tag with its digest", l, written[i])
		}
		r, _ := name.ParseReference(strings.Replace(l, proxy.Host, host, 1))
		if _, err := ggcr.Head(r); err != nil {
			t.Errorf("%s printed but not in the registry: %v", l, err)
		}
	}
	if !strings.Contains(stderr, "not pushed: "+proxy.Host+"/512vm:"+oci.VMTag+"\n") || !strings.Contains(lastLine(stderr), "server error") {
		t.Errorf("stderr %q does not name the tag not written and the error", stderr)
	}

	code, stdout, stderr = tvo(t, "push", "--all", "--json", proxy.Host+"/512vm")
	var out []pushedJSON
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || code != exitError {
		t.Fatalf("json: exit %d, %v: %q %q", code, err, stdout, stderr)
	}
	if len(out) != len(written)+1 {
		t.Fatalf("json lists %d tags, want %d", len(out), len(written)+1)
	}
	for i, p := range out {
		want := i < len(written)
		if p.Written != want || (p.Pinned != "") != want || !strings.HasPrefix(p.Digest, "sha256:") {
			t.Errorf("json entry %d: %+v, want written %v", i, p, want)
		}
	}
}

// hostileDisk serves a one-layer containerDisk whose layer blob is gz,
// with the diff_id of tarBytes.
func hostileDisk(t *testing.T, r *hostile.Registry, tag string, gz, tarBytes []byte) string {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + hostile.Digest(tarBytes).String() + `"]}}`)
	d := func(mt types.MediaType, b []byte) v1.Descriptor {
		return v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: hostile.Digest(b)}
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: d(types.OCIConfigJSON, cfg), Layers: []v1.Descriptor{d(types.OCILayer, gz)}}
	r.Blob("vm", m.Config.Digest, hostile.Body{Data: cfg})
	r.Blob("vm", m.Layers[0].Digest, hostile.Body{Data: gz})
	raw, _ := json.Marshal(m)
	r.Manifest("vm", tag, hostile.Body{MediaType: string(types.OCIManifestSchema1), Data: raw})
	r.Manifest("vm", hostile.Digest(raw).String(), hostile.Body{MediaType: string(types.OCIManifestSchema1), Data: raw})
	return r.Host + "/vm:" + tag
}

func diskTar(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: 3, Mode: 0o444})
	tw.Write([]byte("vm\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestHostilePulls: what a hostile registry serves is refused with a
// clear line that blames the right party.
func TestHostilePulls(t *testing.T) {
	r := hostile.Start(t)
	tb := diskTar(t, "disk/a.raw")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb)
	zw.Close()
	good := hostileDisk(t, r, "good", gz.Bytes(), tb)
	corrupt := append([]byte(nil), gz.Bytes()...)
	for i := 12; i < len(corrupt)-8; i++ {
		corrupt[i] ^= 0x5a
	}
	bad := hostileDisk(t, r, "corrupt", corrupt, tb)
	r.Manifest("vm", "stall", hostile.Body{MediaType: string(types.OCIManifestSchema1), Data: []byte("{"), Stall: true})
	evil := "evil\x1b]0;pwned\a.raw"
	tbEvil := diskTar(t, "disk/"+evil)
	var gzEvil bytes.Buffer
	zw = gzip.NewWriter(&gzEvil)
	zw.Write(tbEvil)
	zw.Close()
	escape := hostileDisk(t, r, "escape", gzEvil.Bytes(), tbEvil)

	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)

	for _, tc := range []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"corrupt gzip", []string{"pull", bad, "-o", t.TempDir()}, []string{"corrupt layer"}, []string{"unreachable"}},
		{"local error", []string{"pull", good, "-o", filepath.Join(file, "sub")}, []string{"tinyvm-oci: pull into " + filepath.Join(file, "sub")}, []string{"registry " + r.Host}},
		{"timeout", []string{"pull", "--timeout", "2s", r.Host + "/vm:stall", "-o", t.TempDir()}, []string{"gave up after --timeout 2s", "timed out"}, []string{"unreachable"}},
		{"control characters", []string{"pull", escape, "-o", t.TempDir()}, []string{`"evil\x1b]0;pwned\a.raw"`, "unsafe entry"}, []string{"\x1b", "\a"}},
		{"max-size hint", []string{"pull", good, "--max-size", "2", "-o", t.TempDir()}, []string{"over the size limit of 2", "(--max-size 2)"}, nil},
	} {
		code, stdout, stderr := tvo(t, tc.args...)
		if code != exitError || stdout != "" || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and one line", tc.name, code, stdout, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: %q lacks %q", tc.name, stderr, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(stderr, n) {
				t.Errorf("%s: %q says %q", tc.name, stderr, n)
			}
		}
		t.Logf("%s: %s", tc.name, strings.TrimSpace(stderr))
	}

	// By digest: the digest is printed once, and --max-size takes any
	// byte count.
	d := mustHead(t, good)
	code, _, stderr := tvo(t, "pull", r.Host+"/vm@"+d, "--max-size", "1000", "-o", t.TempDir())
	if code != 0 || strings.Count(stderr, "@sha256:") != 1 {
		t.Errorf("pull by digest: exit %d, %q", code, stderr)
	}
}

func mustHead(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ggcr.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	return d.Digest.String()
}

// TestPushTimeout: --push-timeout ends a push whose uploads stall, with a
// line that names the flag; no tag is written.
func TestPushTimeout(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host := memRegistry(t)
	proxy := faultproxy.New(t, host, faultproxy.Options{Share: 1, Max: -1, Match: uploadData, Faults: []faultproxy.Fault{faultproxy.Stall}})
	code, stdout, stderr := tvo(t, "push", "--push-timeout", "2s", proxy.Host+"/512vm:raw")
	if code != exitError || stdout != "" || !strings.Contains(lastLine(stderr), "gave up after --push-timeout 2s") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "not pushed: "+proxy.Host+"/512vm:raw") {
		t.Errorf("stderr %q does not name the tag not pushed", stderr)
	}
	if code, _, _ := tvo(t, "push", "--push-timeout", "-1s", host+"/512vm:raw"); code != exitUsage {
		t.Errorf("--push-timeout -1s: exit %d, want 2", code)
	}
}
