package remote_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/internal/faultproxy"
	"github.com/tinyvm-oci/tinyvm-oci/internal/hostile"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

// idle is the idle timeout of the stall tests: short, so that they end
// quickly, and long enough for a loaded machine to send a byte.
var idle = remote.WithIdleTimeout(time.Second)

// desc describes a blob.
func desc(mt string, b []byte) v1.Descriptor {
	return v1.Descriptor{MediaType: types.MediaType(mt), Size: int64(len(b)), Digest: hostile.Digest(b)}
}

// serveDisk serves a one-layer containerDisk whose layer is gz (the
// compressed bytes) and whose diff_id is the digest of tarBytes (zeros
// when nil, for layers too large to hash), and returns its reference.
// edit may change the manifest first.
func serveDisk(t *testing.T, r *hostile.Registry, tag string, gz, tarBytes []byte, edit func(*v1.Manifest)) name.Reference {
	t.Helper()
	diffID := "sha256:" + strings.Repeat("0", 64)
	if tarBytes != nil {
		diffID = hostile.Digest(tarBytes).String()
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + diffID + `"]}}`)
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        desc(string(types.OCIConfigJSON), cfg),
		Layers:        []v1.Descriptor{desc(string(types.OCILayer), gz)},
	}
	if edit != nil {
		edit(&m)
	}
	r.Blob("vm", m.Config.Digest, hostile.Body{Data: cfg})
	r.Blob("vm", m.Layers[0].Digest, hostile.Body{Data: gz})
	raw, _ := json.Marshal(m)
	r.Manifest("vm", tag, hostile.Body{MediaType: string(types.OCIManifestSchema1), Data: raw})
	return mustRef(t, r.Host+"/vm:"+tag)
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := remote.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// tarOf is a tar stream of the headers, regular files filled with 'x'.
// With end false the two zero blocks are left off.
func tarOf(end bool, hdrs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg && h.Size < 1<<20 {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	if !end {
		tw.Flush()
		return buf.Bytes()
	}
	tw.Close()
	return buf.Bytes()
}

// gzipOf is b gzipped.
func gzipOf(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// countingTransport counts the response body bytes the client reads.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{resp.Body, &c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// pullCtx pulls with a generous deadline, so that a regression fails
// instead of hanging the suite.
func pullCtx(t *testing.T, ref name.Reference, opts ...remote.Option) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, _, err := remote.Pull(ctx, ref, t.TempDir(), append([]remote.Option{fast}, opts...)...)
	if ctx.Err() != nil {
		t.Fatalf("pull still running at the deadline: %v", err)
	}
	return err
}

// oneLine checks err is a one-line *remote.Error of kind k saying want.
func oneLine(t *testing.T, err error, k string, want ...string) {
	t.Helper()
	var re *remote.Error
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want a *remote.Error", err)
	}
	if re.Kind != k {
		t.Errorf("kind %q, want %q: %v", re.Kind, k, err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\x1b") {
		t.Errorf("not one clean line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%q lacks %q", msg, w)
		}
	}
	t.Logf("%v", err)
}

