package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/registrytest"

	"github.com/spf13/cobra"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// The docs cannot rot: every command line in the README, docs/*.md and
// every command's --help examples is run here, or is a line .ci/run runs
// itself. Placeholder registries become a registry on 127.0.0.1.

// placeholders are the registries the docs show; they map to the test's.
var placeholders = []string{"ghcr.io/acme", "registry.example.com", "registry.example", "127.0.0.1:5000", "localhost:5000"}

// notRunnable are commands that need what no test machine has.
var notRunnable = map[string]string{
	"kubectl": "needs a Kubernetes cluster with KubeVirt and CDI",
	"virtctl": "needs a Kubernetes cluster with KubeVirt",
	// The docs start a registry on 127.0.0.1:5000; the test has its own
	// (and ocitest.StartRegistry runs this same command on a free port).
	"docker-registry": "the test runs its own registry in its place",
}

// docLines returns the command lines of a Markdown file: the lines of sh
// code blocks and the `run:` steps of yaml blocks.
func docLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	block := regexp.MustCompile("(?s)```(sh|yaml)\\n(.*?)```")
	for _, m := range block.FindAllStringSubmatch(string(b), -1) {
		var heredoc []string // a command with a here-document is one line
		for _, l := range strings.Split(m[2], "\n") {
			if heredoc != nil {
				heredoc = append(heredoc, l)
				if strings.TrimSpace(l) == "EOF" {
					lines = append(lines, strings.Join(heredoc, "\n"))
					heredoc = nil
				}
				continue
			}
			if strings.Contains(l, "<<EOF") {
				heredoc = []string{strings.TrimSpace(l)}
				continue
			}
			l = strings.TrimSpace(l)
			if m[1] == "yaml" {
				if !strings.HasPrefix(l, "- run: ") {
					continue
				}
				l = strings.TrimPrefix(l, "- run: ")
			}
			l = strings.TrimPrefix(l, "$ ")
			if i := strings.Index(l, " #"); i >= 0 { // a trailing comment
				l = strings.TrimSpace(l[:i])
			}
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			lines = append(lines, l)
		}
	}
	return lines
}

// exampleLines returns the command lines of every command's Example.
func exampleLines() []string {
	var lines []string
	root := newRootCmd(nil, nil)
	cmds := append([]*cobra.Command{root}, root.Commands()...)
	var pushes []string
	for _, c := range cmds {
		for _, l := range strings.Split(c.Example, "\n") {
			switch l = strings.TrimSpace(l); {
			case strings.HasPrefix(l, "tinyvm-oci push "):
				pushes = append(pushes, l)
			case strings.HasPrefix(l, "tinyvm-oci "):
				lines = append(lines, l)
			}
		}
	}
	// Push first: pull and manifest --resolve read what push wrote.
	return append(pushes, lines...)
}

// docsEnv is a directory with the tinyvm-oci binary on PATH and a
// registry on loopback.
type docsEnv struct {
	bin, host string
	ciRun     string
}

