// Package faultproxy puts a fault-injecting reverse proxy on 127.0.0.1 in
// front of a registry: it answers chosen requests with 500, 503 or 429
// (with Retry-After), resets their connections, or stalls them, on a
// schedule drawn from a fixed seed, so that tests of retries and error
// reports do not depend on luck.
package faultproxy

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
	"testing"
)

// Fault is what the proxy does to a request it fails.
type Fault int

// The faults the proxy injects.
const (
	Status500 Fault = iota // answer 500 Internal Server Error
	Status429              // answer 429 Too Many Requests, with Options.RetryAfter
	Reset                  // close the connection without an answer
	Status503              // answer 503 Service Unavailable, with Options.RetryAfter
	Stall                  // never answer: hold the request until the client gives up
)

// Proxy is a loopback reverse proxy in front of a registry that fails
// requests on a schedule.
type Proxy struct {
	// Host is 127.0.0.1:PORT.
	Host string

	o      Options
	mu     sync.Mutex
	rnd    *rand.Rand
	n      int // requests seen
	failed int
	seen   map[string]bool
	log    []string
}

// Options say which requests the proxy fails.
type Options struct {
	// Share of the eligible requests to fail, 0 to 1, drawn from a fixed
	// seed.
	Share float64
	// Max failures in all (< 0: no limit).
	Max int
	// Faults to inject, in turn.
	Faults []Fault
	// Match, when set, makes only the requests it accepts eligible.
	Match func(*http.Request) bool
	// Once fails each kind of request (method and path, upload session
	// ids left out) at most once: transient faults that a retry always
	// gets past, so tests do not depend on luck.
	Once bool
	// RetryAfter is the Retry-After header of 429 and 503 answers
	// (default "0").
	RetryAfter string
}

// New starts a proxy to the registry at target (host:port) that fails
// requests as o says. It stops when the test ends; stalled requests are
// released first.
func New(t testing.TB, target string, o Options) *Proxy {
	t.Helper()
	if len(o.Faults) == 0 {
		o.Faults = []Fault{Status500}
	}
	if o.RetryAfter == "" {
		o.RetryAfter = "0"
	}
	p := &Proxy{o: o, rnd: rand.New(rand.NewPCG(1, 2)), seen: map[string]bool{}}
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	done := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := p.next(r)
		if !ok {
			// The registry builds Location headers from Host; keep the
			// proxy's so that clients come back through it.
			rp.ServeHTTP(w, r)
			return
		}
		switch f {
		case Status500:
			http.Error(w, "injected fault", http.StatusInternalServerError)
		case Status429:
			w.Header().Set("Retry-After", p.o.RetryAfter)
			http.Error(w, "injected rate limit", http.StatusTooManyRequests)
		case Status503:
			w.Header().Set("Retry-After", p.o.RetryAfter)
			http.Error(w, "injected unavailability", http.StatusServiceUnavailable)
		case Stall:
			select {
			case <-r.Context().Done():
			case <-done:
			}
		case Reset:
			hj, ok := w.(http.Hijacker)
			if !ok {
				panic("no hijacker")
			}
			c, _, err := hj.Hijack()
			if err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetLinger(0) // RST, not FIN
				}
				c.Close()
			}
		}
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // runs before srv.Close
	p.Host = l.Addr().String()
	return p
}

var uploadID = regexp.MustCompile(`/blobs/uploads/[^/?]+`)

func (p *Proxy) next(r *http.Request) (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	key := r.Method + " " + uploadID.ReplaceAllString(r.URL.Path, "/blobs/uploads/ID")
	p.log = append(p.log, key)
	if p.o.Match != nil && !p.o.Match(r) {
		return 0, false
	}
	if p.o.Once && p.seen[key] {
		return 0, false
	}
	if p.rnd.Float64() >= p.o.Share || (p.o.Max >= 0 && p.failed >= p.o.Max) {
		return 0, false
	}
	p.seen[key] = true
	f := p.o.Faults[p.failed%len(p.o.Faults)]
	p.failed++
	return f, true
}

// Counts returns how many requests the proxy saw and how many it failed.
func (p *Proxy) Counts() (requests, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, p.failed
}

// Requests returns every request seen so far, in order, as "METHOD PATH"
// with upload session ids replaced by ID.
func (p *Proxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}
