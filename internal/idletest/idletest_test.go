package idletest

import (
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps what Check reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Helper()             {}

// TestCheck: a process that spins fails in every window; one that sleeps
// passes in the first.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		script string
		fail   bool
	}{
		{"while :; do :; done", true},
		{"sleep 30", false},
	} {
		cmd := exec.Command("sh", "-c", c.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := &recorder{TB: t}
		Check(r, cmd.Process.Pid, 300*time.Millisecond, c.script)
		cmd.Process.Kill()
		cmd.Wait()
		if got := len(r.errs) > 0; got != c.fail {
			t.Errorf("%q: failed %v (%q), want %v", c.script, got, r.errs, c.fail)
		}
	}
}
