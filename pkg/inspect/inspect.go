// Package inspect reports the facts of a disk file: its format, found by
// magic bytes, and what that format's reader says about it.
package inspect

import (
	"fmt"
	"os"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
)

// File inspects the disk file at path.
func File(path string) (*info.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	format, err := formats.Detect(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	inf, err := format.Inspect(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid %s file: %w", path, format.Type, err)
	}
	inf.FileSize = st.Size()
	if format.Type == raw.Type {
		// A raw file's allocation is its blocks on disk: holes are zeros.
		if blocks, ok := allocatedBlocks(st); ok {
			inf.Allocated = min(blocks*512, st.Size())
		}
	}
	return inf, nil
}
