// Package remote pushes the images of package oci to registries and pulls
// disk files back: pulls with go-containerregistry's pkg/v1/remote, pushes
// with requests of its own on ggcr's authenticating transport, which take
// half as many round trips (see Push).
//
// It adds what the tinyvm-oci CLI promises on top of ggcr's defaults:
//   - auth from the docker config and credential helpers plus GITHUB_TOKEN
//     for ghcr.io, in one multi-keychain;
//   - plain HTTP only to loopback registries (127.0.0.1, localhost, [::1])
//     unless WithInsecure: ggcr alone would also fall back to HTTP for
//     private (RFC 1918) addresses;
//   - retries with exponential backoff on 5xx, 429, resets and timeouts,
//     waiting out Retry-After within a bound (WithRetryAfterLimit);
//   - an idle timeout on every request (WithIdleTimeout): a registry that
//     stops sending or reading fails as stalled instead of hanging;
//   - manifests capped at MaxManifestSize, and the limits of oci.Extract;
//   - pushes that upload every blob before any manifest and report the
//     tags written when they fail (PartialError);
//   - errors of one line naming the registry, the repository and what went
//     wrong (see Error), with every URL query redacted.
package remote

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/authn/github"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// Option changes how Push and Pull talk to registries.
type Option func(*options)

type options struct {
	insecure  bool
	keychain  authn.Keychain
	backoff   ggcr.Backoff
	transport http.RoundTripper
	progress  chan<- v1.Update
	userAgent string
	jobs      int
	maxSize   int64
	idle      time.Duration
	// retryAfterLimit is the most all Retry-After waits of one call add up to.
	retryAfterLimit time.Duration
}

// DefaultBackoff is the retry schedule: 5 tries, waiting 1, 2, 4 and 8
// seconds (±10%) between them.
var DefaultBackoff = ggcr.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 5}

// retryStatus are the HTTP statuses retried: timeouts, rate limits and
// server errors.
var retryStatus = []int{
	http.StatusRequestTimeout,
	http.StatusTooManyRequests,
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusGatewayTimeout,
}

func makeOptions(opts []Option) options {
	o := options{
		keychain:  authn.NewMultiKeychain(authn.DefaultKeychain, github.Keychain),
		backoff:   DefaultBackoff,
		userAgent: "tinyvm-oci",
		jobs:      4,
		maxSize:   oci.DefaultMaxSize,
		idle:      DefaultIdleTimeout,

		retryAfterLimit: DefaultRetryAfterLimit,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithInsecure allows plain HTTP and unverified TLS to any registry, not
// only loopback ones.
func WithInsecure(b bool) Option { return func(o *options) { o.insecure = b } }

// WithKeychain replaces the default keychain (docker config, credential
// helpers, GITHUB_TOKEN for ghcr.io).
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithBackoff replaces DefaultBackoff.
func WithBackoff(b ggcr.Backoff) Option { return func(o *options) { o.backoff = b } }

// WithTransport replaces the base HTTP transport. The loopback rule still
// applies on top of it.
func WithTransport(t http.RoundTripper) Option { return func(o *options) { o.transport = t } }

// WithProgress sends upload progress to ch, one update per blob uploaded,
// and closes ch when the push ends. Give it a buffer.
func WithProgress(ch chan<- v1.Update) Option { return func(o *options) { o.progress = ch } }

// WithUserAgent sets the User-Agent's product (default "tinyvm-oci").
func WithUserAgent(s string) Option { return func(o *options) { o.userAgent = s } }

// WithJobs sets how many blobs upload at once (default 4).
func WithJobs(n int) Option { return func(o *options) { o.jobs = n } }

// WithMaxSize limits each file Pull writes (default oci.DefaultMaxSize).
func WithMaxSize(n int64) Option { return func(o *options) { o.maxSize = n } }

// WithIdleTimeout fails a request as stalled when no byte moves, up or
// down, for d (default DefaultIdleTimeout).
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idle = d } }

