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
	spans []Span
}

// Add records the n bytes at off as holding what. A span that starts where
// the last one added ends and holds the same kind of thing extends it.
// Empty spans are ignored.
func (s *Set) Add(off, n int64, what string) {
	if n <= 0 {
		return
	}
	if k := len(s.spans); k > 0 {
		if l := &s.spans[k-1]; l.What == what && l.End() == off {
			l.Len += n
			return
		}
	}
	s.spans = append(s.spans, Span{off, n, what})
}

// Len returns how many spans the set holds after merging.
func (s *Set) Len() int { return len(s.spans) }

// Overlap returns two spans that share at least one byte, the one that
// starts first as a, and reports whether there are any.
func (s *Set) Overlap() (a, b Span, ok bool) {
	slices.SortFunc(s.spans, func(x, y Span) int {
		return cmp.Or(cmp.Compare(x.Off, y.Off), cmp.Compare(y.Len, x.Len))
	})
	if len(s.spans) == 0 {
		return a, b, false
	}
	// far is the span reaching furthest so far: any later span starting
	// before its end overlaps it.
	far := s.spans[0]
	for _, t := range s.spans[1:] {
		if t.Off < far.End() {
			return far, t, true
		}
		if t.End() > far.End() {
			far = t
		}
	}
	return a, b, false
}

// Coalesce merges the spans of the set that overlap or touch into one, for
// things that may legitimately share bytes among themselves (compressed
// clusters packed into one sector, clusters shared by snapshots) but not
// with anything else. Merged spans keep the first one's What.
func (s *Set) Coalesce() {
	slices.SortFunc(s.spans, func(x, y Span) int { return cmp.Compare(x.Off, y.Off) })
	out := s.spans[:0]
	for _, t := range s.spans {
		if k := len(out); k > 0 && t.Off <= out[k-1].End() {
			out[k-1].Len = max(out[k-1].End(), t.End()) - out[k-1].Off
			continue
		}
		out = append(out, t)
	}
	s.spans = out
}

// AddSet adds every span of t to s.
func (s *Set) AddSet(t *Set) {
	for _, x := range t.spans {
		s.Add(x.Off, x.Len, x.What)
	}
}
