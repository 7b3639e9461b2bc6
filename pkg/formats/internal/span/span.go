// Package span finds overlapping byte ranges in an image file: a table
// that points into another table, two entries that share one cluster, a
// block over a header. qemu-img check finds the same faults by counting
// references per cluster; a sorted list of ranges does it in memory that
// follows the number of ranges, not the file size, and ranges that follow
// each other merge, so a sound image costs a handful of entries.
package span

import (
	"cmp"
	"slices"
)

// A Span is a byte range of a file and what the format keeps there.
type Span struct {
	Off, Len int64
	What     string
}

// End returns the offset just past the span.
func (s Span) End() int64 { return s.Off + s.Len }

// Set collects spans. The zero value is an empty set.
type Set struct {
	spans []span   // pointer-free, so millions cost the collector nothing
	names []string // what each kind of span holds
}

// span is a Span with its What as an index into Set.names.
type span struct {
	off, len int64
	kind     int
}

func (x span) end() int64 { return x.off + x.len }

// kind returns the index of what in s.names, adding it when new. Sets
// hold a handful of kinds, so a scan is the fastest lookup.
func (s *Set) kind(what string) int {
	for i, n := range s.names {
		if n == what {
			return i
		}
	}
	s.names = append(s.names, what)
	return len(s.names) - 1
}

func (s *Set) export(x span) Span { return Span{x.off, x.len, s.names[x.kind]} }

// Add records the n bytes at off as holding what. A span that starts where
// the last one added ends and holds the same kind of thing extends it.
// Empty spans are ignored.
func (s *Set) Add(off, n int64, what string) {
	if n <= 0 {
		return
	}
	k := s.kind(what)
	if i := len(s.spans); i > 0 {
		if l := &s.spans[i-1]; l.kind == k && l.end() == off {
			l.len += n
			return
		}
	}
	s.spans = append(s.spans, span{off, n, k})
}

// Len returns how many spans the set holds after merging.
func (s *Set) Len() int { return len(s.spans) }

// Overlap returns two spans that share at least one byte, the one that
// starts first as a, and reports whether there are any.
func (s *Set) Overlap() (a, b Span, ok bool) {
	slices.SortFunc(s.spans, func(x, y span) int {
		return cmp.Or(cmp.Compare(x.off, y.off), cmp.Compare(y.len, x.len))
	})
	if len(s.spans) == 0 {
		return a, b, false
	}
	// far is the span reaching furthest so far: any later span starting
	// before its end overlaps it.
	far := s.spans[0]
	for _, t := range s.spans[1:] {
		if t.off < far.end() {
			return s.export(far), s.export(t), true
		}
		if t.end() > far.end() {
			far = t
		}
	}
	return a, b, false
}

// Each calls fn for each span in the set's order (ascending offset after
// Overlap), stopping at the first error.
func (s *Set) Each(fn func(Span) error) error {
	for _, x := range s.spans {
		if err := fn(s.export(x)); err != nil {
			return err
		}
	}
	return nil
}

// Coalesce merges the spans of the set that overlap or touch into one, for
// things that may legitimately share bytes among themselves (compressed
// clusters packed into one sector, clusters shared by snapshots) but not
// with anything else. Merged spans keep the first one's What.
func (s *Set) Coalesce() {
	slices.SortFunc(s.spans, func(x, y span) int { return cmp.Compare(x.off, y.off) })
	out := s.spans[:0]
	for _, t := range s.spans {
		if k := len(out); k > 0 && t.off <= out[k-1].end() {
			out[k-1].len = max(out[k-1].end(), t.end()) - out[k-1].off
			continue
		}
		out = append(out, t)
	}
	s.spans = out
}

// AddSet adds every span of t to s.
func (s *Set) AddSet(t *Set) {
	for _, x := range t.spans {
		s.Add(x.off, x.len, t.names[x.kind])
	}
}
