// Package ztest holds what the tests of the zero-run compressors (zgzip,
// zzstd) share: disk-like inputs and a writer that fails.
package ztest

import (
	"errors"
	"math/rand/v2"
)

// Sample is a disk-like input: random sectors and zero runs of many
// lengths, some not sector-aligned. The same seed gives the same bytes.
func Sample(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for off := 0; off < size; {
		n := min(size-off, []int{1, 7, 511, 512, 4096, 70000, 300000}[r.IntN(7)])
		if r.IntN(3) == 0 {
			for i := range n {
				b[off+i] = byte(r.UintN(256))
			}
		}
		off += n
	}
	return b
}

// ErrFull is what a FailWriter returns.
var ErrFull = errors.New("ztest: disk full")

// FailWriter takes After writes, then fails every one with ErrFull.
type FailWriter struct{ After int }

func (f *FailWriter) Write(p []byte) (int, error) {
	if f.After == 0 {
		return 0, ErrFull
	}
	f.After--
	return len(p), nil
}
