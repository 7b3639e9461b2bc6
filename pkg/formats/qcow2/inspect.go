package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/span"
)

// Incompatible feature bits (spec "Header", bytes 72-79) that Inspect
// understands; any other bit makes QEMU refuse the image.
const (
	incompatDataFile   = 1 << 2 // guest data is in an external file
	incompatExtendedL2 = 1 << 4 // L2 entries are 16 bytes
	incompatKnown      = 1<<5 - 1
)

// Reserved bits of L1 and standard L2 entries, which QEMU requires to be
// zero (spec "Cluster mapping").
const (
	l1Reserved = 0x7f000000000001ff
	l2Reserved = 0x3f000000000001fe
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

// Inspect reads a qcow2 image's header, refcount table and active L1 and
// L2 tables, counts the stored clusters and checks, as qemu-img check does
// with its reference counts, that nothing the image points at lies past
// the end of the file or overlaps anything else: the header, the tables,
// the refcount blocks and the data clusters. It reads each table at most
// once and skips tables in holes of a SparseReaderAt (they read as zeros),
// so its cost follows the bytes the file stores. Anything invalid is an
// error wrapping info.ErrCorrupt.
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
		if h.RefcountOrder > 6 {
			return nil, corrupt("refcount_order %d above 6", h.RefcountOrder)
		}
	default:
		return nil, corrupt("unsupported version %d", h.Version)
	}
	if h.BackingFileOffset != 0 && (h.BackingFileSize > 1023 || h.BackingFileOffset > uint64(cs)-uint64(h.BackingFileSize)) {
		return nil, corrupt("backing file name of %d bytes at %d is not inside the header cluster", h.BackingFileSize, h.BackingFileOffset)
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
	var used span.Set // what the image points at, checked for overlaps at the end
	used.Add(0, cs, "header")
	if l1Size > 0 {
		if err := inFile(int64(h.L1TableOffset), l1Size*entrySize, cs, size, "L1 table"); err != nil {
			return nil, err
		}
		used.Add(int64(h.L1TableOffset), align.Up(l1Size*entrySize, cs), "L1 table")
	}
	if h.Version == 3 && h.RefcountTableClusters == 0 {
		return nil, corrupt("refcount_table_clusters is 0")
	}
	rtBytes := int64(h.RefcountTableClusters) * cs
	if rtBytes > maxRefTableBytes {
		return nil, corrupt("refcount table of %d clusters above QEMU's limit", h.RefcountTableClusters)
	}
	if err := inFile(int64(h.RefcountTableOffset), rtBytes, cs, size, "refcount table"); err != nil {
		return nil, err
	}
	used.Add(int64(h.RefcountTableOffset), rtBytes, "refcount table")
	if h.NbSnapshots > 0 {
		if err := snapshots(r, size, cs, &h, &used); err != nil {
			return nil, err
		}
	}
	refBlocks := map[int64]int64{} // refcount block index -> offset
	err := eachEntry(r, int64(h.RefcountTableOffset), rtBytes/entrySize, refTableMask, func(i int64, e uint64) error {
		off := int64(e & refTableMask)
		if err := inFile(off, cs, cs, size, "refcount block"); err != nil {
			return err
		}
		used.Add(off, cs, "refcount block")
		refBlocks[i] = off
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := overlap(&used); err != nil {
		return nil, err // name the tables before what they map
	}

	out := &info.Info{Format: Type, VirtualSize: vsize, FileSize: size, BlockSize: cs}
	perL2 := cs / entry
	guestClusters := align.CeilDiv(vsize, cs)
	// Data clusters may be shared by snapshots, and compressed clusters
	// share sectors with each other, so each kind is coalesced before it
	// is checked against the rest.
	var data, packed span.Set
	seen := map[int64]bool{}
	l2 := make([]byte, cs)
	var stored int64
	external := h.IncompatibleFeatures&incompatDataFile != 0
	err = eachEntry(r, int64(h.L1TableOffset), min(l1Size, align.CeilDiv(guestClusters, perL2)), offsetMask, func(i int64, e uint64) error {
		if e&l1Reserved != 0 {
			return corrupt("L1 entry %d has reserved bits set: %#x", i, e)
		}
		off := int64(e & offsetMask)
		if err := inFile(off, cs, cs, size, "L2 table"); err != nil {
			return err
		}
		// Tables in holes are all zeros: every entry unallocated. They
		// are not read, and the final overlap check finds them shared.
		used.Add(off, cs, "L2 table")
		if info.IsHole(r, off, cs) {
			return nil
		}
		if seen[off] { // never read a table twice
			return corrupt("L2 table at %#x is used twice", off)
		}
		seen[off] = true
		if _, err := r.ReadAt(l2, off); err != nil {
			return corrupt("read L2 table at %#x: %v", off, err)
		}
		for j := int64(0); j < perL2 && i*perL2+j < guestClusters; j++ {
			e := binary.BigEndian.Uint64(l2[j*entry:])
			if e&flagCompressed != 0 {
				x := 62 - (h.ClusterBits - 8)
				coff := int64(e & (1<<x - 1))
				end := coff&^(sectorSize-1) + (int64(e>>x&(1<<(62-x)-1))+1)*sectorSize
				if coff >= size || end > align.Up(size, sectorSize) {
					return corrupt("compressed cluster at %#x past the end of the file", coff)
				}
				packed.Add(coff, end-coff, "compressed cluster")
				out.Compressed = true
				stored++
				continue
			}
			if e&l2Reserved != 0 {
				return corrupt("L2 entry %d of the table at %#x has reserved bits set: %#x", j, off, e)
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
			if external {
				stored++ // an offset in the data file, not in this one
				continue
			}
			if off%cs != 0 || off >= size {
				return corrupt("data cluster at %#x not aligned or past the end of the file", off)
			}
			data.Add(off, cs, "data cluster")
			stored++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if h.NbSnapshots > 0 {
		data.Coalesce()
	}
	packed.Coalesce()
	used.AddSet(&data)
	used.AddSet(&packed)
	if err := overlap(&used); err != nil {
		return nil, err
	}
	refBits := int64(1) << h.RefcountOrder
	if h.Version == 2 {
		refBits = 16
	}
	if err := checkRefcounts(r, &used, refBlocks, cs, refBits); err != nil {
		return nil, err
	}
	out.Allocated = stored * cs
	return out, nil
}

// QEMU's limits on internal snapshots (block/qcow2.h).
const (
	maxSnapshots      = 65536
	maxSnapshotsBytes = 64 << 20
	maxSnapshotExtra  = 1024
	snapshotFixedLen  = 40 // the fields before the extra data
)

// snapshots reads the snapshot table and adds it and each snapshot's L1
// table to used. The snapshots' L2 tables and clusters are shared with the
// active image, legitimately, so they are not walked: the active ones are.
func snapshots(r io.ReaderAt, size, cs int64, h *header, used *span.Set) error {
	if h.NbSnapshots > maxSnapshots {
		return corrupt("%d snapshots, above QEMU's limit", h.NbSnapshots)
	}
	start := int64(h.SnapshotsOffset)
	if err := inFile(start, 1, cs, size, "snapshot table"); err != nil {
		return err
	}
	var fixed [snapshotFixedLen]byte
	off := start
	for i := range int64(h.NbSnapshots) {
		if off-start+snapshotFixedLen > maxSnapshotsBytes || off > size-snapshotFixedLen {
			return corrupt("snapshot %d at %#x runs past the end of the file or QEMU's limit", i, off)
		}
		if _, err := r.ReadAt(fixed[:], off); err != nil {
			return corrupt("read snapshot %d: %v", i, err)
		}
		be := binary.BigEndian
		l1Off, l1Size := int64(be.Uint64(fixed[0:])), int64(be.Uint32(fixed[8:]))
		idLen, nameLen := int64(be.Uint16(fixed[12:])), int64(be.Uint16(fixed[14:]))
		extra := int64(be.Uint32(fixed[36:]))
		if extra > maxSnapshotExtra {
			return corrupt("snapshot %d has %d bytes of extra data", i, extra)
		}
		if l1Size*entrySize > maxL1Bytes {
			return corrupt("snapshot %d: l1_size %d above QEMU's limit", i, l1Size)
		}
		if l1Size > 0 {
			if err := inFile(l1Off, l1Size*entrySize, cs, size, fmt.Sprintf("snapshot %d L1 table", i)); err != nil {
				return err
			}
			used.Add(l1Off, align.Up(l1Size*entrySize, cs), "snapshot L1 table")
		}
		off += align.Up(snapshotFixedLen+extra+idLen+nameLen, 8)
	}
	if off-start > maxSnapshotsBytes || off > size {
		return corrupt("snapshot table of %d bytes at %#x runs past the end of the file or QEMU's limit", off-start, start)
	}
	used.Add(start, align.Up(off-start, cs), "snapshot table")
	return nil
}

// overlap reports two things in s that share a cluster.
func overlap(s *span.Set) error {
	if a, b, ok := s.Overlap(); ok {
		return corrupt("%s at %#x overlaps %s at %#x", b.What, b.Off, a.What, a.Off)
	}
	return nil
}

// refTableMask is the offset in a refcount table entry.
const refTableMask = ^uint64(1<<9 - 1)

// checkRefcounts checks, as qemu-img check does, that every cluster the
// image uses has a refcount above zero: a table or cluster that points
// where the image never allocated is corrupt, and so is one in a hole
// (a refcount block of zeros). used must be sorted, as Overlap leaves it,
// so each refcount block is read once. Leaks (refcounts of clusters no
// one uses) are not corruption, as qemu-img check says too.
func checkRefcounts(r io.ReaderAt, used *span.Set, blocks map[int64]int64, cs, refBits int64) error {
	perBlock := cs * 8 / refBits
	cur, loaded := int64(-1), false
	block := make([]byte, cs)
	return used.Each(func(s span.Span) error {
		for c := s.Off / cs; c < align.CeilDiv(s.End(), cs); c++ {
			if bi := c / perBlock; bi != cur {
				cur, loaded = bi, false
				off, ok := blocks[bi]
				if ok && !info.IsHole(r, off, cs) {
					if _, err := r.ReadAt(block, off); err != nil {
						return corrupt("read refcount block at %#x: %v", off, err)
					}
					loaded = true
				}
			}
			if !loaded || refcount(block, c%perBlock, refBits) == 0 {
				return corrupt("%s at %#x is in cluster %d, whose refcount is 0", s.What, s.Off, c)
			}
		}
		return nil
	})
}

// refcount returns entry i of a refcount block of refBits-bit entries.
func refcount(block []byte, i, refBits int64) uint64 {
	if refBits >= 8 {
		w := refBits / 8
		var v uint64
		for _, b := range block[i*w : i*w+w] {
			v = v<<8 | uint64(b)
		}
		return v
	}
	// Sub-byte refcounts fill each byte from its least significant bit.
	b := block[i*refBits/8]
	return uint64(b>>(i*refBits%8)) & (1<<refBits - 1)
}

// eachEntry calls fn for each 8-byte entry of the table of n entries at
// off that has a bit of mask set, reading it in chunks and skipping chunks
// in holes.
func eachEntry(r io.ReaderAt, off, n int64, mask uint64, fn func(i int64, e uint64) error) error {
	const chunk = 64 << 10 / entrySize
	buf := make([]byte, min(n, chunk)*entrySize)
	for i := int64(0); i < n; {
		k := min(chunk, n-i)
		p := buf[:k*entrySize]
		at := off + i*entrySize
		if next := info.NextData(r, at); next > at {
			i = min(n, i+(next-at)/entrySize) // zeros up to next
			continue
		}
		if _, err := r.ReadAt(p, at); err != nil {
			return corrupt("read table at %#x: %v", at, err)
		}
		for j := range k {
			if e := binary.BigEndian.Uint64(p[j*entrySize:]); e&mask != 0 {
				if err := fn(i+j, e); err != nil {
					return err
				}
			}
		}
		i += k
	}
	return nil
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
