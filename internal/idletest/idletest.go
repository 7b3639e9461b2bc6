// Package idletest measures how much host CPU an idle guest costs: the
// emulator's utime+stime from /proc over a window of wall time. The boot
// programs' tests use it to show that waiting never busy-loops.
package idletest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MaxShare is the most of one host CPU an idle guest may use.
const MaxShare = 0.05

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on Linux.
const userHZ = 100

// windows is how many windows Check measures at most: a guest that
// busy-loops is over MaxShare in every one, while the host's own load
// (other test packages booting guests on the same two CPUs) can push a
// single window of an idle one over it (5.2% once in CI, 2.4% alone).
const windows = 3

// Check measures pid's CPU use over window and fails the test when it
// reaches MaxShare in each of up to windows consecutive windows. what
// names the guest in the messages.
func Check(t testing.TB, pid int, window time.Duration, what string) {
	t.Helper()
	var share float64
	for i := range windows {
		t0, c0 := time.Now(), ticks(t, pid)
		time.Sleep(window)
		t1, c1 := time.Now(), ticks(t, pid)
		share = float64(c1-c0) / userHZ / t1.Sub(t0).Seconds()
		t.Logf("%s used %.1f%% of a CPU (window %d)", what, 100*share, i+1)
		if share < MaxShare {
			return
		}
	}
	t.Errorf("%s used %.0f%% of a CPU or more in each of %d windows of %v (%.1f%% in the last), want under %.0f%%", what, 100*MaxShare, windows, window, 100*share, 100*MaxShare)
}

// ticks returns utime+stime of pid in clock ticks, from /proc/PID/stat.
func ticks(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}
