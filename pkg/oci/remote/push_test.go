package remote_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tinyvm-oci/tinyvm-oci/internal/faultproxy"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

// TestBlobsBeforeManifests: no manifest request is made until every blob
// of every image is uploaded, so no tag moves while others are still
// uploading.
func TestBlobsBeforeManifests(t *testing.T) {
	proxy := faultproxy.New(t, memRegistry(t), faultproxy.Options{Share: 0, Max: 0})
	_, imgs := images(t)
	if _, err := remote.PushTagged(context.Background(), repo(t, proxy.Host), imgs, fast); err != nil {
		t.Fatal(err)
	}
	reqs := proxy.Requests()
	t.Logf("%d requests for %d images", len(reqs), len(imgs))
	firstManifest, lastBlob := -1, -1
	for i, r := range reqs {
		if strings.Contains(r, "/manifests/") && firstManifest < 0 {
			firstManifest = i
		}
		if strings.Contains(r, "/blobs/") {
			lastBlob = i
		}
	}
	if firstManifest < 0 || lastBlob < 0 || lastBlob > firstManifest {
		t.Errorf("blob request %d comes after manifest request %d:\n%s", lastBlob, firstManifest, strings.Join(reqs, "\n"))
	}
}

// TestPushReportsWhatWasWritten: with every PUT of the last manifest
// failing, Push returns the tags it wrote, in order, and names the one it
// did not write; the written tags are whole.
func TestPushReportsWhatWasWritten(t *testing.T) {
	host := memRegistry(t)
	putDisks := func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/"+oci.ArtifactTag)
	}
	proxy := faultproxy.New(t, host, faultproxy.Options{Share: 1, Max: -1, Match: putDisks})
	_, imgs := images(t)
	pushed, err := remote.PushTagged(context.Background(), repo(t, proxy.Host), imgs, fast)
	var pe *remote.PartialError
	var re *remote.Error
	if !errors.As(err, &pe) || !errors.As(err, &re) || re.Kind != remote.ServerError {
		t.Fatalf("got %v, want a *remote.PartialError of a server error", err)
	}
	if len(pushed) != len(imgs)-1 || len(pe.NotWritten) != 1 || pe.NotWritten[0].Ref.Identifier() != oci.ArtifactTag {
		t.Fatalf("written %v, not written %v; want all but %s, then %s", pushed, pe.NotWritten, oci.ArtifactTag, oci.ArtifactTag)
	}
	for i, p := range pushed {
		if p.Ref.Identifier() != imgs[i].Tag {
			t.Errorf("written[%d] = %s, want tag %s", i, p, imgs[i].Tag)
		}
		// A containerDisk tag names an index: compare its digest, then
		// read the layers of the entry for ggcr's default platform.
		desc, err := ggcr.Get(repo(t, host).Tag(imgs[i].Tag))
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest != p.Digest {
			t.Errorf("%s: the registry has %s", p, desc.Digest)
		}
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := img.Layers(); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := ggcr.Head(repo(t, host).Tag(oci.ArtifactTag)); err == nil {
		t.Errorf("the tag %s was written", oci.ArtifactTag)
	}
}

