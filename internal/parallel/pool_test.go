package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestPool runs jobs that add jobs: every one runs once, Wait waits for
// the nested ones, and no more than GOMAXPROCS run at a time.
func TestPool(t *testing.T) {
	var p Pool
	var ran atomic.Int32
	var g gauge
	track := func() { g.run(func() { ran.Add(1) }) }
	for i := range 20 {
		p.Go(int64(i), func() {
			track()
			for j := range 3 {
				p.Go(int64(j), track)
			}
		})
	}
	p.Wait()
	if got := ran.Load(); got != 80 {
		t.Errorf("%d jobs ran, want 80", got)
	}
	g.check(t)
	p.Wait() // an idle pool returns at once
}

// TestPoolOrder runs one worker: jobs waiting start costliest first, ties
// in the order added, and a job added by a running job takes its turn by
// cost.
func TestPoolOrder(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var p Pool
	var mu sync.Mutex
	var got []string
	log := func(s string) func() {
		return func() { mu.Lock(); got = append(got, s); mu.Unlock() }
	}
	gate := make(chan struct{})
	// The first job, the costliest, holds the only worker until the rest
	// are queued.
	p.Go(100, func() {
		<-gate
		log("first")()
		p.Go(5, log("added 5"))
	})
	p.Go(1, log("1a"))
	p.Go(9, log("9"))
	p.Go(1, log("1b"))
	p.Go(5, log("5"))
	close(gate)
	p.Wait()
	want := []string{"first", "9", "5", "added 5", "1a", "1b"}
	if len(got) != len(want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ran %v, want %v", got, want)
		}
	}
}
