package kubevirt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"

	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/tinyvm-oci/tinyvm-oci/internal/registrytest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// testRegistry starts ggcr's in-process registry on loopback, pushes a
// small image as 512vm:qcow2 and returns host:port and the image digest.
func testRegistry(t *testing.T) (host, digest string) {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials from the user's config
	host = registrytest.Start(t)
	return host, registrytest.PushRandom(t, host, "512vm:qcow2")
}

func TestResolve(t *testing.T) {
	host, digest := testRegistry(t)
	ctx := context.Background()

	got, err := Resolve(ctx, host+"/512vm:qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if want := host + "/512vm@" + digest; got != want {
		t.Errorf("Resolve = %q, want %q", got, want)
	}

	// localhost is loopback too, so plain HTTP without a flag.
	port := host[strings.LastIndex(host, ":"):]
	got, err = Resolve(ctx, "localhost"+port+"/512vm:qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if want := "localhost" + port + "/512vm@" + digest; got != want {
		t.Errorf("Resolve(localhost) = %q, want %q", got, want)
	}

	_, err = Resolve(ctx, host+"/512vm:nosuchtag")
	if err == nil || !strings.Contains(err.Error(), "kubevirt: resolve "+host+"/512vm:nosuchtag: registry "+host+", repository 512vm: not found") {
		t.Errorf("missing tag: error %v, want one naming the reference and registry", err)
	}

	// A pinned reference needs no request: this host does not exist.
	pinned := "registry.invalid/512vm:qcow2@" + testDigest
	if got, err := Resolve(ctx, pinned); err != nil || got != "registry.invalid/512vm@"+testDigest {
		t.Errorf("Resolve(%q) = %q, %v", pinned, got, err)
	}

	if _, err := Resolve(ctx, "Not A Reference"); !errors.Is(err, ErrImage) {
		t.Errorf("bad reference: error %v, want ErrImage", err)
	}
}

// TestDataVolumeURLAcceptedByContainersImage checks the DataVolume's
// registry URL with skopeo, which uses containers/image as CDI's importer
// does: the pinned URL finds the image, and the tag@digest form that
// PinnedImage avoids is refused.
func TestDataVolumeURLAcceptedByContainersImage(t *testing.T) {
	skopeo := tooltest.Require(t, "skopeo", tooltest.Skopeo)
	host, digest := testRegistry(t)
	ref := host + "/512vm:qcow2@" + digest

	obj, err := Object(Options{Kind: DataVolume, Image: ref})
	if err != nil {
		t.Fatal(err)
	}
	url := *obj.(*cdiv1.DataVolume).Spec.Source.Registry.URL
	if want := "docker://" + host + "/512vm@" + digest; url != want {
		t.Fatalf("url %q, want %q", url, want)
	}
	out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "--no-creds", "--raw", url).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", url, err, out)
	}
	if got := "sha256:" + sha256hex(out); got != digest {
		t.Errorf("skopeo fetched manifest %s, want %s", got, digest)
	}
	out, err = exec.Command(skopeo, "inspect", "--tls-verify=false", "--no-creds", "--raw", "docker://"+ref).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "both a tag and digest") {
		t.Errorf("skopeo accepted docker://%s (err %v): PinnedImage's tag stripping may be unnecessary\n%s", ref, err, out)
	}
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
