// Package parallel runs independent pieces of one job on every CPU.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Each calls f(i) for every i in [0, n) on GOMAXPROCS workers and returns
// when all calls have returned. The calls start in index order, so a
// caller that puts its longest pieces first finishes soonest. The calls
// must not depend on one another; each writes its own result, indexed by
// i, so that what the caller sees does not depend on how they interleaved.
func Each(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}
