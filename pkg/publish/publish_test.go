package publish

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/registrytest"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

func mustFormats(t *testing.T, list string) []formats.Format {
	t.Helper()
	if list == "" {
		return nil
	}
	fs, err := formats.Parse(list)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestResolve(t *testing.T) {
	tests := []struct {
		ref, flagged string
		all, art     bool
		mode         Mode
		formats      string // comma-separated types; "" for whatever was flagged
		err          string
	}{
		{ref: "r.example/vm:qcow2", mode: ContainerDisk, formats: "qcow2"},
		{ref: "r.example/vm:vhdx", mode: ContainerDisk, formats: "vhdx"},
		{ref: "r.example/vm:latest", mode: ContainerDisk, formats: DefaultFormat},
		{ref: "r.example/vm:fixture", flagged: "raw", mode: ContainerDisk, formats: "raw"},
		{ref: "r.example/vm:disks", mode: Artifact},
		{ref: "r.example/vm:anything", art: true, flagged: "raw,iso", mode: Artifact, formats: "raw,iso"},
		{ref: "r.example/vm", all: true, mode: All},
		{ref: "r.example/vm:vm", mode: VM, formats: "raw"},
		{ref: "r.example/vm:vm", flagged: "raw", mode: VM, formats: "raw"},
		{ref: "r.example/vm:vm", flagged: "qcow2", err: "holds the raw disk; drop --format"},
		{ref: "r.example/vm:ova", err: "VM never boots; the ova is a file of r.example/vm:disks"},
		{ref: "r.example/vm:latest", flagged: "ova", err: "not a containerDisk"},
		{ref: "r.example/vm:qcow2", flagged: "raw", err: "--format says otherwise"},
		{ref: "r.example/vm:x", flagged: "raw,qcow2", err: "holds one format"},
		{ref: "r.example/vm", all: true, art: true, err: "use one of --all and --artifact"},
		{ref: "r.example/vm@sha256:" + strings.Repeat("a", 64), err: "not a digest"},
		{ref: "r.example/vm:qcow2", art: true, err: "--artifact pushes the artifact"},
		{ref: "r.example/vm:foo", all: true, err: "would ignore \"foo\""},
		{ref: "r.example:5000/vm:latest", all: true, err: "would ignore \"latest\""},
		{ref: "r.example:5000/vm", all: true, mode: All},
		{ref: "r.example/vm:disks", art: true, mode: Artifact},
	}
	for _, tt := range tests {
		ref, err := name.ParseReference(tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Resolve(ref, tt.all, tt.art, mustFormats(t, tt.flagged))
		if tt.err != "" {
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: got %v, want a usage error with %q", tt.ref, err, tt.err)
			}
			continue
		}
		if err != nil || got.Mode != tt.mode {
			t.Errorf("%s: mode %v, %v; want %v", tt.ref, got.Mode, err, tt.mode)
			continue
		}
		var types []string
		for _, f := range got.Formats {
			types = append(types, f.Type)
		}
		if strings.Join(types, ",") != tt.formats {
			t.Errorf("%s: formats %v, want %s", tt.ref, types, tt.formats)
		}
	}
}

func TestPush(t *testing.T) {
	host := registrytest.Start(t)
	ref, err := remote.ParseReference(host + "/512vm")
	if err != nil {
		t.Fatal(err)
	}
	target, err := Resolve(ref, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	progress := make(chan v1.Update, 1024)
	_, pushed, err := Push(context.Background(), target, build.Options{}, "test", progress)
	if err != nil {
		t.Fatal(err)
	}
	// Every format but ova as a containerDisk, then the artifact and
	// the VM artifact.
	var want []string
	for _, f := range formats.Types {
		if f.Type != "ova" {
			want = append(want, f.Type)
		}
	}
	want = append(want, oci.ArtifactTag, oci.VMTag)
	var got []string
	for _, p := range pushed {
		got = append(got, p.Ref.(name.Tag).TagStr())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("pushed %v, want %v", got, want)
	}
	waitClosed(t, progress)
}

// TestPushBuildFails: when the build fails no upload starts, and the
// progress channel is closed all the same, so a reader never hangs.
func TestPushBuildFails(t *testing.T) {
	ref, _ := name.ParseReference("127.0.0.1:1/512vm:vmdk")
	target, err := Resolve(ref, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	progress := make(chan v1.Update, 1)
	_, _, err = Push(context.Background(), target, build.Options{Size: 1100 * 512}, "test", progress)
	if err == nil || !strings.Contains(err.Error(), "grain") {
		t.Errorf("got %v, want the vmdk size error", err)
	}
	waitClosed(t, progress)
}

func waitClosed(t *testing.T, ch <-chan v1.Update) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("progress channel never closed")
		}
	}
}
