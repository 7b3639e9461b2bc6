package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/faultproxy"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
)

// maxPushAllRequests bounds the HTTP requests of `push --all` of the
// default build to a fresh repository. With ggcr's writer (HEAD, POST,
// PATCH, PUT per blob, HEAD and PUT per manifest) it was over 150; oras
// push of the disks directory plus crane push of every other tag take 160
// (bench/push.sh measures them in the same run). Now it is 78: 1 ping,
// POST and PUT for each of 26 blobs (none over 1 MiB, so no HEAD), and a
// PUT for each of 25 manifests (7 containerDisk indexes and the VM
// artifact with two entries each, and the disks artifact).
const maxPushAllRequests = 80

// TestPushAllRequests counts the requests of push --all through a logging
// proxy in front of Debian's docker-registry, which must accept every
// upload; skopeo and crane then read every tag back.
func TestPushAllRequests(t *testing.T) {
	skopeo := tooltest.Require(t, "skopeo", tooltest.Skopeo)
	crane := tooltest.Require(t, "crane", craneHint)
	reg := ocitest.StartRegistry(t, ocitest.RegistryOptions{})
	proxy := faultproxy.New(t, reg.Host, faultproxy.Options{Share: 0, Max: 0})

	lines := pushAll(t, proxy.Host)
	reqs := proxy.Requests()
	t.Logf("push --all: %d requests", len(reqs))
	if len(reqs) >= maxPushAllRequests {
		t.Errorf("push --all made %d requests, want fewer than %d:\n%s", len(reqs), maxPushAllRequests, strings.Join(reqs, "\n"))
	}
	var pings, heads, patches, posts, puts int
	for _, r := range reqs {
		switch {
		case strings.HasSuffix(r, " /v2/"):
			pings++
		case strings.HasPrefix(r, "HEAD ") && strings.Contains(r, "/manifests/"):
			heads++
		case strings.HasPrefix(r, "PATCH "):
			patches++
		case strings.HasPrefix(r, "POST ") && strings.Contains(r, "/blobs/uploads/"):
			posts++
		case strings.HasPrefix(r, "PUT ") && strings.Contains(r, "/blobs/uploads/"):
			puts++
		}
	}
	// One ping, no manifest HEAD, and every upload monolithic: its POST
	// and a single PUT.
	if pings != 1 || heads != 0 || patches != 0 || posts != puts {
		t.Errorf("%d pings, %d manifest HEADs, %d PATCHes, %d POSTs for %d PUTs; want 1, 0, 0 and as many POSTs as PUTs:\n%s",
			pings, heads, patches, posts, puts, strings.Join(reqs, "\n"))
	}

	for _, line := range lines {
		ref := strings.Replace(line[:strings.Index(line, "@")], proxy.Host, reg.Host, 1)
		digest := line[strings.Index(line, "@")+1:]
		runTool(t, crane, "validate", "--remote", ref)
		if got := strings.TrimSpace(runTool(t, crane, "digest", ref)); got != digest {
			t.Errorf("crane digest %s = %s, push said %s", ref, got, digest)
		}
		out := runTool(t, skopeo, "inspect", "--tls-verify=false", "--raw", "docker://"+ref)
		if !strings.Contains(out, `"schemaVersion":2`) {
			t.Errorf("skopeo inspect --raw %s: %s", ref, out)
		}
	}
}

// uploadData matches the requests that carry a blob's bytes: a PATCH, or
// the PUT that ends an upload (push sends small blobs in that PUT alone).
func uploadData(r *http.Request) bool {
	return r.Method == http.MethodPatch || r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
}
