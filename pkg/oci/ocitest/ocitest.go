// Package ocitest helps tests of package oci and the CLI: it builds disk
// files, runs Debian's docker-registry (the CNCF distribution registry) on
// a free loopback port. The fault proxy is internal/faultproxy and the
// hostile registry internal/hostile.
package ocitest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// Files builds the default disk in every format into dir with pkg/build
// and returns them as oci.Files.
func Files(t testing.TB, dir string, o build.Options) []oci.File {
	t.Helper()
	res, err := build.Files(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	files := make([]oci.File, len(res.Files))
	for i, f := range res.Files {
		files[i] = oci.File{Path: f.Path, Format: f.Format}
	}
	return files
}

// Registry is a running docker-registry.
type Registry struct {
	// Host is 127.0.0.1:PORT.
	Host string
	// Dir is the storage root.
	Dir string
	log *bytes.Buffer
}

// RegistryOptions configure StartRegistry.
type RegistryOptions struct {
	// Htpasswd, when set, is an htpasswd file: the registry then requires
	// basic auth.
	Htpasswd string
}

// StartRegistry runs /usr/bin/docker-registry with filesystem storage in a
// temp directory on a free 127.0.0.1 port, waits until it answers, and
// stops it when the test ends. It skips (or fails under
// TINYVM_REQUIRE_TOOLS=1) when docker-registry is not installed.
func StartRegistry(t testing.TB, o RegistryOptions) *Registry {
	t.Helper()
	bin := tooltest.Require(t, "docker-registry", tooltest.Registry)
	dir := t.TempDir()
	port := freePort(t)
	host := fmt.Sprintf("127.0.0.1:%d", port)
	auth := ""
	if o.Htpasswd != "" {
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: tinyvm-oci-test\n    path: %s\n", o.Htpasswd)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "storage"), host, auth)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &Registry{Host: host, Dir: dir, log: &bytes.Buffer{}}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("docker-registry log:\n%s", r.log)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		select {
		case <-done:
			t.Fatalf("docker-registry exited: %s", r.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not answer on %s: %v\n%s", host, err, r.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
