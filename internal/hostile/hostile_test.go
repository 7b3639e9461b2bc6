package hostile

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"testing"
)

// TestGzipBomb inflates a small bomb with the standard library: the
// prefix, then exactly the zeros promised, then a checksum error.
func TestGzipBomb(t *testing.T) {
	prefix := []byte("tar header here")
	b := GzipBomb(prefix, 8)
	if len(b) > 64<<10 {
		t.Errorf("8 MiB of zeros took %d compressed bytes", len(b))
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, len(prefix))
	if _, err := io.ReadFull(zr, head); err != nil || !bytes.Equal(head, prefix) {
		t.Fatalf("prefix %q, %v", head, err)
	}
	var nonzero int64
	n, err := io.Copy(writerFunc(func(p []byte) (int, error) {
		for _, c := range p {
			if c != 0 {
				nonzero++
			}
		}
		return len(p), nil
	}), zr)
	if want := int64(64<<10 + 8<<20); n != want || nonzero != 0 {
		t.Errorf("inflated %d bytes (%d not zero), want %d zeros", n, nonzero, want)
	}
	if !errors.Is(err, gzip.ErrChecksum) {
		t.Errorf("end of the bomb: %v, want a checksum error", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestRegistry serves a blob, a long body of zeros, and a status with
// Retry-After for the first request only.
func TestRegistry(t *testing.T) {
	r := Start(t)
	d := Digest([]byte("hello"))
	r.Blob("x", d, Body{Data: []byte("hello"), Length: 1 << 20})
	r.Manifest("x", "busy", Body{Data: []byte("{}"), Status: http.StatusTooManyRequests, RetryAfter: "7", Times: 1})
	resp, err := http.Get("http://" + r.Host + "/v2/x/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 1<<20 || string(b[:5]) != "hello" || r.Served("x", d) != 1<<20 {
		t.Errorf("blob: %d bytes, %q..., served %d", len(b), b[:5], r.Served("x", d))
	}
	for i, want := range []int{http.StatusTooManyRequests, http.StatusOK} {
		resp, err := http.Get("http://" + r.Host + "/v2/x/manifests/busy")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || (i == 0 && resp.Header.Get("Retry-After") != "7") {
			t.Errorf("request %d: %s, Retry-After %q", i, resp.Status, resp.Header.Get("Retry-After"))
		}
	}
}
