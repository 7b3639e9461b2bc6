package table

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// TestWriteUint32 checks the entries' order and bytes across the chunk
// boundary, where a buffered writer is most likely to drop or repeat one.
func TestWriteUint32(t *testing.T) {
	n := int64(chunk/4 + 3)
	var got bytes.Buffer
	if err := WriteUint32(&got, n, binary.BigEndian, func(i int64) uint32 { return uint32(i * 7) }); err != nil {
		t.Fatal(err)
	}
	if int64(got.Len()) != 4*n {
		t.Fatalf("wrote %d bytes, want %d", got.Len(), 4*n)
	}
	for i := int64(0); i < n; i++ {
		if v := binary.BigEndian.Uint32(got.Bytes()[4*i:]); v != uint32(i*7) {
			t.Fatalf("entry %d = %d, want %d", i, v, i*7)
		}
	}
	if err := WriteUint32(failWriter{}, 1, binary.LittleEndian, func(int64) uint32 { return 0 }); err == nil {
		t.Fatal("a failing writer's error was lost")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("fail") }
