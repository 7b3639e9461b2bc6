package ocitest

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// Fault is what the proxy does to a request it fails.
type Fault int

// The faults the proxy injects.
const (
	Status500 Fault = iota // answer 500 Internal Server Error
	Status429              // answer 429 Too Many Requests
	Reset                  // close the connection without an answer
)

// Proxy is a loopback reverse proxy in front of a registry that fails
// requests on a schedule.
type Proxy struct {
	// Host is 127.0.0.1:PORT.
	Host string

	mu     sync.Mutex
	n      int // requests seen
	failed int
	share  float64 // the share of requests to fail
	rnd    *rand.Rand
	max    int // fail at most this many (-1: no limit)
	faults []Fault
}

// NewProxy starts a proxy to the registry at target (host:port) that fails
// a share of the requests (0 to 1, drawn from a fixed seed), cycling
// through faults, at most max times (max < 0: forever). It stops when the
// test ends.
func NewProxy(t testing.TB, target string, share float64, max int, faults ...Fault) *Proxy {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &Proxy{share: share, rnd: rand.New(rand.NewPCG(1, 2)), max: max, faults: faults}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := p.next(); ok {
			switch f {
			case Status500:
				http.Error(w, "injected fault", http.StatusInternalServerError)
			case Status429:
				w.Header().Set("Retry-After", "0")
				http.Error(w, "injected rate limit", http.StatusTooManyRequests)
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
			return
		}
		// The registry builds Location headers from Host; keep the
		// proxy's so that clients come back through it.
		rp.ServeHTTP(w, r)
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	p.Host = l.Addr().String()
	return p
}

func (p *Proxy) next() (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if p.rnd.Float64() >= p.share || (p.max >= 0 && p.failed >= p.max) {
		return 0, false
	}
	f := p.faults[p.failed%len(p.faults)]
	p.failed++
	return f, true
}

// Counts returns how many requests the proxy saw and how many it failed.
func (p *Proxy) Counts() (requests, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, p.failed
}
