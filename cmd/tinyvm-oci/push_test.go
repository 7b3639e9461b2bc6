package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/registrytest"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

// tvo runs the CLI in-process and returns its exit code, stdout and stderr.
func tvo(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func memRegistry(t *testing.T) string { return registrytest.Start(t) }

// wantFiles builds the default files to compare pulls against.
func wantFiles(t *testing.T, o build.Options) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range ocitest.Files(t, t.TempDir(), o) {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f.Path)] = b
	}
	return out
}

// allTags are the tags push --all writes, in order: every format's
// containerDisk but ova's, the artifact and the VM artifact.
func allTags() []string {
	var tags []string
	for _, f := range formats.Types {
		if oci.CheckContainerDisk(f) == nil {
			tags = append(tags, f.Type)
		}
	}
	return append(tags, oci.ArtifactTag, oci.VMTag)
}

// pushAll runs push --all and checks it printed REF@sha256 for every tag.
func pushAll(t *testing.T, host string, extra ...string) []string {
	t.Helper()
	code, out, errs := tvo(t, append([]string{"push", "--all", host + "/512vm"}, extra...)...)
	if code != 0 {
		t.Fatalf("push --all: exit %d: %s", code, errs)
	}
	lines := strings.Fields(out)
	tags := allTags()
	if len(lines) != len(tags) {
		t.Fatalf("push --all printed %q, want %v", out, tags)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, host+"/512vm:"+tags[i]+"@sha256:") {
			t.Errorf("line %q, want %s/512vm:%s@sha256:...", l, host, tags[i])
		}
	}
	return lines
}

func TestPushAllPull(t *testing.T) {
	host := memRegistry(t)
	first := pushAll(t, host)
	if again := pushAll(t, host); strings.Join(again, " ") != strings.Join(first, " ") {
		t.Errorf("same push twice gave different digests:\n%v\n%v", first, again)
	}
	want := wantFiles(t, build.Options{})
	for _, line := range first {
		ref := line[:strings.Index(line, "@")]
		dir := t.TempDir()
		code, out, errs := tvo(t, "pull", ref, "-o", dir)
		if code != 0 {
			t.Fatalf("pull %s: exit %d: %s", ref, code, errs)
		}
		paths := strings.Fields(out)
		wantN := 1
		if strings.HasSuffix(ref, ":"+oci.ArtifactTag) {
			wantN = len(want)
		}
		if strings.HasSuffix(ref, ":"+oci.VMTag) {
			// The VM artifact's disk is the raw disk, named after
			// its PVC.
			want["512vm.raw"] = want["512-byte-vm.raw"]
		}
		if len(paths) != wantN {
			t.Errorf("pull %s wrote %v", ref, paths)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want[filepath.Base(p)]) {
				t.Errorf("pull %s: %s differs from the built file", ref, p)
			}
		}
		// Pulling by digest gives the same.
		if code, _, errs := tvo(t, "pull", line, "-o", t.TempDir()); code != 0 {
			t.Errorf("pull %s: exit %d: %s", line, code, errs)
		}
	}
}

func TestPushOptions(t *testing.T) {
	host := memRegistry(t)
	// The sector flags change the disk, so the digest.
	_, a, _ := tvo(t, "push", host+"/512vm:raw")
	code, b, errs := tvo(t, "push", host+"/512vm:raw", "--then", "poweroff", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var js []struct{ Reference, Digest, Pinned string }
	if err := json.Unmarshal([]byte(b), &js); err != nil || len(js) != 1 {
		t.Fatalf("--json: %q: %v", b, err)
	}
	if js[0].Reference != host+"/512vm:raw" || js[0].Pinned != js[0].Reference+"@"+js[0].Digest || strings.TrimSpace(a) == js[0].Pinned {
		t.Errorf("json %+v after text %q", js[0], a)
	}
	// SOURCE_DATE_EPOCH changes the digest.
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	code, c, errs := tvo(t, "push", host+"/512vm:raw")
	if code != 0 || strings.TrimSpace(c) == strings.TrimSpace(a) {
		t.Errorf("SOURCE_DATE_EPOCH: exit %d, %q after %q: %s", code, c, a, errs)
	}
	os.Unsetenv("SOURCE_DATE_EPOCH")
	// Without a format in the tag, qcow2 (once its writer is in the table).
	if _, err := formats.Lookup("qcow2"); err == nil {
		code, out, errs := tvo(t, "push", host+"/512vm:latest")
		dir := t.TempDir()
		if code == 0 {
			code, out, errs = tvo(t, "pull", strings.TrimSpace(out), "-o", dir)
		}
		if code != 0 || filepath.Base(strings.TrimSpace(out)) != "512-byte-vm.qcow2" {
			t.Errorf("push :latest then pull: exit %d, %q: %s", code, out, errs)
		}
	}
	// --all with --format pushes just those formats and their artifact,
	// and the VM artifact when raw is among them.
	code, out, errs := tvo(t, "push", "--all", host+"/some", "--format", "raw")
	if lines := strings.Fields(out); code != 0 || len(lines) != 3 ||
		!strings.HasPrefix(lines[0], host+"/some:raw@") || !strings.HasPrefix(lines[1], host+"/some:disks@") || !strings.HasPrefix(lines[2], host+"/some:vm@") {
		t.Errorf("push --all --format raw: exit %d, %q: %s", code, out, errs)
	}
	code, out, errs = tvo(t, "push", "--all", host+"/some", "--format", "qcow2,ova")
	if lines := strings.Fields(out); code != 0 || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], host+"/some:qcow2@") || !strings.HasPrefix(lines[1], host+"/some:disks@") {
		t.Errorf("push --all --format qcow2,ova: exit %d, %q: %s", code, out, errs)
	}
	// An ova is no containerDisk: a one-line usage error that says why
	// and where the ova is.
	code, _, errs = tvo(t, "push", host+"/512vm:ova")
	if first := strings.SplitN(errs, "\n", 2)[0]; code != exitUsage || !strings.Contains(first, "the VM never boots") || !strings.Contains(first, host+"/512vm:disks") {
		t.Errorf("push :ova: exit %d: %q", code, errs)
	}
	t.Logf("push :ova: %s", strings.SplitN(errs, "\n", 2)[0])
	// The disks tag is the artifact.
	code, out, errs = tvo(t, "push", host+"/512vm:disks", "--format", "raw")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	dir := t.TempDir()
	if code, _, errs := tvo(t, "pull", strings.TrimSpace(out), "-o", dir); code != 0 {
		t.Fatalf("pull artifact: %s", errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "512-byte-vm.raw")); err != nil {
		t.Error(err)
	}
	for _, args := range [][]string{
		{"push", host + "/512vm:raw", "--format", "raw,raw2"},
		{"push", host + "/512vm", "--all", "--artifact"},
		{"push", host + "/512vm", "--output", "yaml"},
		{"push", "UPPER/Case:bad tag"},
		{"push", host + "/512vm@sha256:" + strings.Repeat("0", 64)},
		{"pull", host + "/512vm:raw", "--max-size", "lots"},
	} {
		if code, _, errs := tvo(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want usage error", args, code, errs)
		}
	}
	// A pull over the limit fails and writes nothing.
	dir = t.TempDir()
	code, _, errs = tvo(t, "pull", host+"/512vm:raw", "-o", dir, "--max-size", "512")
	if code != exitError || !strings.Contains(errs, "too large") || !strings.Contains(errs, "repository 512vm") {
		t.Errorf("pull over --max-size: exit %d: %s", code, errs)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}
