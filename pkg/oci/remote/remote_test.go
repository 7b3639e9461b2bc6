package remote_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/faultproxy"
	"github.com/tinyvm-oci/tinyvm-oci/internal/registrytest"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/ocitest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

var fast = remote.WithBackoff(ggcr.Backoff{Duration: time.Millisecond, Factor: 2, Steps: 6})

// memRegistry is ggcr's in-process registry on 127.0.0.1.
func memRegistry(t *testing.T) string { return registrytest.Start(t) }

func repo(t *testing.T, host string) name.Repository {
	t.Helper()
	ref, err := remote.ParseReference(host + "/512vm:x")
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context()
}

func images(t *testing.T) ([]oci.File, []oci.Tagged) {
	t.Helper()
	files := ocitest.Files(t, t.TempDir(), build.Options{})
	imgs, err := oci.Images(files)
	if err != nil {
		t.Fatal(err)
	}
	return files, imgs
}

func TestPushPull(t *testing.T) {
	host := memRegistry(t)
	files, imgs := images(t)
	pushed, err := remote.PushTagged(context.Background(), repo(t, host), imgs, fast)
	if err != nil {
		t.Fatal(err)
	}
	if len(pushed) != len(imgs) {
		t.Fatalf("pushed %v", pushed)
	}
	for i, p := range pushed {
		want := host + "/512vm:" + imgs[i].Tag + "@"
		if !strings.HasPrefix(p.String(), want) {
			t.Errorf("%s, want prefix %s", p, want)
		}
		desc, err := ggcr.Head(p.Ref)
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest != p.Digest {
			t.Errorf("%s: registry has %s", p, desc.Digest)
		}
		out := t.TempDir()
		paths, d, err := remote.Pull(context.Background(), p.Ref, out, fast)
		if err != nil {
			t.Fatal(err)
		}
		if d != p.Digest {
			t.Errorf("pulled %s, pushed %s", d, p.Digest)
		}
		want1 := files
		if imgs[i].Tag != oci.ArtifactTag {
			want1 = files[i : i+1]
		}
		if len(paths) != len(want1) {
			t.Fatalf("%s: pulled %v", p, paths)
		}
		for j, f := range want1 {
			if filepath.Base(paths[j]) != f.Format.FileName() || !sameFile(t, paths[j], f.Path) {
				t.Errorf("%s: %s differs from %s", p, paths[j], f.Path)
			}
		}
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

func TestRetries(t *testing.T) {
	host := memRegistry(t)
	proxy := faultproxy.New(t, host, faultproxy.Options{Share: 0.5, Max: -1, Once: true, Faults: []faultproxy.Fault{faultproxy.Status500, faultproxy.Status429, faultproxy.Reset}})
	_, imgs := images(t)
	pushed, err := remote.PushTagged(context.Background(), repo(t, proxy.Host), imgs, fast)
	if err != nil {
		t.Fatalf("push through a flaky proxy: %v", err)
	}
	if n, failed := proxy.Counts(); failed == 0 {
		t.Fatalf("proxy failed none of %d requests", n)
	}
	for _, p := range pushed {
		ref, _ := name.ParseReference(strings.Replace(p.Ref.String(), proxy.Host, host, 1))
		if d, err := ggcr.Head(ref); err != nil || d.Digest != p.Digest {
			t.Errorf("%s: registry has %v, %v", p, d, err)
		}
	}
}

func TestFailsForever(t *testing.T) {
	for _, f := range []faultproxy.Fault{faultproxy.Status500, faultproxy.Status429, faultproxy.Reset} {
		host := memRegistry(t)
		proxy := faultproxy.New(t, host, faultproxy.Options{Share: 1, Max: -1, Faults: []faultproxy.Fault{f}})
		_, imgs := images(t)
		_, err := remote.PushTagged(context.Background(), repo(t, proxy.Host), imgs, fast)
		var re *remote.Error
		if !errors.As(err, &re) {
			t.Fatalf("fault %d: push succeeded or wrong error: %v", f, err)
		}
		t.Logf("fault %d: %v", f, err)
		if re.Registry != proxy.Host || re.Repository != "512vm" || strings.Contains(err.Error(), "\n") {
			t.Errorf("error does not name registry and repository in one line: %v", err)
		}
		wantKind := map[faultproxy.Fault]string{faultproxy.Status500: remote.ServerError, faultproxy.Status429: remote.RateLimited, faultproxy.Reset: remote.Unreachable}[f]
		if re.Kind != wantKind {
			t.Errorf("kind %q, want %q", re.Kind, wantKind)
		}
		// No tag points at anything: manifests come after their blobs.
		tags, err := ggcr.List(repo(t, host))
		if err == nil && len(tags) > 0 {
			// A tag is fine only if everything it points to is there.
			for _, tag := range tags {
				img, err := ggcr.Image(repo(t, host).Tag(tag))
				if err == nil {
					_, err = img.Layers()
				}
				if err != nil {
					t.Errorf("tag %s written but broken: %v", tag, err)
				}
			}
		}
	}
}

func TestErrorKinds(t *testing.T) {
	deny := func(code int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			io.WriteString(w, `{"errors":[{"code":"X","message":"no"}]}`)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	_, imgs := images(t)
	for _, tc := range []struct {
		host, kind string
	}{
		{deny(http.StatusUnauthorized), remote.Unauthorized},
		{deny(http.StatusForbidden), remote.Denied},
		{closed, remote.Unreachable},
	} {
		_, err := remote.PushTagged(context.Background(), repo(t, tc.host), imgs[:1], fast)
		var re *remote.Error
		if !errors.As(err, &re) || re.Kind != tc.kind {
			t.Errorf("%s: %v, want kind %q", tc.host, err, tc.kind)
			continue
		}
		t.Logf("%v", err)
	}
	ref, err := remote.ParseReference(memRegistry(t) + "/512vm:raw")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = remote.Pull(context.Background(), ref, t.TempDir(), fast)
	var re *remote.Error
	if !errors.As(err, &re) || re.Kind != remote.NotFound {
		t.Errorf("pull of a missing tag: %v, want kind %q", err, remote.NotFound)
	}
}

// recorder is a transport that sees every request and answers none.
type recorder struct {
	mu   sync.Mutex
	urls []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.urls = append(r.urls, req.URL.String())
	r.mu.Unlock()
	return nil, errors.New("no network in tests")
}

// TestPlainHTTPOnlyLoopback checks that a private address, which ggcr
// alone would try over HTTP, gets HTTPS only, unless --insecure. No
// request leaves the process: the base transport records and fails.
func TestPlainHTTPOnlyLoopback(t *testing.T) {
	_, imgs := images(t)
	for _, insecure := range []bool{false, true} {
		rec := &recorder{}
		opts := []remote.Option{fast, remote.WithTransport(rec), remote.WithInsecure(insecure)}
		ref, err := remote.ParseReference("10.1.2.3:5000/512vm:raw", opts...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = remote.Push(context.Background(), []name.Reference{ref}, []oci.Taggable{imgs[0].Image}, opts...)
		if err == nil {
			t.Fatal("push succeeded without a network")
		}
		sawHTTP := false
		for _, u := range rec.urls {
			sawHTTP = sawHTTP || strings.HasPrefix(u, "http:")
		}
		if sawHTTP != insecure {
			t.Errorf("insecure=%v: requests %v", insecure, rec.urls)
		}
		if !insecure && !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("error does not say how to allow HTTP: %v", err)
		}
	}
	for _, h := range []string{"127.0.0.1:5000", "localhost", "localhost:5000", "[::1]:5000", "::1"} {
		if !remote.IsLoopback(h) {
			t.Errorf("IsLoopback(%q) = false", h)
		}
	}
	for _, h := range []string{"10.1.2.3:5000", "192.168.1.1", "ghcr.io", "localhost.example.com"} {
		if remote.IsLoopback(h) {
			t.Errorf("IsLoopback(%q) = true", h)
		}
	}
}

// TestProgressClosed checks that the progress channel is closed on every
// path, so that a reader never hangs.
func TestProgressClosed(t *testing.T) {
	host := memRegistry(t)
	_, imgs := images(t)
	ref, _ := remote.ParseReference(host + "/512vm:raw")
	for _, tc := range []struct {
		name string
		refs []name.Reference
		imgs []oci.Taggable
	}{
		{"pushed", []name.Reference{ref}, []oci.Taggable{imgs[0].Image}},
		{"nothing", nil, nil},
		{"mismatch", []name.Reference{ref}, nil},
		{"duplicate", []name.Reference{ref, ref}, []oci.Taggable{imgs[0].Image, imgs[0].Image}},
	} {
		ch := make(chan v1Update, 100)
		_, err := remote.Push(context.Background(), tc.refs, tc.imgs, fast, remote.WithProgress(ch))
		t.Logf("%s: %v", tc.name, err)
		select {
		case <-drain(ch):
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: progress channel never closed", tc.name)
		}
	}
}

func drain(ch chan v1Update) chan struct{} {
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	return done
}
