// Package gcstart holds off a short-lived process's first garbage
// collection until its memory reaches a given size.
//
// Go's first heap goal is 4 MiB. A default build allocates about 8 MB in
// all and collects three times; each collection stops both CPUs while it
// faults in the runtime's span lists, and together they are about a tenth
// of the build. The Go compiler starts with a larger heap for the same
// reason (cmd/compile's AdjustStartingHeap); this package does it with the
// documented GOGC=off plus memory limit configuration, then hands back to
// the defaults after the first collection, so a long push or run behaves
// like any Go program.
package gcstart

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
)

// Delay turns the collector off until the Go runtime's memory reaches
// limit bytes, then, once that first collection has run, restores the
// defaults (GOGC=100, no memory limit). A user who set GOGC or GOMEMLIMIT
// keeps their policy: Delay then does nothing. It reports whether it
// changed anything. Call it once, at the start of main.
func Delay(limit int64) bool {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(limit)
	// A cleanup runs after the first collection that finds its object
	// unreachable, which this one is at once. 32 bytes keeps it out of
	// the tiny allocator, whose blocks may never be freed.
	runtime.AddCleanup(new([32]byte), func(struct{}) {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	}, struct{}{})
	return true
}
