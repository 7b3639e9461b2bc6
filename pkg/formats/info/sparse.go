package info

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SparseReaderAt is an io.ReaderAt that knows where its file's holes are:
// ranges that read as zeros and take no space on disk. The format readers
// skip tables that lie in holes, so the work of inspecting a sparse file
// follows the bytes it stores, not its apparent size.
type SparseReaderAt interface {
	io.ReaderAt
	// NextData returns the first offset at or after off that may hold
	// data, or a value at or past the end of the file when only holes
	// remain.
	NextData(off int64) int64
}

// NextData returns r's NextData(off) when r knows its holes, else off:
// without that knowledge every byte may hold data.
func NextData(r io.ReaderAt, off int64) int64 {
	if s, ok := r.(SparseReaderAt); ok {
		return max(off, s.NextData(off))
	}
	return off
}

// IsHole reports whether the n bytes at off lie wholly in a hole of r, so
// they read as zeros without being read.
func IsHole(r io.ReaderAt, off, n int64) bool {
	return n > 0 && NextData(r, off)-off >= n
}

// Section returns the n bytes of r at off as a reader, as
// io.NewSectionReader does, that keeps r's knowledge of holes: an archive
// member is inspected as cheaply as a file.
func Section(r io.ReaderAt, off, n int64) io.ReaderAt {
	s := io.NewSectionReader(r, off, n)
	if _, ok := r.(SparseReaderAt); !ok {
		return s
	}
	return &section{s, r, off}
}

type section struct {
	*io.SectionReader
	r   io.ReaderAt
	off int64
}

func (s *section) NextData(off int64) int64 { return NextData(s.r, s.off+off) - s.off }

// Quote returns s as it is when every rune is printable, and
// strconv.Quote(s) otherwise, so a name read from a file (an archive
// member, a descriptor field) cannot carry terminal escapes, newlines or
// invalid UTF-8 into inspect's output. A name that starts with a quote is
// quoted too, so the two forms cannot be confused.
func Quote(s string) string {
	if s != "" && (s[0] == '"' || !utf8.ValidString(s)) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// Escape returns s with each rune that is not printable, and each byte
// that is not UTF-8, replaced by its Go escape (\x1b, \n, \u009b), and
// everything else as it is: for messages that may hold text from a file.
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !strconv.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
