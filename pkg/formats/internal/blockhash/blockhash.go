// Package blockhash feeds a disk's stored blocks into a hash. The writers
// derive their UUIDs, GUIDs and CIDs from it so that the same disk gives
// the same file on every machine, yet different contents differ.
package blockhash

import (
	"encoding/binary"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
)

// Write writes, for each block index in blocks, the index as 8 bytes in
// the given byte order and then the block's blockSize bytes (zero-padded
// past the disk's end) to h, a hash, whose Write never fails. The index
// goes in too, so moving data to another block changes the digest. Each
// format passes the byte order it always used, which keeps its files
// byte-identical.
func Write(h io.Writer, d disk.Disk, blocks []int64, blockSize int64, order binary.AppendByteOrder) error {
	idx := make([]byte, 0, 8)
	for _, b := range blocks {
		h.Write(order.AppendUint64(idx[:0], uint64(b)))
		if err := disk.CopyBlock(h, d, b, blockSize); err != nil {
			return err
		}
	}
	return nil
}