// WithRetryAfterLimit bounds the total time one Push or Pull waits for
// Retry-After answers (default DefaultRetryAfterLimit). A Retry-After
// beyond what is left fails at once.
func WithRetryAfterLimit(d time.Duration) Option { return func(o *options) { o.retryAfterLimit = d } }

// ErrCredentials is a reference with user:password@ in it. Its message
// never repeats the reference, which holds the secret.
var ErrCredentials = errors.New("a reference must not hold credentials (user:password@): use docker login or a credential helper")

// ParseReference parses a reference such as 127.0.0.1:5000/512vm:qcow2.
// Loopback registries, and every registry WithInsecure, may be reached
// over plain HTTP. It refuses credentials in the reference (without
// repeating them), a scheme, and a port outside 1-65535.
func ParseReference(s string, opts ...Option) (name.Reference, error) {
	o := makeOptions(opts)
	if err := CheckReference(s); err != nil {
		return nil, err
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, fmt.Errorf("bad reference %q: %w", s, err)
	}
	if o.insecure || IsLoopback(ref.Context().RegistryStr()) {
		return name.ParseReference(s, name.Insecure)
	}
	return ref, nil
}

// CheckReference refuses what ggcr would accept or echo back: a user and
// password before the host (ErrCredentials, whose message does not repeat
// them), a URL scheme, a port out of range. ParseReference calls it;
// callers that show a reference in their own errors call it first.
func CheckReference(s string) error {
	if strings.Contains(s, "://") {
		return errors.New("bad reference: write HOST/REPOSITORY[:TAG], without a scheme such as https://")
	}
	host, _, _ := strings.Cut(s, "/")
	if strings.Contains(host, "@") {
		return ErrCredentials
	}
	if _, port, err := net.SplitHostPort(host); err == nil && port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad reference %q: port %q is not a number from 1 to 65535", s, port)
		}
	}
	return nil
}

// IsLoopback reports whether host (with or without a port) is
// localhost or a loopback address.
func IsLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// guard returns the innermost transport of one Push or Pull: the base
// transport under the loopback rule, idle timeouts and one Retry-After
// budget.
func (o options) guard() http.RoundTripper {
	base := o.transport
	if base == nil {
		t := ggcr.DefaultTransport.(*http.Transport).Clone()
		if o.insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked with --insecure
		}
		base = t
	}
	return &guard{inner: base, insecure: o.insecure, idle: o.idle, waits: &budget{left: o.retryAfterLimit}}
}

// remoteOptions builds ggcr's options.
func (o options) remoteOptions(ctx context.Context) []ggcr.Option {
	ro := []ggcr.Option{
		ggcr.WithContext(ctx),
		ggcr.WithAuthFromKeychain(o.keychain),
		ggcr.WithTransport(o.guard()),
		ggcr.WithRetryBackoff(o.backoff),
		ggcr.WithRetryStatusCodes(retryStatus...),
		ggcr.WithRetryPredicate(retryable),
		ggcr.WithUserAgent(o.userAgent),
		ggcr.WithJobs(o.jobs),
	}
	if o.progress != nil {
		ro = append(ro, ggcr.WithProgress(o.progress))
	}
	return ro
}

// retryable reports whether a failed request or upload is worth another
// try. It extends ggcr's default predicate with the retried statuses:
// ggcr retries them only at the transport level, and an upload's HEAD or
// POST that got a bodiless 429 would otherwise fail at once.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var hr *HTTPRefusedError
	var ra *RetryAfterError
	if errors.As(err, &hr) || errors.As(err, &ra) || errors.Is(err, oci.ErrTooLarge) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) && slices.Contains(retryStatus, te.StatusCode) {
		return true
	}
	var tmp interface{ Temporary() bool }
	if errors.As(err, &tmp) && tmp.Temporary() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed)
}
