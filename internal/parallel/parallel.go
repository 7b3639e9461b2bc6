// Package parallel runs independent pieces of one job on every CPU.
package parallel

import (
	"runtime"
	"sync"
)

// Each calls f(i) for every i in [0, n), GOMAXPROCS calls at a time, and
// returns when all have returned. The calls must not depend on one
// another; each writes its own result, indexed by i, so that what the
// caller sees does not depend on the order they ran in.
func Each(n int, f func(i int)) {
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}
