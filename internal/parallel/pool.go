package parallel

import (
	"container/heap"
	"runtime"
	"sync"
)

// Pool runs jobs on up to GOMAXPROCS goroutines, the costliest waiting
// job first (ties in the order added). A job may add more jobs, which is
// how a pipeline starts each step once its input is ready: the CPUs that
// would wait for the slowest step of one stage do the next stage's work.
// The zero Pool is ready to use.
type Pool struct {
	mu      sync.Mutex
	queue   jobs
	seq     int
	workers int
	wg      sync.WaitGroup
}

// Go adds f to the pool with the given cost (larger starts sooner). It
// does not block.
func (p *Pool) Go(cost int64, f func()) {
	p.wg.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	heap.Push(&p.queue, job{cost: cost, seq: p.seq, f: f})
	p.seq++
	if p.workers < runtime.GOMAXPROCS(0) {
		p.workers++
		go p.work()
	}
}

// Wait returns when every job added, including those added by jobs, has
// returned.
func (p *Pool) Wait() { p.wg.Wait() }

// work runs queued jobs until there are none.
func (p *Pool) work() {
	for {
		p.mu.Lock()
		if p.queue.Len() == 0 {
			p.workers--
			p.mu.Unlock()
			return
		}
		j := heap.Pop(&p.queue).(job)
		p.mu.Unlock()
		j.f()
		p.wg.Done()
	}
}

type job struct {
	cost int64
	seq  int
	f    func()
}

// jobs is a heap of jobs, costliest then oldest on top.
type jobs []job

func (h jobs) Len() int { return len(h) }
func (h jobs) Less(i, j int) bool {
	if h[i].cost != h[j].cost {
		return h[i].cost > h[j].cost
	}
	return h[i].seq < h[j].seq
}
func (h jobs) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *jobs) Push(x any)   { *h = append(*h, x.(job)) }
func (h *jobs) Pop() any {
	old := *h
	j := old[len(old)-1]
	*h = old[:len(old)-1]
	return j
}
