package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
)

// Incompatible feature bits (spec "Header", bytes 72-79) that Inspect
// understands; any other bit makes QEMU refuse the image.
const (
	incompatExtendedL2 = 1 << 4 // L2 entries are 16 bytes
	incompatKnown      = 1<<5 - 1
)

// Detect reports whether head, the first bytes of a file, starts with the
// qcow2 magic and a version QEMU knows (2 or 3).
func Detect(head []byte, _ io.ReaderAt, _ int64) bool {
	if len(head) < 8 || string(head[:4]) != Magic {
		return false
	}
	v := binary.BigEndian.Uint32(head[4:])
	return v == 2 || v == 3
}

// corrupt wraps info.ErrCorrupt with what is wrong.
func corrupt(format string, a ...any) error {
	return fmt.Errorf("qcow2: %s: %w", fmt.Sprintf(format, a...), info.ErrCorrupt)
}

// Inspect reads a qcow2 image's header and walks its active L1 and L2
// tables to count the stored clusters. It checks every offset it follows
// against the file size and never reads the same L2 table twice, so its cost
// is bounded by the file size; anything invalid is an error wrapping
// info.ErrCorrupt.
func Inspect(r io.ReaderAt, size int64) (*info.Info, error) {
	var raw [headerLength]byte
	if size < headerV2Length {
		return nil, corrupt("file of %d bytes is shorter than a header", size)
	}
	n := min(size, headerLength)
	if _, err := r.ReadAt(raw[:n], 0); err != nil && !(err == io.EOF && n == size) {
		return nil, corrupt("read header: %v", err)
	}
	var h header
	if err := binary.Read(bytes.NewReader(raw[:]), binary.BigEndian, &h); err != nil {
		return nil, corrupt("decode header: %v", err)
	}
	if string(h.Magic[:]) != Magic {
		return nil, corrupt("bad magic %q", h.Magic[:])
	}
	if h.ClusterBits < 9 || h.ClusterBits > 21 {
		return nil, corrupt("cluster_bits %d outside 9..21", h.ClusterBits)
	}
	cs := int64(1) << h.ClusterBits
	entry := int64(entrySize)
	switch h.Version {
	case 2:
		// Fields past byte 72 are not present in a version 2 header.
		h.IncompatibleFeatures, h.CompressionType = 0, 0
	case 3:
		if h.HeaderLength < headerV3MinLen || h.HeaderLength%8 != 0 || int64(h.HeaderLength) > cs {
			return nil, corrupt("bad header_length %d", h.HeaderLength)
		}
		if int64(h.HeaderLength) > size {
			return nil, corrupt("header_length %d past the end of a %d-byte file", h.HeaderLength, size)
		}
		if h.IncompatibleFeatures&^incompatKnown != 0 {
			return nil, corrupt("unknown incompatible features %#x", h.IncompatibleFeatures&^incompatKnown)
		}
		if h.IncompatibleFeatures&incompatExtendedL2 != 0 {
			entry = 2 * entrySize
		}
	default:
		return nil, corrupt("unsupported version %d", h.Version)
	}
	if h.Size > 1<<62 {
		return nil, corrupt("virtual size %d out of range", h.Size)
	}
	vsize := int64(h.Size)
	l1Size := int64(h.L1Size)
	if uint64(l1Size) < sizeToL1(h.Size, uint(h.ClusterBits)) {
		return nil, corrupt("l1_size %d too small for %d bytes", l1Size, vsize)
	}
	if l1Size*entrySize > maxL1Bytes {
		return nil, corrupt("l1_size %d above QEMU's limit", l1Size)
	}
	if l1Size > 0 {
		if err := inFile(int64(h.L1TableOffset), l1Size*entrySize, cs, size, "L1 table"); err != nil {
			return nil, err
		}
	}
	if h.Version == 3 && h.RefcountTableClusters == 0 {
		return nil, corrupt("refcount_table_clusters is 0")
	}
	if err := inFile(int64(h.RefcountTableOffset), int64(h.RefcountTableClusters)*cs, cs, size, "refcount table"); err != nil {
		return nil, err
	}

	out := &info.Info{Format: Type, VirtualSize: vsize, FileSize: size, BlockSize: cs}
	perL2 := cs / entry
	guestClusters := align.CeilDiv(vsize, cs)
	seen := map[int64]bool{}
	l1 := make([]byte, min(l1Size*entrySize, 64<<10))
	l2 := make([]byte, cs)
	var stored int64
	for i := int64(0); i < l1Size; i++ {
		chunk := int64(len(l1)) / entrySize
		if i%chunk == 0 {
			k := min(chunk, l1Size-i)
			if _, err := r.ReadAt(l1[:k*entrySize], int64(h.L1TableOffset)+i*entrySize); err != nil {
				return nil, corrupt("read L1 table: %v", err)
			}
		}
		e := binary.BigEndian.Uint64(l1[(i%chunk)*entrySize:])
		off := int64(e & offsetMask)
		if off == 0 || i*perL2 >= guestClusters {
			continue // unallocated, or entries past the virtual size
		}
		if seen[off] {
			return nil, corrupt("L2 table at %#x is used twice", off)
		}
		seen[off] = true
		if err := inFile(off, cs, cs, size, "L2 table"); err != nil {
			return nil, err
		}
		if _, err := r.ReadAt(l2, off); err != nil {
			return nil, corrupt("read L2 table at %#x: %v", off, err)
		}
		for j := int64(0); j < perL2 && i*perL2+j < guestClusters; j++ {
			e := binary.BigEndian.Uint64(l2[j*entry:])
			if e&flagCompressed != 0 {
				x := 62 - (h.ClusterBits - 8)
				if coff := int64(e & (1<<x - 1)); coff >= size {
					return nil, corrupt("compressed cluster at %#x past the end of the file", coff)
				}
				out.Compressed = true
				stored++
				continue
			}
			off := int64(e & offsetMask)
			if e&flagZero != 0 && entry == entrySize && h.Version == 3 {
				continue // reads as zeros
			}
			if off == 0 {
				if e&flagCopied != 0 {
					stored++ // external data file: host offset 0 is valid
				}
				continue
			}
			if off%cs != 0 || off >= size {
				return nil, corrupt("data cluster at %#x not aligned or past the end of the file", off)
			}
			stored++
		}
	}
	out.Allocated = stored * cs
	return out, nil
}

// inFile checks that a table of n bytes at off is cluster-aligned and lies
// within a file of the given size.
func inFile(off, n, cs, size int64, what string) error {
	if off <= 0 || off%cs != 0 {
		return corrupt("%s offset %#x is not a non-zero multiple of the cluster size", what, off)
	}
	if n > size || off > size-n {
		return corrupt("%s at %#x (%d bytes) past the end of a %d-byte file", what, off, n, size)
	}
	return nil
}
