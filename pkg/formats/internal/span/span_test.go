package span

import "testing"

func TestOverlap(t *testing.T) {
	var s Set
	s.Add(0, 512, "header")
	s.Add(4096, 512, "table")
	s.Add(4608, 512, "table") // merges with the one before
	s.Add(1024, 0, "empty")   // ignored
	s.Add(8192, 1024, "data")
	if s.Len() != 3 {
		t.Errorf("Len = %d after merging, want 3", s.Len())
	}
	if a, b, ok := s.Overlap(); ok {
		t.Fatalf("disjoint spans overlap: %+v %+v", a, b)
	}
	// A span inside a long one that ends before a third still overlaps.
	s.Add(0, 16384, "big")
	s.Add(5000, 1, "inner")
	a, b, ok := s.Overlap()
	if !ok || a.What != "big" || b.What != "header" {
		t.Errorf("Overlap = %+v %+v %v, want big over header", a, b, ok)
	}
	var u Set
	u.Add(100, 10, "a")
	u.Add(0, 200, "b")
	u.Add(300, 5, "c")
	u.Add(150, 100, "d")
	if a, b, ok := u.Overlap(); !ok || a.What != "b" || b.What != "a" {
		t.Errorf("Overlap = %+v %+v %v, want b then a", a, b, ok)
	}
	var adj Set
	adj.Add(0, 10, "a")
	adj.Add(10, 10, "b")
	if _, _, ok := adj.Overlap(); ok {
		t.Error("adjacent spans reported as overlapping")
	}
	var e Set
	if _, _, ok := e.Overlap(); ok {
		t.Error("empty set overlaps")
	}
}

func TestCoalesce(t *testing.T) {
	var c Set
	c.Add(1000, 600, "compressed")
	c.Add(0, 700, "compressed")
	c.Add(1600, 10, "compressed") // touches the first
	c.Add(5000, 1, "compressed")
	c.Coalesce()
	if c.Len() != 3 {
		t.Fatalf("Len = %d after Coalesce, want 3", c.Len())
	}
	var s Set
	s.Add(1610, 100, "table")
	s.AddSet(&c)
	if _, _, ok := s.Overlap(); ok {
		t.Error("coalesced spans overlap a table that only touches them")
	}
	s.Add(4990, 20, "data")
	if a, b, ok := s.Overlap(); !ok || a.What != "data" || b.What != "compressed" {
		t.Errorf("Overlap = %+v %+v %v, want data over compressed", a, b, ok)
	}
}
