package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// gcLine is one line of GODEBUG=gctrace=1: a finished collection.
var gcLine = regexp.MustCompile(`(?m)^gc \d+ @`)

// TestBuildDoesNotCollect: the real binary builds everything at the
// default size without a garbage collection (internal/gcstart), and a
// GOGC the user set takes that away again (the default collector runs
// three times on the same build).
func TestBuildDoesNotCollect(t *testing.T) {
	bin := binary(t)
	for _, c := range []struct {
		env  string
		want func(n int) bool
		what string
	}{
		{"", func(n int) bool { return n == 0 }, "no collection"},
		{"GOGC=100", func(n int) bool { return n > 0 }, "the default collector"},
	} {
		out := filepath.Join(t.TempDir(), "dist")
		cmd := exec.Command(bin, "build", "-q", "-o", out)
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); k != "GOGC" && k != "GOMEMLIMIT" && k != "GODEBUG" {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "GODEBUG=gctrace=1")
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("build (%q): %v\n%s", c.env, err, stderr.String())
		}
		if _, err := os.Stat(filepath.Join(out, "oci", "index.json")); err != nil {
			t.Fatalf("build (%q) wrote no layout: %v", c.env, err)
		}
		if n := len(gcLine.FindAllString(stderr.String(), -1)); !c.want(n) {
			t.Errorf("build with %q in the environment collected %d times, want %s", c.env, n, c.what)
		}
	}
}
