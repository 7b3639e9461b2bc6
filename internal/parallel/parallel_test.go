package parallel

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// TestEach checks that every index runs once and that no more than
// GOMAXPROCS run at a time.
func TestEach(t *testing.T) {
	const n = 100
	var ran [n]atomic.Int32
	var g gauge
	Each(n, func(i int) {
		g.run(func() { ran[i].Add(1) })
	})
	for i := range ran {
		if got := ran[i].Load(); got != 1 {
			t.Errorf("index %d ran %d times", i, got)
		}
	}
	g.check(t)
	Each(0, func(int) { t.Error("called for n = 0") })
}

// gauge records the most calls of run at once.
type gauge struct{ now, most atomic.Int32 }

// run calls f, counted as running, and yields so others can overlap.
func (g *gauge) run(f func()) {
	c := g.now.Add(1)
	for {
		m := g.most.Load()
		if c <= m || g.most.CompareAndSwap(m, c) {
			break
		}
	}
	runtime.Gosched()
	f()
	g.now.Add(-1)
}

// check fails t if more than GOMAXPROCS ran at once.
func (g *gauge) check(t *testing.T) {
	t.Helper()
	if m := g.most.Load(); m > int32(runtime.GOMAXPROCS(0)) {
		t.Errorf("%d ran at once, more than GOMAXPROCS %d", m, runtime.GOMAXPROCS(0))
	}
}

// TestEachStartsInOrder runs one worker: the calls come in index order.
func TestEachStartsInOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var got []int
	Each(5, func(i int) { got = append(got, i) })
	for i, v := range got {
		if v != i {
			t.Fatalf("calls in order %v, want 0 to 4", got)
		}
	}
	if len(got) != 5 {
		t.Fatalf("%d calls, want 5", len(got))
	}
}