// TestStalledBodies: a registry that sends headers and a few bytes, then
// nothing, fails the pull with a "stalled" error naming what was read.
func TestStalledBodies(t *testing.T) {
	r := hostile.Start(t)
	tb := tarOf(true, &tar.Header{Name: "disk/a.raw", Typeflag: tar.TypeReg, Size: 10})
	gz := gzipOf(tb)
	good := serveDisk(t, r, "good", gz, tb, nil)
	if err := pullCtx(t, good, idle); err != nil {
		t.Fatalf("the unstalled image: %v", err)
	}

	// The manifest stalls.
	r.Manifest("vm", "manifest", hostile.Body{MediaType: string(types.OCIManifestSchema1), Data: []byte(`{"schemaVersion":`), Stall: true})
	oneLine(t, pullCtx(t, mustRef(t, r.Host+"/vm:manifest"), idle), remote.Stalled, "stalled: no data for 1s during manifest manifest")

	// The layer stalls after its first bytes.
	stalled := serveDisk(t, r, "layer", gz, tb, nil)
	var m v1.Manifest
	json.Unmarshal(mustGet(t, "http://"+r.Host+"/v2/vm/manifests/layer"), &m)
	r.Blob("vm", m.Layers[0].Digest, hostile.Body{Data: gz[:20], Stall: true})
	oneLine(t, pullCtx(t, stalled, idle), remote.Stalled, "stalled: ", "blob "+m.Layers[0].Digest.String())

	// The config stalls.
	r.Blob("vm", m.Config.Digest, hostile.Body{Data: []byte(`{"arch`), Stall: true})
	oneLine(t, pullCtx(t, stalled, idle), remote.Stalled, "stalled: ", "blob "+m.Config.Digest.String())
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHugeManifestAndConfig: manifests and configs over 4 MiB are refused
// without reading them: a 3 GiB config is never downloaded.
func TestHugeManifestAndConfig(t *testing.T) {
	r := hostile.Start(t)
	r.Manifest("vm", "huge", hostile.Body{MediaType: string(types.OCIManifestSchema1), Data: []byte(`{"schemaVersion":2,"x":"`), Length: 6 << 20})
	var ct countingTransport
	err := pullCtx(t, mustRef(t, r.Host+"/vm:huge"), remote.WithTransport(&ct))
	oneLine(t, err, "", "manifest", "over the 4 MiB limit")
	if n := ct.n.Load(); n > 4<<20+64<<10 {
		t.Errorf("read %d bytes of a 6 MiB manifest", n)
	}

	tb := tarOf(true, &tar.Header{Name: "disk/a.raw", Typeflag: tar.TypeReg, Size: 10})
	gz := gzipOf(tb)
	var cfg v1.Hash
	ref := serveDisk(t, r, "bigconfig", gz, tb, func(m *v1.Manifest) {
		m.Config.Size = 3 << 30
		cfg = m.Config.Digest
	})
	r.Blob("vm", cfg, hostile.Body{Data: []byte("{"), Length: 3 << 30})
	err = pullCtx(t, ref)
	if !errors.Is(err, oci.ErrTooLarge) || !strings.Contains(err.Error(), "config") {
		t.Errorf("3 GiB config: %v, want oci.ErrTooLarge about the config", err)
	}
	if n := r.Served("vm", cfg); n != 0 {
		t.Errorf("the registry sent %d bytes of the 3 GiB config", n)
	}
}

// TestZipBombs: a small gzip layer that inflates to 10 GiB of zeros, after
// the tar's end or inside a file outside disk/, is stopped near the size
// limit.
func TestZipBombs(t *testing.T) {
	r := hostile.Start(t)
	const zeros = 10 << 10 // MiB: 10 GiB
	for name, prefix := range map[string][]byte{
		"after-end":   tarOf(true, &tar.Header{Name: "disk/a.raw", Typeflag: tar.TypeReg, Size: 10}),
		"outside":     tarOf(false, &tar.Header{Name: "disk/a.raw", Typeflag: tar.TypeReg, Size: 10}, &tar.Header{Name: "junk", Typeflag: tar.TypeReg, Size: zeros << 20}),
		"only-zeros":  nil,
		"before-disk": tarOf(false, &tar.Header{Name: "junk", Typeflag: tar.TypeReg, Size: zeros << 20}),
	} {
		t.Run(name, func(t *testing.T) {
			ref := serveDisk(t, r, name, hostile.GzipBomb(prefix, zeros), nil, nil)
			var ct countingTransport
			err := pullCtx(t, ref, remote.WithMaxSize(16<<20), remote.WithTransport(&ct))
			if !errors.Is(err, oci.ErrTooLarge) {
				t.Errorf("got %v, want oci.ErrTooLarge", err)
			}
			t.Logf("%v", err)
			// About 1 KiB per inflated MiB: the bound, 17 MiB, is some
			// 17 KiB of the 10 MiB bomb; its compressed size is under
			// the bound, so only the inflated bytes stop it.
			if n := ct.n.Load(); n > 1<<20 {
				t.Errorf("read %d compressed bytes", n)
			}
		})
	}
}

// TestControlCharacterTitles: artifact titles with terminal escapes or
// newlines are refused, quoted.
func TestControlCharacterTitles(t *testing.T) {
	r := hostile.Start(t)
	for i, title := range []string{"evil\x1b[2J.raw", "a\nb.raw", "bell\a", "c1\u009b31m"} {
		data := []byte("disk")
		m := v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			ArtifactType:  oci.ArtifactType,
			Config:        desc(string(oci.EmptyMediaType), []byte("{}")),
			Layers:        []v1.Descriptor{desc("application/vnd.tinyvm-oci.disk.raw", data)},
		}
		m.Layers[0].Annotations = map[string]string{oci.AnnotationTitle: title}
		r.Blob("vm", m.Config.Digest, hostile.Body{Data: []byte("{}")})
		r.Blob("vm", m.Layers[0].Digest, hostile.Body{Data: data})
		raw, _ := json.Marshal(m)
		tag := fmt.Sprint("t", i)
		r.Manifest("vm", tag, hostile.Body{MediaType: string(types.OCIManifestSchema1), Data: raw})
		err := pullCtx(t, mustRef(t, r.Host+"/vm:"+tag))
		if !errors.Is(err, oci.ErrUnsafe) {
			t.Errorf("%q: %v, want oci.ErrUnsafe", title, err)
			continue
		}
		oneLine(t, err, "", strconv.Quote(title))
	}
}

