package remote

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// What went wrong, as Error.Kind says it.
const (
	Unauthorized = "unauthorized" // 401: no or wrong credentials
	Denied       = "denied"       // 403: credentials lack permission
	NotFound     = "not found"    // 404: no such repository, tag or blob
	Unreachable  = "unreachable"  // no connection, DNS, TLS or timeout
	RateLimited  = "rate limited" // 429 after every retry
	ServerError  = "server error" // 5xx after every retry
	Refused      = "refused"      // the registry rejected the request otherwise
	Stalled      = "stalled"      // no byte moved for the idle timeout
	TimedOut     = "timed out"    // the caller's deadline (pull --timeout) passed
)

// Error is a failed push or pull: which registry, which repository and
// what went wrong, in one line. It never holds credentials: ggcr's errors
// name the method and URL (with secrets redacted), never headers.
type Error struct {
	Registry   string
	Repository string
	// Kind is one of Unauthorized, Denied, NotFound, Unreachable,
	// RateLimited, ServerError, Refused, Stalled, TimedOut, or "" for
	// anything else (bad content, for one: a corrupt layer is not a
	// network fault).
	Kind string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("registry ")
	b.WriteString(e.Registry)
	b.WriteString(", repository ")
	b.WriteString(e.Repository)
	b.WriteString(": ")
	if e.Kind != "" {
		b.WriteString(e.Kind)
		b.WriteString(": ")
	}
	msg := strings.Join(strings.Fields(e.Err.Error()), " ")
	// For a loopback registry ggcr tries HTTPS first, then HTTP; the
	// HTTPS attempt's error says nothing about what went wrong.
	if i := strings.Index(msg, httpsFirst); i >= 0 {
		msg = msg[i+len(httpsFirst):]
	}
	if e.Kind == Stalled {
		msg = strings.Replace(msg, stalledPrefix, "", 1) // the kind says it
	}
	if strings.Contains(msg, httpsAnswer) {
		msg += "; the registry speaks plain HTTP: use --insecure to allow that"
	}
	b.WriteString(redactQueries(msg))
	return b.String()
}

const (
	httpsAnswer = "server gave HTTP response to HTTPS client"
	httpsFirst  = httpsAnswer + "; "
)

// query is a URL's query string. Upload locations carry session state
// (_state=...) and some registries put tokens there: every one is
// redacted, whatever ggcr did or did not redact on its path.
var query = regexp.MustCompile(`\?[^\s"'?]*=[^\s"']*`)

func redactQueries(s string) string { return query.ReplaceAllString(s, "?REDACTED") }

func (e *Error) Unwrap() error { return e.Err }

// wrap turns err into an *Error about ref's repository.
func wrap(ref name.Reference, err error) error {
	if err == nil {
		return nil
	}
	var re *Error
	if errors.As(err, &re) {
		return err
	}
	repo := ref.Context()
	return &Error{Registry: repo.RegistryStr(), Repository: repo.RepositoryStr(), Kind: kind(err), Err: err}
}

func kind(err error) string {
	var se *StalledError
	var ra *RetryAfterError
	switch {
	case errors.As(err, &se):
		return Stalled
	case errors.Is(err, context.DeadlineExceeded):
		// Only the caller's context has a deadline: the transports' own
		// timeouts are net.Errors, and stalls StalledErrors.
		return TimedOut
	case errors.As(err, &ra) && ra.Status == http.StatusTooManyRequests:
		return RateLimited
	case errors.As(err, &ra):
		return ServerError
	case errors.Is(err, oci.ErrTooLarge), errors.Is(err, oci.ErrUnsafe), errors.Is(err, oci.ErrNoDisk),
		errors.Is(err, oci.ErrDigest), errors.Is(err, oci.ErrCorrupt):
		return "" // the content is bad, not the connection
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized:
			return Unauthorized
		case te.StatusCode == http.StatusForbidden:
			return Denied
		case te.StatusCode == http.StatusNotFound:
			return NotFound
		case te.StatusCode == http.StatusTooManyRequests:
			return RateLimited
		case te.StatusCode >= 500:
			return ServerError
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode:
				return Unauthorized
			case transport.DeniedErrorCode:
				return Denied
			case transport.NameUnknownErrorCode, transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode:
				return NotFound
			case transport.TooManyRequestsErrorCode:
				return RateLimited
			}
		}
		return Refused
	}
	var hr *HTTPRefusedError
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ne net.Error
	var oe *net.OpError
	var de *net.DNSError
	switch {
	case errors.As(err, &hr):
		return Refused
	case errors.As(err, &ue), errors.As(err, &he), errors.As(err, &de), errors.As(err, &oe),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return Unreachable
	case errors.As(err, &ne) && ne.Timeout():
		return Unreachable
	case strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "EOF"),
		strings.Contains(err.Error(), httpsAnswer):
		return Unreachable
	}
	return ""
}
