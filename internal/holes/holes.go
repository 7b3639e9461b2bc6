// Package holes asks the file system where a sparse file holds data
// (lseek SEEK_DATA and SEEK_HOLE), so that readers can skip what reads as
// zeros without reading it.
package holes

// Extent is a run of a file that may hold data: [Off, End).
type Extent struct{ Off, End int64 }

// maxExtents bounds the list; past it the rest of the file counts as
// data, which is always correct, only slower.
const maxExtents = 1 << 20
