package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// TestInstallFromClone does what the README's Install and Quick start tell
// a newcomer: go install from the clone into an empty GOBIN, then run the
// documented lines from a shell whose PATH has that binary and the system
// directories only (no Go toolchain, no test binary).
func TestInstallFromClone(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem) // the Quick start boots the VM
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	gobin := t.TempDir()
	install := exec.Command("go", "install", "./cmd/tinyvm-oci")
	install.Dir = root
	// A newcomer's default: -buildvcs=auto (this machine's go env says false), so the toolchain
	// stamps the VCS revision that version prints.
	install.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-buildvcs=auto")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install ./cmd/tinyvm-oci: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(gobin, "tinyvm-oci")); err != nil {
		t.Fatalf("go install did not write $GOBIN/tinyvm-oci: %v", err)
	}

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(readme, []byte("## Install"))
	end := bytes.Index(readme, []byte("## What the VM does"))
	if start < 0 || end < start {
		t.Fatal("README has no Install and Quick start sections before What the VM does")
	}
	section := filepath.Join(t.TempDir(), "quickstart.md")
	if err := os.WriteFile(section, readme[start:end], 0o644); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	ran := 0
	var versionOut string
	for _, line := range docLines(t, section) {
		if strings.HasPrefix(line, "go ") || strings.HasPrefix(line, "export ") {
			continue // the install above; a shell of its own has no use for export
		}
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", line)
		cmd.Dir = work
		cmd.Env = []string{"PATH=" + gobin + ":/usr/local/bin:/usr/bin:/bin", "HOME=" + work}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", line, err, out)
		}
		if strings.HasPrefix(line, "tinyvm-oci version") {
			versionOut = string(out)
		}
		ran++
	}
	if ran < 3 {
		t.Fatalf("ran %d README lines, want the version line and the Quick start", ran)
	}
	// The commit comes from the toolchain's VCS stamp in a plain clone (CI's
	// is one); a git worktree's .git is a file, which the toolchain does
	// not stamp from.
	if st, err := os.Stat(filepath.Join(root, ".git")); err != nil || !st.IsDir() {
		t.Logf("not a plain git clone: the commit line is not checked")
	} else if head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
		want := "commit: " + strings.TrimSpace(string(head))
		if !strings.Contains(versionOut, want) {
			t.Errorf("version after go install prints %q, want a line %q", versionOut, want)
		}
	}
}
