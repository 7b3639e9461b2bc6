// Package table streams the tables of 32-bit entries the format writers
// emit (the VDI block map, the VHD BAT). A table can have millions of
// entries for a large sparse disk, so it is written in bounded chunks
// rather than built in memory.
package table

import (
	"encoding/binary"
	"io"
)

// chunk is how many bytes are buffered between writes.
const chunk = 64 << 10

// WriteUint32 writes n entries to w in the given byte order, the i-th
// being entry(i). entry is called once per index in ascending order, so it
// may walk a sorted list of stored blocks as it goes.
func WriteUint32(w io.Writer, n int64, order binary.AppendByteOrder, entry func(i int64) uint32) error {
	buf := make([]byte, 0, chunk)
	for i := int64(0); i < n; i++ {
		buf = order.AppendUint32(buf, entry(i))
		if len(buf) == chunk {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if len(buf) > 0 {
		_, err := w.Write(buf)
		return err
	}
	return nil
}
