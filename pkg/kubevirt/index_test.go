package kubevirt_test

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/tinyvm-oci/tinyvm-oci/internal/registrytest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

// TestResolveIndex: --resolve pins a multi-arch containerDisk by its
// index's digest, not by one entry's, so that an arm64 VM's node still
// picks the arm64 entry.
func TestResolveIndex(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	host := registrytest.Start(t)
	qcow2, _ := formats.Lookup("qcow2")
	files := ocitest.Files(t, t.TempDir(), build.Options{Formats: []formats.Format{qcow2}})
	idx, err := oci.ContainerDisk(files[0])
	if err != nil {
		t.Fatal(err)
	}
	ref, err := remote.ParseReference(host + "/512vm:qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Push(context.Background(), []name.Reference{ref}, []oci.Taggable{idx}); err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	got, err := kubevirt.Resolve(context.Background(), host+"/512vm:qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if got != host+"/512vm@"+want.String() {
		t.Errorf("Resolve = %s, want the index digest %s", got, want)
	}
	if _, err := kubevirt.Generate(kubevirt.Options{Image: got, Arch: kubevirt.ARM64}); err != nil {
		t.Errorf("an arm64 VM for %s: %v", got, err)
	}
}