// TestStalledUploadRetried: a blob upload's PUT, which carries the data,
// that stalls fails after the idle timeout and is retried; the push
// succeeds.
func TestStalledUploadRetried(t *testing.T) {
	host := memRegistry(t)
	proxy := faultproxy.New(t, host, faultproxy.Options{Share: 1, Max: 1, Match: uploadData, Faults: []faultproxy.Fault{faultproxy.Stall}})
	_, imgs := images(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pushed, err := remote.PushTagged(ctx, repo(t, proxy.Host), imgs[:1], fast, idle)
	if err != nil {
		t.Fatalf("push with one stalled PATCH: %v", err)
	}
	if _, failed := proxy.Counts(); failed != 1 {
		t.Fatalf("the proxy stalled %d requests, want 1", failed)
	}
	ref, _ := name.ParseReference(strings.Replace(pushed[0].Ref.String(), proxy.Host, host, 1))
	if d, err := ggcr.Head(ref); err != nil || d.Digest != pushed[0].Digest {
		t.Errorf("%s: registry has %v, %v", pushed[0], d, err)
	}
}

// TestPushRetryAfter: 503 and 429 with Retry-After 1 on uploads are
// retried no sooner than asked, and the push succeeds.
func TestPushRetryAfter(t *testing.T) {
	host := memRegistry(t)
	uploads := func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/uploads/") }
	proxy := faultproxy.New(t, host, faultproxy.Options{Share: 1, Max: 2, Match: uploads, RetryAfter: "1",
		Faults: []faultproxy.Fault{faultproxy.Status503, faultproxy.Status429}})
	_, imgs := images(t)
	start := time.Now()
	// One upload at a time, so that the two waits cannot overlap.
	if _, err := remote.PushTagged(context.Background(), repo(t, proxy.Host), imgs[:1], fast, remote.WithJobs(1)); err != nil {
		t.Fatal(err)
	}
	// A lower bound, not a speed limit: the two answers each asked for a
	// second, and fast's own backoff is milliseconds.
	if waited := time.Since(start); waited < 2*time.Second {
		t.Errorf("pushed after %v through two Retry-After: 1 answers", waited)
	}
	if _, failed := proxy.Counts(); failed != 2 {
		t.Errorf("the proxy failed %d requests, want 2", failed)
	}
}

// uploadData matches the requests that carry a blob's bytes: a PATCH, or
// the PUT that ends an upload.
func uploadData(r *http.Request) bool {
	return r.Method == http.MethodPatch || r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/")
}

// TestPushAgain: a second push of the same images HEADs the blobs over
// 1 MiB and uploads none of them again; the small ones are uploaded
// again without asking, which costs no more than asking would.
func TestPushAgain(t *testing.T) {
	proxy := faultproxy.New(t, memRegistry(t), faultproxy.Options{Share: 0, Max: 0})
	// Two layers of 2 MiB of random bytes, which no compression shrinks,
	// and their small config.
	big, err := random.Image(2<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, imgs := images(t)
	imgs = append(imgs, oci.Tagged{Tag: "big", Image: big})
	count := func(reqs []string) (heads, puts int) {
		for _, r := range reqs {
			switch {
			case strings.HasPrefix(r, "HEAD ") && strings.Contains(r, "/blobs/sha256:"):
				heads++
			case strings.HasPrefix(r, "PUT ") && strings.Contains(r, "/blobs/uploads/"):
				puts++
			}
		}
		return heads, puts
	}
	if _, err := remote.PushTagged(context.Background(), repo(t, proxy.Host), imgs, fast); err != nil {
		t.Fatal(err)
	}
	first := proxy.Requests()
	if _, err := remote.PushTagged(context.Background(), repo(t, proxy.Host), imgs, fast); err != nil {
		t.Fatal(err)
	}
	second := proxy.Requests()[len(first):]
	h1, p1 := count(first)
	h2, p2 := count(second)
	t.Logf("first push: %d requests, %d blob HEADs, %d uploads; second: %d, %d, %d", len(first), h1, p1, len(second), h2, p2)
	if h1 != 2 || h2 != h1 || p2 != p1-h1 {
		t.Errorf("HEADs %d then %d, uploads %d then %d; want 2 HEADs each time and 2 uploads fewer the second time", h1, h2, p1, p2)
	}
}

// TestUploadLocationInternal: a registry whose upload Location points at
// another host on an internal address (here the cloud metadata address)
// gets no blob sent there; the push fails saying why.
func TestUploadLocationInternal(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		switch {
		case r.URL.Path == "/v2/":
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			w.Header().Set("Location", "http://169.254.169.254/latest/upload")
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	_, imgs := images(t)
	_, err := remote.PushTagged(context.Background(), repo(t, srv.Listener.Addr().String()), imgs[:1], fast)
	if err == nil || !strings.Contains(err.Error(), "internal address 169.254.169.254") {
		t.Fatalf("got %v, want a refusal of the internal address", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range seen {
		if strings.HasPrefix(r, "PUT") {
			t.Errorf("a PUT reached the registry: %v", seen)
		}
	}
}
