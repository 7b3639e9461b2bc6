package gcstart

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// The tests run in a child process, since Delay changes the collector for
// the whole process and reads GOGC, which the runtime reads at start.
const childEnv = "GCSTART_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "delay":
		os.Exit(childDelay())
	case "kept":
		os.Exit(childKept())
	}
	os.Exit(2)
}

// child runs this test binary as the named child, with extra environment,
// and returns its combined output.
func child(t *testing.T, name string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+name)
	for _, k := range []string{"GOGC", "GOMEMLIMIT"} {
		cmd.Env = append(cmd.Env, k+"=") // empty: as if unset
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s: %v\n%s", name, err, out)
	}
	return string(out)
}

// TestDelay: no collection while the heap is well under the limit, one
// once it passes it, and then GOGC=100 and no limit again.
func TestDelay(t *testing.T) {
	if out := child(t, "delay"); !strings.Contains(out, "ok") {
		t.Errorf("child said %q", out)
	}
}

// TestKeepsUserPolicy: with GOGC set, Delay leaves the collector alone.
func TestKeepsUserPolicy(t *testing.T) {
	for _, env := range []string{"GOGC=50", "GOMEMLIMIT=1GiB"} {
		if out := child(t, "kept", env); !strings.Contains(out, "ok") {
			t.Errorf("%s: child said %q", env, out)
		}
	}
}

var sink [][]byte

// garbage allocates n bytes in 64 KiB pieces, of which only the last 1 MiB
// stays reachable.
func garbage(n int) {
	for range n >> 16 {
		sink = append(sink, make([]byte, 64<<10))
		if len(sink) > 16 {
			sink = sink[1:]
		}
	}
}

func numGC() uint32 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.NumGC
}

func childDelay() int {
	const limit = 64 << 20
	if !Delay(limit) {
		println("Delay did nothing with GOGC and GOMEMLIMIT unset")
		return 1
	}
	before := numGC()
	garbage(24 << 20) // 8 MiB would have collected twice
	if n := numGC() - before; n != 0 {
		println("collected", n, "times under the limit")
		return 1
	}
	garbage(256 << 20)
	if numGC() == before {
		println("never collected past the limit")
		return 1
	}
	// The cleanup runs in its own goroutine after a collection.
	for range 200 {
		if debug.SetMemoryLimit(-1) == int64(^uint64(0)>>1) {
			if p := debug.SetGCPercent(100); p != 100 {
				println("GOGC is", p, "after the first collection, want 100")
				return 1
			}
			println("ok")
			return 0
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	println("the defaults never came back")
	return 1
}

func childKept() int {
	gogc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gogc)
	limit := debug.SetMemoryLimit(-1)
	if Delay(32 << 20) {
		println("Delay changed the policy the user set")
		return 1
	}
	if p := debug.SetGCPercent(gogc); p != gogc {
		println("GOGC", gogc, "became", p)
		return 1
	}
	if l := debug.SetMemoryLimit(-1); l != limit {
		println("memory limit", limit, "became", l)
		return 1
	}
	println("ok")
	return 0
}
