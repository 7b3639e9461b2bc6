package ocitest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// containerdHint says how to get the runtime KubeVirt's nodes pull
// containerDisks with.
const containerdHint = "apt-get install containerd"

// Containerd is a running containerd daemon of the test's own: its root,
// state and socket are in a temp directory, and it serves no CRI.
type Containerd struct {
	// Address is the gRPC socket, for ctr --address.
	Address string
	// Root is containerd's root: the native snapshotter unpacks layers
	// under Root/io.containerd.snapshotter.v1.native/snapshots.
	Root string
	ctr  string
	log  *bytes.Buffer
}

// StartContainerd runs /usr/bin/containerd until the test ends and waits
// until ctr reaches it. containerd needs root: without it, or without the
// containerd package, the test skips (fails under TINYVM_REQUIRE_TOOLS=1).
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	bin := tooltest.Require(t, "containerd", containerdHint)
	ctr := tooltest.Require(t, "ctr", containerdHint)
	if os.Geteuid() != 0 {
		tooltest.Missing(t, "containerd needs root: run this test as root")
	}
	dir := t.TempDir()
	c := &Containerd{
		Address: filepath.Join(dir, "containerd.sock"),
		Root:    filepath.Join(dir, "root"),
		ctr:     ctr,
		log:     &bytes.Buffer{},
	}
	// The CRI plugin would want a CNI setup; ctr needs only the content
	// store, the image service and a snapshotter.
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, c.Root, filepath.Join(dir, "state"), c.Address, c.Address+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("containerd log:\n%s", c.log)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := exec.CommandContext(ctx, ctr, "--address", c.Address, "version").Run()
		cancel()
		if err == nil {
			return c
		}
		select {
		case <-done:
			t.Fatalf("containerd exited: %s", c.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s: %v\n%s", c.Address, err, c.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Ctr runs ctr against the daemon, with a minute's limit, and returns its
// combined output and error.
func (c *Containerd) Ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.ctr, append([]string{"--address", c.Address}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}