func newDocsEnv(t *testing.T) *docsEnv {
	t.Helper()
	binDir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "tinyvm-oci"), ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	t.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	host := registrytest.Start(t)
	ci, err := os.ReadFile(filepath.Join("..", "..", ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	return &docsEnv{bin: filepath.Join(binDir, "tinyvm-oci"), host: host, ciRun: string(ci)}
}

// rewrite points a line at the test registry, adding the plain-HTTP flag
// the other clients need for it (tinyvm-oci needs none on loopback).
func (e *docsEnv) rewrite(line string) string {
	changed := false
	for _, p := range placeholders {
		if strings.Contains(line, p) {
			line = strings.ReplaceAll(line, p, e.host)
			changed = true
		}
	}
	line = strings.ReplaceAll(line, "go run ./cmd/tinyvm-oci", "tinyvm-oci")
	if !changed {
		return line
	}
	for tool, flag := range map[string]string{
		"oras pull ":      "oras pull --plain-http ",
		"oras cp ":        "oras cp --to-plain-http ",
		"skopeo copy ":    "skopeo copy --dest-tls-verify=false --src-tls-verify=false ",
		"skopeo inspect ": "skopeo inspect --tls-verify=false ",
		"crane push ":     "crane push --insecure ",
	} {
		line = strings.Replace(line, tool, flag, 1)
	}
	return line
}

// runLine runs one documented line with bash in dir.
func (e *docsEnv) runLine(t *testing.T, dir, where, line string) {
	t.Helper()
	if strings.Contains(line, "| kubectl") {
		line = line[:strings.Index(line, "| kubectl")] // run what feeds the cluster
	}
	first := strings.Fields(line)[0]
	for _, w := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '(' || r == '|' || r == '\n' }) {
		if why, ok := notRunnable[w]; ok {
			t.Logf("%s: not run (%s): %s", where, why, line)
			return
		}
	}
	// Lines CI runs itself: the test command, installs, benchmarks.
	switch {
	case strings.Contains(line, "go test"), strings.Contains(line, "apt-get install"),
		strings.HasPrefix(line, "go install oras.land"), strings.HasPrefix(line, "go install github.com/google/go-containerregistry"):
		if !strings.Contains(e.ciRun, strings.TrimPrefix(line, "sudo ")) && !strings.Contains(line, "apt-get install") {
			t.Errorf("%s: %q is neither run here nor by .ci/run", where, line)
		}
		return
	case strings.HasPrefix(line, "go install ./cmd/tinyvm-oci"), strings.HasPrefix(line, "export PATH="):
		return // this test builds the same package into PATH; TestInstallFromClone runs the install itself
	case strings.HasPrefix(line, "bash bench/"):
		script := strings.Fields(line)[1]
		if !strings.Contains(e.ciRun, "bash "+script) {
			t.Errorf("%s: %q is neither run here nor by .ci/run", where, line)
		}
		return
	}
	line = e.rewrite(line)
	needs := map[string]string{"oras": tooltest.Oras, "skopeo": tooltest.Skopeo, "crane": tooltest.Crane}
	if hint, ok := needs[first]; ok {
		tooltest.Require(t, first, hint)
	}
	if strings.Contains(line, "tinyvm-oci run") && !strings.Contains(line, "--print-command") {
		tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
		if strings.Contains(line, "--boot uefi") {
			tooltest.RequireFile(t, qemu.OVMFCode, tooltest.OVMF)
		}
		if strings.Contains(line, "--guest-arch arm64") {
			tooltest.Require(t, qemu.BinaryARM, tooltest.QemuSystemARM)
			tooltest.RequireFile(t, qemu.AAVMFCode, tooltest.AAVMF)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", line)
	cmd.Dir = dir
	// On timeout kill the whole process group (bash and, say, QEMU), and
	// stop waiting for output a stray grandchild may hold open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	t.Logf("%s: %s", where, line)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("%s: %s: %v\n%s", where, line, err, out.String())
	}
}

func TestDocsCommands(t *testing.T) {
	e := newDocsEnv(t)
	files, _ := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	files = append([]string{filepath.Join("..", "..", "README.md")}, files...)
	for _, f := range files {
		if filepath.Base(f) == "kubevirt.md" {
			continue // TestDocsKubeVirt runs it, comparing the YAML shown too
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			dir := t.TempDir()
			// Docs that show dist/ assume a build has run.
			e.runLine(t, dir, "setup", "tinyvm-oci build")
			for _, line := range docLines(t, f) {
				e.runLine(t, dir, filepath.Base(f), line)
			}
		})
	}
}

func TestHelpExamples(t *testing.T) {
	e := newDocsEnv(t)
	dir := t.TempDir()
	e.runLine(t, dir, "setup", "tinyvm-oci build")
	for _, line := range exampleLines() {
		e.runLine(t, dir, "--help example", line)
	}
}

// TestDocsLocalRegistry runs the README's own lines that start a local
// registry (which TestDocsCommands leaves to its own registry), on a free
// port instead of 5000, and pushes to it and pulls from it.
func TestDocsLocalRegistry(t *testing.T) {
	tooltest.Require(t, "docker-registry", tooltest.Registry)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	var start []string
	for _, line := range docLines(t, filepath.Join("..", "..", "README.md")) {
		if strings.Contains(line, "registry.yml") {
			start = append(start, strings.ReplaceAll(line, "127.0.0.1:5000", host))
		}
	}
	if len(start) != 2 || !strings.HasPrefix(start[1], "docker-registry serve") {
		t.Fatalf("README's registry lines: %q, want the config line and docker-registry serve", start)
	}
	dir := t.TempDir()
	cfg := exec.Command("bash", "-euo", "pipefail", "-c", start[0])
	cfg.Dir = dir
	if out, err := cfg.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", start[0], err, out)
	}
	srv := exec.Command("bash", "-c", "exec "+strings.TrimSuffix(strings.TrimSpace(start[1]), "&"))
	srv.Dir = dir
	var log bytes.Buffer
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", host)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the README's registry did not listen on %s: %s", host, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _, stderr := cli(t, "push", "--then", "poweroff", host+"/512vm:qcow2"); code != 0 {
		t.Fatalf("push: exit %d: %s", code, stderr)
	}
	out := t.TempDir()
	if code, _, stderr := cli(t, "pull", host+"/512vm:qcow2", "-o", out); code != 0 {
		t.Fatalf("pull: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "registry")); err != nil {
		t.Errorf("the registry kept nothing in ./registry: %v", err)
	}
}
