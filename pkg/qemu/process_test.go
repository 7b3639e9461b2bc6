package qemu_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// TestCancel: ending ctx kills QEMU's whole process group, and Wait says
// it was cancelled rather than blaming QEMU.
func TestCancel(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	raw, _ := formats.Lookup("raw")
	res, err := build.Files(t.TempDir(), build.Options{Formats: []formats.Format{raw}}) // waits for a key: runs until stopped
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := qemu.Start(ctx, qemu.Options{File: res.Files[0].Path})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	if pgid := field(t, pid, 5); pgid != fmt.Sprint(pid) {
		t.Errorf("QEMU's process group is %s, want its own (%d)", pgid, pid)
	}
	cancel()
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Wait after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		p.Kill()
		t.Fatal("QEMU still running a minute after cancel")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("QEMU (pid %d) still exists after Wait", pid)
	}
}

// field is the n-th field (1-based) of /proc/pid/stat.
func field(t *testing.T, pid, n int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return fs[n-3]
}
