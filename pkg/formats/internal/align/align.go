// Package align holds the rounding arithmetic every format writer needs to
// lay out tables and blocks, so each format does not carry its own copy.
package align

// Integer is the integer types the format packages size things with.
type Integer interface {
	~int | ~int32 | ~int64 | ~uint | ~uint32 | ~uint64
}

// CeilDiv returns a/b rounded up: how many b-sized units hold a. It is for
// non-negative a and positive b, which is all a disk layout has.
func CeilDiv[T Integer](a, b T) T { return (a + b - 1) / b }

// Up returns n rounded up to a multiple of m, for non-negative n and
// positive m.
func Up[T Integer](n, m T) T { return CeilDiv(n, m) * m }
