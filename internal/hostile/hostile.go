// Package hostile is a registry that misbehaves, for tests of pull: it
// serves manifests and blobs over plain HTTP on 127.0.0.1 and, per path,
// stalls a body, declares and streams a huge one, or answers a status
// with Retry-After a number of times first. GzipBomb makes a small layer
// that inflates to gigabytes.
//
// It speaks only the read side of the distribution API (GET and HEAD of
// /v2/, manifests and blobs), which is all a pull needs.
package hostile

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Body is what the registry answers on one path.
type Body struct {
	// MediaType is the Content-Type.
	MediaType string
	// Data is the body, or its first bytes when Length is larger.
	Data []byte
	// Length, when larger than Data, is the Content-Length announced; the
	// rest of the body is zeros, streamed without being held in memory.
	Length int64
	// Stall, when set, sends Data and then nothing more, holding the
	// connection open until the client gives up or the test ends.
	Stall bool
	// Status, when set, is answered instead of the body the first Times
	// requests (every request when Times is 0), with Retry-After.
	Status     int
	RetryAfter string
	Times      int
}

// Registry is a running hostile registry.
type Registry struct {
	// Host is 127.0.0.1:PORT.
	Host string

	mu     sync.Mutex
	paths  map[string]*entry
	served map[string]int64
	done   chan struct{}
}

type entry struct {
	Body
	hits int
}

// Start runs a hostile registry until the test ends.
func Start(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{paths: map[string]*entry{}, served: map[string]int64{}, done: make(chan struct{})}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(r.done) }) // releases stalls before srv.Close
	r.Host = l.Addr().String()
	return r
}

// Manifest serves b at /v2/REPO/manifests/REF.
func (r *Registry) Manifest(repo, ref string, b Body) {
	r.set("/v2/"+repo+"/manifests/"+ref, b)
}

// Blob serves b at /v2/REPO/blobs/DIGEST.
func (r *Registry) Blob(repo string, digest v1.Hash, b Body) {
	r.set("/v2/"+repo+"/blobs/"+digest.String(), b)
}

func (r *Registry) set(path string, b Body) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paths[path] = &entry{Body: b}
}

// Served returns how many body bytes the registry has written for the
// blob with this digest, in all requests so far.
func (r *Registry) Served(repo string, digest v1.Hash) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served["/v2/"+repo+"/blobs/"+digest.String()]
}

// Hits returns how many requests reached the manifest or blob path.
func (r *Registry) Hits(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.paths[path]; e != nil {
		return e.hits
	}
	return 0
}

// Image serves every blob of img and its manifest under tag and digest.
func (r *Registry) Image(t testing.TB, repo, tag string, img v1.Image) v1.Hash {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		r.Blob(repo, d, Body{MediaType: "application/octet-stream", Data: b})
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	r.Blob(repo, Digest(cfg), Body{MediaType: "application/octet-stream", Data: cfg})
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	m := Body{MediaType: string(mt), Data: raw}
	r.Manifest(repo, tag, m)
	d := Digest(raw)
	r.Manifest(repo, d.String(), m)
	return d
}

// Digest is the sha256 digest of b.
func Digest(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/v2/" {
		w.WriteHeader(http.StatusOK)
		return
	}
	r.mu.Lock()
	e := r.paths[req.URL.Path]
	if e != nil {
		e.hits++
	}
	var b Body
	hits := 0
	if e != nil {
		b, hits = e.Body, e.hits
	}
	r.mu.Unlock()
	if e == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}`)
		return
	}
	if b.Status != 0 && (b.Times == 0 || hits <= b.Times) {
		if b.RetryAfter != "" {
			w.Header().Set("Retry-After", b.RetryAfter)
		}
		http.Error(w, http.StatusText(b.Status), b.Status)
		return
	}
	size := max(b.Length, int64(len(b.Data)))
	w.Header().Set("Content-Type", b.MediaType)
	if !b.Stall {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	if size == int64(len(b.Data)) && strings.Contains(req.URL.Path, "/manifests/") {
		w.Header().Set("Docker-Content-Digest", Digest(b.Data).String())
	}
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodHead {
		return
	}
	cw := &countWriter{w: w, r: r, path: req.URL.Path}
	if _, err := cw.Write(b.Data); err != nil {
		return
	}
	if b.Stall {
		w.(http.Flusher).Flush()
		select {
		case <-req.Context().Done():
		case <-r.done:
		}
		return
	}
	io.Copy(cw, io.LimitReader(zeros{}, size-int64(len(b.Data))))
}

type countWriter struct {
	w    io.Writer
	r    *Registry
	path string
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.r.mu.Lock()
	c.r.served[c.path] += int64(n)
	c.r.mu.Unlock()
	return n, err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// GzipBomb returns a gzip stream that inflates to prefix, 64 KiB of zeros
// and zeroMiB MiB more: about 1 KiB per MiB, so 10 GiB of zeros fit in
// about 10 MiB. The 1 MiB deflate segment is made once and repeated (its
// back references reach only into zeros). The trailer's CRC and size are
// left zero, so a reader that inflates everything fails only at the end,
// after all the work a bound should have stopped.
func GzipBomb(prefix []byte, zeroMiB int) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(prefix)
	zw.Write(make([]byte, 64<<10)) // a window of zeros behind every segment
	zw.Flush()
	start := buf.Len()
	zw.Write(make([]byte, 1<<20))
	zw.Flush()
	seg := bytes.Clone(buf.Bytes()[start:])
	head := bytes.Clone(buf.Bytes()[:start])
	buf.Reset()
	zw.Close() // the final empty block and the trailer
	tail := bytes.Clone(buf.Bytes())
	clear(tail[len(tail)-8:])
	out := bytes.NewBuffer(head)
	out.Grow(len(seg)*zeroMiB + len(tail))
	for range zeroMiB {
		out.Write(seg)
	}
	out.Write(tail)
	return out.Bytes()
}
