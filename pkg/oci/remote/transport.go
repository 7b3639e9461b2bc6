package remote

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// DefaultIdleTimeout is how long a request may go without a byte moving,
// either way, before it fails as stalled.
const DefaultIdleTimeout = 30 * time.Second

// DefaultRetryAfterLimit is the most one Push or Pull waits, in all, for
// registries that answer 429 or 503 with Retry-After.
const DefaultRetryAfterLimit = time.Minute

// MaxManifestSize is the largest manifest or index read: 4 MiB, the limit
// the distribution registry itself puts on manifests it accepts. ggcr
// alone reads up to 100 MiB into memory.
const MaxManifestSize = 4 << 20

// errorBodyLimit is how much of a 429 or 503 body is kept for the error
// message while the guard waits out a Retry-After.
const errorBodyLimit = 64 << 10

// guard is the innermost transport under ggcr's retries and auth. It
// refuses plain HTTP to registries off loopback unless insecure, fails
// requests that stall, caps manifest bodies, and waits out Retry-After.
type guard struct {
	inner    http.RoundTripper
	insecure bool
	idle     time.Duration
	waits    *budget
}

// budget is the Retry-After time left for one Push or Pull.
type budget struct {
	mu   sync.Mutex
	left time.Duration
}

// take spends d if that much is left.
func (b *budget) take(d time.Duration) (left time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d > b.left {
		return b.left, false
	}
	b.left -= d
	return b.left, true
}

func (g *guard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && !g.insecure && !IsLoopback(r.URL.Host) {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, &HTTPRefusedError{Host: r.URL.Host}
	}
	ctx, cancel := context.WithCancel(r.Context())
	w := &watch{idle: g.idle, cancel: cancel, what: describe(r)}
	w.timer = time.AfterFunc(g.idle, w.fire)
	req := r.WithContext(ctx)
	if r.Body != nil && r.Body != http.NoBody {
		req.Body = &watchedBody{ReadCloser: r.Body, w: w, limit: -1, upload: true}
		if r.GetBody != nil {
			req.GetBody = func() (io.ReadCloser, error) {
				b, err := r.GetBody()
				if err != nil {
					return nil, err
				}
				return &watchedBody{ReadCloser: b, w: w, limit: -1, upload: true}, nil
			}
		}
	}
	resp, err := g.inner.RoundTrip(req)
	if err != nil {
		w.stop()
		if w.stalled() && r.Context().Err() == nil {
			return nil, w.err()
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if wait, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			w.stop()
			return g.waitOut(r, resp, wait)
		}
	}
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") && resp.StatusCode == http.StatusOK {
		if resp.ContentLength > MaxManifestSize {
			resp.Body.Close()
			w.stop()
			return nil, tooLarge(r, resp.ContentLength)
		}
		resp.Body = &watchedBody{ReadCloser: resp.Body, w: w, limit: MaxManifestSize, req: r}
		return resp, nil
	}
	resp.Body = &watchedBody{ReadCloser: resp.Body, w: w, limit: -1}
	return resp, nil
}

// waitOut sleeps for a Retry-After, then hands the answer on, so that
// ggcr's retry, which ignores the header, never comes back sooner than
// asked. A wait beyond the budget fails at once.
func (g *guard) waitOut(r *http.Request, resp *http.Response, wait time.Duration) (*http.Response, error) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	if left, ok := g.waits.take(wait); !ok {
		return nil, &RetryAfterError{Status: resp.StatusCode, Wait: wait, Left: left}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return resp, nil
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n < 0 {
			return 0, true
		}
		return time.Duration(min(n, 1<<32)) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0).Round(time.Second), true
	}
	return 0, false
}

func tooLarge(r *http.Request, n int64) error {
	what := describe(r)
	if n >= 0 {
		return fmt.Errorf("%w: %s is %d bytes, over the %d MiB limit", oci.ErrTooLarge, what, n, MaxManifestSize>>20)
	}
	return fmt.Errorf("%w: %s is over the %d MiB limit", oci.ErrTooLarge, what, MaxManifestSize>>20)
}

// describe names what a request reads or writes, for errors: "manifest
// qcow2", "blob sha256:...", "blob upload".
func describe(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		return "the /v2/ ping"
	case strings.Contains(p, "/blobs/uploads"):
		return "blob upload"
	case strings.Contains(p, "/manifests/"):
		return "manifest " + p[strings.LastIndex(p, "/manifests/")+len("/manifests/"):]
	case strings.Contains(p, "/blobs/"):
		return "blob " + p[strings.LastIndex(p, "/blobs/")+len("/blobs/"):]
	}
	return r.URL.Host + p
}

// watch is one request's idle timer: each byte read from the request or
// the response body restarts it; when it fires the request is cancelled
// and reads fail with a StalledError.
type watch struct {
	idle   time.Duration
	timer  *time.Timer
	cancel context.CancelFunc
	what   string

	mu   sync.Mutex
	gone bool
}

func (w *watch) fire() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.cancel()
}

func (w *watch) stalled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

func (w *watch) stop() {
	w.timer.Stop()
	w.cancel()
}

func (w *watch) err() error { return &StalledError{What: w.what, Idle: w.idle} }

// watchedBody restarts the idle timer on every read, and caps the bytes
// read when limit >= 0. Closing a response body ends the request's watch;
// closing the request body (upload), which the transport does once it is
// sent, does not.
type watchedBody struct {
	io.ReadCloser
	w      *watch
	limit  int64
	n      int64
	req    *http.Request
	upload bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.w.stalled() {
		return 0, b.w.err()
	}
	b.w.timer.Reset(b.w.idle)
	if b.limit >= 0 && int64(len(p)) > b.limit-b.n+1 {
		p = p[:b.limit-b.n+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if b.limit >= 0 && b.n > b.limit {
		return n, tooLarge(b.req, -1)
	}
	if err != nil && b.w.stalled() {
		return n, b.w.err()
	}
	if err == io.EOF && !b.upload {
		b.w.timer.Stop()
	}
	return n, err
}

func (b *watchedBody) Close() error {
	if !b.upload {
		b.w.stop()
	}
	return b.ReadCloser.Close()
}

// StalledError is a request during which no byte moved for the idle
// timeout.
type StalledError struct {
	What string        // "manifest qcow2", "blob sha256:...", "blob upload"
	Idle time.Duration // the idle timeout
}

func (e *StalledError) Error() string {
	return fmt.Sprintf("%sno data for %v during %s", stalledPrefix, e.Idle, e.What)
}

const stalledPrefix = "registry stalled: "

// Timeout reports true: a stall is a timeout, and retried as one.
func (e *StalledError) Timeout() bool { return true }

// Temporary reports true, so that retries try again.
func (e *StalledError) Temporary() bool { return true }

// RetryAfterError is a 429 or 503 whose Retry-After asks for a longer
// wait than the Retry-After budget has left.
type RetryAfterError struct {
	Status int
	Wait   time.Duration // what the registry asked for
	Left   time.Duration // what the budget had left
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%d %s with Retry-After %v, longer than the %v left to wait", e.Status, http.StatusText(e.Status), e.Wait, e.Left)
}

// HTTPRefusedError is a plain HTTP request to a registry that is not on
// loopback, without --insecure.
type HTTPRefusedError struct{ Host string }

func (e *HTTPRefusedError) Error() string {
	return fmt.Sprintf("plain HTTP to %s refused: only loopback registries use HTTP without --insecure", e.Host)
}
