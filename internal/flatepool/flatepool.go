// Package flatepool lends compress/flate writers to every compressor of
// the process: the VMDK grains, the ova's VMDK and the OCI layers' gzip.
// A fresh writer allocates and clears about 1 MB of tables; where a page
// fault costs microseconds (a VM in a VM), faulting those pages in was the
// largest part of compressing a small disk's file. Unlike a sync.Pool,
// the pool keeps its writers through garbage collections, up to
// GOMAXPROCS of each level, which is as many as a build uses at once.
package flatepool

import (
	"compress/flate"
	"fmt"
	"io"
	"runtime"
	"sync"
)

var (
	mu   sync.Mutex
	free [flate.BestCompression - flate.HuffmanOnly + 1][]*flate.Writer
)

// Get returns a flate writer at level writing to w, a released one when
// there is one: its output is the same as a new writer's.
func Get(w io.Writer, level int) (*flate.Writer, error) {
	if level < flate.HuffmanOnly || level > flate.BestCompression {
		return nil, fmt.Errorf("flatepool: invalid compression level %d: use -2 to 9", level)
	}
	mu.Lock()
	l := &free[level-flate.HuffmanOnly]
	var fw *flate.Writer
	if n := len(*l); n > 0 {
		fw, *l = (*l)[n-1], (*l)[:n-1]
	}
	mu.Unlock()
	if fw == nil {
		return flate.NewWriter(w, level)
	}
	fw.Reset(w)
	return fw, nil
}

// Put releases fw, got at level, for a later Get; the caller must not
// use it again.
func Put(fw *flate.Writer, level int) {
	if fw == nil || level < flate.HuffmanOnly || level > flate.BestCompression {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	l := &free[level-flate.HuffmanOnly]
	if len(*l) < runtime.GOMAXPROCS(0) {
		*l = append(*l, fw)
	}
}
