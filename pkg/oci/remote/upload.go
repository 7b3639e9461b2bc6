package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// smallBlob is the largest blob uploaded without first asking whether the
// repository has it. For a config or a containerDisk layer of a few KiB a
// HEAD costs as much as the upload it might save; above this size the
// HEAD is worth its round trip, since the blob may be there from an
// earlier push.
const smallBlob = 1 << 20

// session is one authenticated connection to one repository: a single
// ping and token exchange (ggcr's transport.NewWithContext), then plain
// requests that go through the guard (loopback rule, idle timeout,
// Retry-After). It talks the distribution API directly because ggcr's
// writer spends four requests on every blob (HEAD, POST, PATCH, PUT) and
// a HEAD on every manifest; a session uploads a blob with POST and one
// monolithic PUT, and writes a manifest with one PUT.
type session struct {
	repo    name.Repository
	client  *http.Client
	backoff func() func() (time.Duration, bool)
}

// newSession pings repo's registry and authenticates for pushing to repo
// over rt (the guard), retrying as o says.
func newSession(ctx context.Context, repo name.Repository, rt http.RoundTripper, o options) (*session, error) {
	auth, err := authn.Resolve(ctx, o.keychain, repo)
	if err != nil {
		return nil, err
	}
	if o.userAgent != "" {
		rt = transport.NewUserAgent(rt, o.userAgent)
	}
	s := &session{repo: repo, backoff: o.retries}
	err = s.retry(ctx, func() error {
		t, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, []string{repo.Scope(transport.PushScope)})
		if err != nil {
			return err
		}
		s.client = &http.Client{Transport: t, CheckRedirect: checkRedirect}
		return nil
	})
	return s, err
}

// retry runs op until it succeeds, fails for good (retryable), the tries
// of the backoff run out, or ctx ends. Each try is a whole operation (a
// blob's POST and PUT, a manifest's PUT), since an upload session cannot
// be resumed after a failure.
func (s *session) retry(ctx context.Context, op func() error) error {
	next := s.backoff()
	for {
		err := op()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
		wait, ok := next()
		if !ok {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// retries returns the backoff's waits between tries, one call per retry;
// it reports false when the tries are spent.
func (o options) retries() func() (time.Duration, bool) {
	b := o.backoff
	tries := max(b.Steps, 1)
	return func() (time.Duration, bool) {
		tries--
		if tries <= 0 {
			return 0, false
		}
		return b.Step(), true
	}
}

func (s *session) url(p string) *url.URL {
	return &url.URL{Scheme: s.repo.Scheme(), Host: s.repo.RegistryStr(), Path: "/v2/" + s.repo.RepositoryStr() + p}
}

// do sends req and checks its status against want; the response body is
// read to the end (error bodies into the error) and closed.
func (s *session) do(req *http.Request, want ...int) (*http.Response, error) {
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, want...); err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, errorBodyLimit))
	return resp, nil
}

// has reports whether the repository holds the blob d.
func (s *session) has(ctx context.Context, d v1.Hash) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.url("/blobs/"+d.String()).String(), nil)
	if err != nil {
		return false, err
	}
	resp, err := s.do(req, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return false, err
	}
	return resp.StatusCode == http.StatusOK, nil
}

// upload puts the blob l in the repository: a HEAD first only when it is
// larger than smallBlob, then POST to open an upload and a single PUT
// with the whole blob and its digest (the spec's monolithic upload, which
// every registry implements, unlike the one-request POST ?digest= form).
func (s *session) upload(ctx context.Context, l v1.Layer) error {
	d, err := l.Digest()
	if err != nil {
		return err
	}
	size, err := l.Size()
	if err != nil {
		return err
	}
	return s.retry(ctx, func() error {
		if size > smallBlob {
			if ok, err := s.has(ctx, d); err != nil || ok {
				return err
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url("/blobs/uploads/").String(), nil)
		if err != nil {
			return err
		}
		resp, err := s.do(req, http.StatusAccepted)
		if err != nil {
			return err
		}
		loc, err := location(resp)
		if err != nil {
			return err
		}
		q := loc.Query()
		q.Set("digest", d.String())
		loc.RawQuery = q.Encode()
		body, err := l.Compressed()
		if err != nil {
			return err
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), body)
		if err != nil {
			body.Close()
			return err
		}
		// The transport re-reads the body, from the start, when it must
		// resend on a fresh connection.
		req.GetBody = l.Compressed
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		_, err = s.do(req, http.StatusCreated)
		return err
	})
}

// putManifest writes a manifest or index under ref, a tag or a digest.
func (s *session) putManifest(ctx context.Context, ref string, raw []byte, mt types.MediaType) error {
	return s.retry(ctx, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.url("/manifests/"+ref).String(), bytes.NewReader(raw))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", string(mt))
		_, err = s.do(req, http.StatusOK, http.StatusCreated, http.StatusAccepted)
		return err
	})
}

// location is where an upload continues: the response's Location,
// resolved against the request. A Location on another host that is a
// private, loopback or link-local address is refused, so that a hostile
// registry cannot make the push send its blobs into the local network.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, errors.New("blob upload: the registry gave no Location")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("blob upload: bad Location: %w", err)
	}
	u = resp.Request.URL.ResolveReference(u)
	if err := checkHost(resp.Request.URL, u); err != nil {
		return nil, err
	}
	return u, nil
}

// checkHost refuses a move from the registry to another host that is an
// internal address.
func checkHost(from, to *url.URL) error {
	if to.Hostname() == from.Hostname() {
		return nil
	}
	if ip := net.ParseIP(to.Hostname()); ip != nil && (ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified()) {
		return fmt.Errorf("blob upload: the registry sent the upload to the internal address %s", to.Hostname())
	}
	return nil
}

// checkRedirect applies checkHost to redirects, and stops after ten.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return checkHost(via[len(via)-1].URL, req.URL)
}
