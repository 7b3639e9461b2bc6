package blockhash

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
)

// TestWrite pins the exact bytes fed to the hash: the writers' output
// (and the golden digests) depend on them.
func TestWrite(t *testing.T) {
	d, err := disk.New([]byte{1, 2, 3}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := Write(&got, d, []int64{0, 1}, 512, binary.BigEndian); err != nil {
		t.Fatal(err)
	}
	want := []byte{0, 0, 0, 0, 0, 0, 0, 0}
	want = append(want, 1, 2, 3)
	want = append(want, make([]byte, 509)...)
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 1)
	want = append(want, make([]byte, 512)...)
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("Write wrote %d bytes that differ from the %d expected", got.Len(), len(want))
	}
}
