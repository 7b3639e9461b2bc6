//go:build unix

package inspect

import (
	"os"
	"syscall"
)

// allocatedBlocks is the file's st_blocks: 512-byte units on disk.
func allocatedBlocks(st os.FileInfo) (int64, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int64(sys.Blocks), true
}