// TestHTTPAnswersHTTPS: a registry that answers plain HTTP to an HTTPS
// request gets an error that says how to allow HTTP.
func TestHTTPAnswersHTTPS(t *testing.T) {
	r := hostile.Start(t)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, r.Host) // every name is the hostile registry
	}}
	ref := mustRef(t, "registry.example:5000/vm:raw")
	err := pullCtx(t, ref, remote.WithTransport(tr))
	oneLine(t, err, remote.Unreachable, "plain HTTP", "--insecure")
}

// TestRetryAfter: a 429 or 503 with Retry-After is retried no sooner than
// asked; a Retry-After beyond the bound fails at once, saying so.
func TestRetryAfter(t *testing.T) {
	r := hostile.Start(t)
	tb := tarOf(true, &tar.Header{Name: "disk/a.raw", Typeflag: tar.TypeReg, Size: 10})
	gz := gzipOf(tb)
	for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		tag := fmt.Sprint("busy", code)
		ref := serveDisk(t, r, tag, gz, tb, nil)
		raw := mustGet(t, "http://"+r.Host+"/v2/vm/manifests/"+tag)
		r.Manifest("vm", tag, hostile.Body{MediaType: string(types.OCIManifestSchema1), Data: raw, Status: code, RetryAfter: "1", Times: 2})
		start := time.Now()
		if err := pullCtx(t, ref); err != nil {
			t.Fatalf("%d twice, then the image: %v", code, err)
		}
		// A lower bound, not a speed limit: two waits of one second.
		if waited := time.Since(start); waited < 2*time.Second {
			t.Errorf("%d with Retry-After 1, twice: pulled after %v", code, waited)
		}
		if hits := r.Hits("/v2/vm/manifests/" + tag); hits != 3 {
			t.Errorf("%d: %d manifest requests, want 3", code, hits)
		}

		long := fmt.Sprint("long", code)
		r.Manifest("vm", long, hostile.Body{Data: raw, Status: code, RetryAfter: "3600"})
		kind := map[int]string{http.StatusTooManyRequests: remote.RateLimited, http.StatusServiceUnavailable: remote.ServerError}[code]
		oneLine(t, pullCtx(t, mustRef(t, r.Host+"/vm:"+long)), kind, "Retry-After", "1h0m0s")
		if hits := r.Hits("/v2/vm/manifests/" + long); hits != 1 {
			t.Errorf("%d with Retry-After 3600: %d requests, want 1", code, hits)
		}
	}
}

// TestRetryAfterBudget: the waits of one pull add up to at most the
// limit; the answer that would pass it fails at once.
func TestRetryAfterBudget(t *testing.T) {
	r := hostile.Start(t)
	r.Manifest("vm", "busy", hostile.Body{Data: []byte("{}"), Status: http.StatusTooManyRequests, RetryAfter: "1"})
	err := pullCtx(t, mustRef(t, r.Host+"/vm:busy"), remote.WithRetryAfterLimit(1500*time.Millisecond))
	oneLine(t, err, remote.RateLimited, "Retry-After 1s", "500ms left")
	if hits := r.Hits("/v2/vm/manifests/busy"); hits != 2 {
		t.Errorf("%d requests, want 2: one waited out, one over the budget", hits)
	}
}

// TestStalledHeadersRetried: a manifest request that gets no answer at
// all fails after the idle timeout and is retried.
func TestStalledHeadersRetried(t *testing.T) {
	host := memRegistry(t)
	_, imgs := images(t)
	if _, err := remote.PushTagged(context.Background(), repo(t, host), imgs[:1], fast); err != nil {
		t.Fatal(err)
	}
	getManifest := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/")
	}
	proxy := faultproxy.New(t, host, faultproxy.Options{Share: 1, Max: 1, Match: getManifest, Faults: []faultproxy.Fault{faultproxy.Stall}})
	if err := pullCtx(t, mustRef(t, proxy.Host+"/512vm:"+imgs[0].Tag), idle); err != nil {
		t.Fatalf("pull with one stalled manifest request: %v", err)
	}
	if _, failed := proxy.Counts(); failed != 1 {
		t.Errorf("the proxy stalled %d requests, want 1", failed)
	}
}
