//go:build !unix

package inspect

import "os"

// open opens path for reading. The caller has refused what is not a
// regular file before opening it.
func open(path string) (*os.File, error) { return os.Open(path) }
