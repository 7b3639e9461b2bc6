//go:build unix

package inspect

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNotRegular: FIFOs, devices and directories are refused at once with
// one line naming what they are; a FIFO never blocks the call.
func TestNotRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for path, what := range map[string]string{
		fifo:        "a named pipe (FIFO), not a regular file",
		"/dev/null": "a character device, not a regular file",
		t.TempDir(): "a directory, not a regular file",
	} {
		done := make(chan error, 1)
		go func() { _, err := File(path); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), what) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: %v, want one line saying it is %s", path, err, what)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: inspect blocked", path)
		}
	}
}
