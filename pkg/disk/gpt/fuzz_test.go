package gpt_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/gpt"
)

// FuzzRead feeds Read headers and entries whose fields are hostile but
// whose CRCs are right, so the range checks behind the CRCs are reached.
// Read must not panic, and whatever it accepts lies inside the disk.
func FuzzRead(f *testing.F) {
	const sectors = 68 // the smallest disk: both tables, one usable sector
	f.Add(uint64(2), uint32(128), uint32(128), uint64(34), uint64(34), uint64(34), uint64(34), uint32(92))
	f.Add(uint64(67), uint32(1<<20), uint32(128), uint64(34), uint64(34), uint64(0), uint64(1<<63), uint32(512))
	f.Fuzz(func(t *testing.T, entryLBA uint64, num, esize uint32, firstUsable, lastUsable, start, end uint64, hsize uint32) {
		d := make([]byte, sectors*512)
		e := gpt.Entry{PartitionTypeGUID: gpt.ESP, StartingLBA: start, EndingLBA: end}
		var eb bytes.Buffer
		binary.Write(&eb, binary.LittleEndian, &e)
		if entryLBA < sectors {
			copy(d[entryLBA*512:], eb.Bytes())
		}
		n := uint64(num) * uint64(esize)
		var ecrc uint32
		if entryLBA < sectors && entryLBA*512+n <= uint64(len(d)) {
			ecrc = crc32.ChecksumIEEE(d[entryLBA*512 : entryLBA*512+n])
		}
		h := gpt.Header{
			Signature: gpt.Signature, Revision: gpt.Revision, HeaderSize: hsize,
			MyLBA: 1, AlternateLBA: sectors - 1, FirstUsableLBA: firstUsable, LastUsableLBA: lastUsable,
			PartitionEntryLBA: entryLBA, NumberOfPartitionEntries: num, SizeOfPartitionEntry: esize,
			PartitionEntryArrayCRC32: ecrc,
		}
		var hb bytes.Buffer
		binary.Write(&hb, binary.LittleEndian, &h)
		copy(d[512:], hb.Bytes())
		if hsize >= 92 && hsize <= 512 {
			binary.LittleEndian.PutUint32(d[512+16:], crc32.ChecksumIEEE(d[512:512+hsize]))
		}
		tab, err := gpt.Read(bytes.NewReader(d), int64(len(d)))
		if err != nil {
			return
		}
		for _, p := range tab.Partitions {
			if p.FirstLBA < gpt.FirstUsableLBA || p.LastLBA > sectors-gpt.FirstUsableLBA || p.FirstLBA > p.LastLBA {
				t.Fatalf("accepted a partition at LBA %d-%d of a %d-sector disk", p.FirstLBA, p.LastLBA, sectors)
			}
		}
	})
}
