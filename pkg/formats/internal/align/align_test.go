package align

import "testing"

// TestRounding pins the edge cases the writers rely on: exact multiples stay
// put and zero stays zero.
func TestRounding(t *testing.T) {
	for _, c := range []struct{ n, m, div, up int64 }{
		{0, 512, 0, 0},
		{1, 512, 1, 512},
		{512, 512, 1, 512},
		{513, 512, 2, 1024},
	} {
		if got := CeilDiv(c.n, c.m); got != c.div {
			t.Errorf("CeilDiv(%d, %d) = %d, want %d", c.n, c.m, got, c.div)
		}
		if got := Up(c.n, c.m); got != c.up {
			t.Errorf("Up(%d, %d) = %d, want %d", c.n, c.m, got, c.up)
		}
	}
	if got := CeilDiv(uint64(10), 3); got != 4 {
		t.Errorf("CeilDiv(uint64 10, 3) = %d, want 4", got)
	}
}
