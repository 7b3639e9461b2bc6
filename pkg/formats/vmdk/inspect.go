package vmdk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/span"
)

// Detect reports whether head starts with a sparse extent's magic "KDMV".
func Detect(head []byte, _ io.ReaderAt, _ int64) bool {
	return len(head) >= 4 && bytes.Equal(head[:4], magic[:])
}

// maxDescriptor bounds how much of an embedded descriptor Inspect reads.
const maxDescriptor = 1 << 20

// Inspect reads the facts of a VMDK sparse extent of size bytes: its
// subformat (createType), virtual size, grain, the bytes its allocated
// grains cover, and whether grains are compressed. A stream-optimized
// file's footer takes the header's place when gdOffset says so. Bad or
// truncated files give an error wrapping info.ErrCorrupt.
func Inspect(r io.ReaderAt, size int64) (*info.Info, error) {
	p := make([]byte, SectorSize)
	if err := readFull(r, p, 0, size); err != nil {
		return nil, fmt.Errorf("vmdk: header: %w", err)
	}
	var h header
	h.unmarshal(p)
	if h.MagicNumber != magic {
		return nil, fmt.Errorf("vmdk: bad magic %q: %w", h.MagicNumber[:], info.ErrCorrupt)
	}
	if err := h.check(); err != nil {
		return nil, err
	}
	footer := h.GDOffset == gdAtEnd
	if footer {
		if err := readFooter(r, size, &h); err != nil {
			return nil, err
		}
	}
	if err := h.check(); err != nil {
		return nil, err
	}

	sectors := uint64(size) / SectorSize
	numGrains := align.CeilDiv(h.Capacity, h.GrainSize)
	numGTs := align.CeilDiv(numGrains, uint64(h.NumGTEsPerGT))
	if numGTs > maxGTs {
		return nil, fmt.Errorf("vmdk: grain directory of %d entries above QEMU's limit: %w", numGTs, info.ErrCorrupt)
	}
	gdSectors := align.CeilDiv(numGTs*4, SectorSize)
	if h.GDOffset == 0 {
		return nil, fmt.Errorf("vmdk: grain directory at sector 0 overlaps the header: %w", info.ErrCorrupt)
	}
	if h.GDOffset >= sectors || numGTs*4 > (sectors-h.GDOffset)*SectorSize {
		return nil, fmt.Errorf("vmdk: grain directory at sector %d with %d entries is past the end: %w", h.GDOffset, numGTs, info.ErrCorrupt)
	}
	// What the extent points at, in sectors, checked for overlaps at the
	// end as qemu-img check would find them: tables over the header,
	// a grain directory pointing at itself, grains sharing sectors.
	var used, grains span.Set
	used.Add(0, 1, "header")
	used.Add(int64(h.DescriptorOffset), int64(min(h.DescriptorSize, sectors)), "descriptor")
	used.Add(int64(h.GDOffset), int64(gdSectors), "grain directory")
	if h.Flags&flagRedundantGD != 0 && h.RGDOffset != 0 {
		used.Add(int64(h.RGDOffset), int64(gdSectors), "redundant grain directory")
	}
	if footer {
		used.Add(int64(sectors)-footerTail/SectorSize, footerTail/SectorSize, "footer")
	}

	compressed := h.Flags&flagCompressed != 0
	gtBytes := uint64(h.NumGTEsPerGT) * 4
	gt := make([]byte, gtBytes)
	gh := make([]byte, grainHeaderSize)
	seen := map[uint64]bool{}
	var allocated, tables uint64
	err := eachGTE(r, int64(h.GDOffset)*SectorSize, numGTs, func(t, off uint64) error {
		if off >= sectors || gtBytes > (sectors-off)*SectorSize {
			return fmt.Errorf("vmdk: grain table %d at sector %d is past the end: %w", t, off, info.ErrCorrupt)
		}
		// Tables that do not overlap all fit in the file: more of them
		// than that means some overlap, and reading on would cost more
		// than the file holds.
		if tables++; tables*gtBytes > uint64(size) {
			return fmt.Errorf("vmdk: %d grain tables do not fit in %d bytes without overlapping: %w", tables, size, info.ErrCorrupt)
		}
		// Tables in holes are all zeros: every grain sparse. They are
		// not read, and the final overlap check finds them shared.
		used.Add(int64(off), int64(align.CeilDiv(gtBytes, SectorSize)), "grain table")
		if info.IsHole(r, int64(off)*SectorSize, int64(gtBytes)) {
			return nil
		}
		if seen[off] { // never read a table twice
			return fmt.Errorf("vmdk: grain table at sector %d is used twice: %w", off, info.ErrCorrupt)
		}
		seen[off] = true
		if err := readFull(r, gt, int64(off)*SectorSize, size); err != nil {
			return fmt.Errorf("vmdk: grain table %d: %w", t, err)
		}
		n := min(uint64(h.NumGTEsPerGT), numGrains-t*uint64(h.NumGTEsPerGT))
		for i := range n {
			e := uint64(binary.LittleEndian.Uint32(gt[4*i:]))
			if e == 0 || (e == 1 && h.Flags&flagZeroGTE != 0) {
				continue // sparse, or a zeroed grain with no data
			}
			// A plain grain must fit in the file; a compressed one has its
			// size in its own header, read below, so here only its start.
			if e >= sectors || (!compressed && h.GrainSize > sectors-e) {
				return fmt.Errorf("vmdk: grain %d at sector %d is past the end: %w", t*uint64(h.NumGTEsPerGT)+i, e, info.ErrCorrupt)
			}
			if compressed {
				// The grain's own header gives the guest sector it holds
				// and its length, which places it among the others.
				g := t*uint64(h.NumGTEsPerGT) + i
				if err := readFull(r, gh, int64(e)*SectorSize, size); err != nil {
					return fmt.Errorf("vmdk: grain %d: %w", g, err)
				}
				lba, n := binary.LittleEndian.Uint64(gh), uint64(binary.LittleEndian.Uint32(gh[8:]))
				if lba != g*h.GrainSize {
					return fmt.Errorf("vmdk: grain %d at sector %d says it holds guest sector %d: %w", g, e, lba, info.ErrCorrupt)
				}
				secs := align.CeilDiv(grainHeaderSize+n, SectorSize)
				if secs > sectors-e {
					return fmt.Errorf("vmdk: compressed grain %d of %d bytes at sector %d runs past the end: %w", g, n, e, info.ErrCorrupt)
				}
				grains.Add(int64(e), int64(secs), "compressed grain")
			} else {
				grains.Add(int64(e), int64(h.GrainSize), "grain")
			}
			allocated++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Tables first, so a directory pointing at itself is named as such
	// rather than by the grains its misread entries seem to map.
	if err := overlap(&used); err != nil {
		return nil, err
	}
	used.AddSet(&grains)
	if err := overlap(&used); err != nil {
		return nil, err
	}

	sub := ""
	if h.DescriptorOffset > 0 && h.DescriptorSize > 0 && h.DescriptorOffset < sectors {
		n := min(h.DescriptorSize, sectors-h.DescriptorOffset, maxDescriptor/SectorSize) * SectorSize
		desc := make([]byte, n)
		if err := readFull(r, desc, int64(h.DescriptorOffset)*SectorSize, size); err != nil {
			return nil, fmt.Errorf("vmdk: descriptor: %w", err)
		}
		if i := bytes.IndexByte(desc, 0); i >= 0 {
			desc = desc[:i]
		}
		sub = parseCreateType(string(desc))
	}
	if sub == "" {
		sub = MonolithicSparse
		if compressed {
			sub = StreamOptimized
		}
	}
	grain := h.GrainSize * SectorSize
	return &info.Info{
		Format:      Type,
		Subformat:   sub,
		VirtualSize: int64(h.Capacity * SectorSize),
		FileSize:    size,
		BlockSize:   int64(grain),
		Allocated:   int64(allocated * grain),
		Compressed:  compressed,
	}, nil
}

// overlap reports two things in s that share a sector.
func overlap(s *span.Set) error {
	if a, b, ok := s.Overlap(); ok {
		return fmt.Errorf("vmdk: %s at sector %d overlaps %s at sector %d: %w", b.What, b.Off, a.What, a.Off, info.ErrCorrupt)
	}
	return nil
}

// maxGTs is the most grain directory entries QEMU accepts ("L1 size too
// big").
const maxGTs = 512 << 20

// eachGTE calls fn with the index and sector of each non-zero entry of the
// grain directory of n entries at off, reading it in chunks and skipping
// chunks in holes.
func eachGTE(r io.ReaderAt, off int64, n uint64, fn func(t, sector uint64) error) error {
	const chunk = 64 << 10 / 4
	buf := make([]byte, min(n, chunk)*4)
	for t := uint64(0); t < n; {
		k := min(chunk, n-t)
		at := off + int64(t)*4
		if next := info.NextData(r, at); next > at {
			t = min(n, t+uint64(next-at)/4) // zeros up to next
			continue
		}
		p := buf[:k*4]
		if n, err := r.ReadAt(p, at); n < len(p) {
			return fmt.Errorf("vmdk: grain directory: %w: %v", info.ErrCorrupt, err)
		}
		for j := range k {
			if e := uint64(binary.LittleEndian.Uint32(p[4*j:])); e != 0 {
				if err := fn(t+j, e); err != nil {
					return err
				}
			}
		}
		t += k
	}
	return nil
}

// readFooter replaces h with the footer of a stream-optimized file: the
// last three sectors are a footer marker, the footer, and an end-of-stream
// marker.
func readFooter(r io.ReaderAt, size int64, h *header) error {
	if size < SectorSize+footerTail {
		return fmt.Errorf("vmdk: no room for a footer: %w", info.ErrCorrupt)
	}
	tail := make([]byte, footerTail)
	off := size/SectorSize*SectorSize - footerTail
	if err := readFull(r, tail, off, size); err != nil {
		return fmt.Errorf("vmdk: footer: %w", err)
	}
	isMarker := func(p []byte, typ uint32) bool {
		return binary.LittleEndian.Uint32(p[8:]) == 0 && binary.LittleEndian.Uint32(p[12:]) == typ
	}
	if !isMarker(tail, markerFooter) || !isMarker(tail[2*SectorSize:], markerEOS) {
		return fmt.Errorf("vmdk: gdOffset is at-end but the footer markers are missing: %w", info.ErrCorrupt)
	}
	var f header
	f.unmarshal(tail[SectorSize:])
	if f.MagicNumber != magic || f.GDOffset == gdAtEnd {
		return fmt.Errorf("vmdk: bad footer: %w", info.ErrCorrupt)
	}
	*h = f
	return nil
}

// check rejects header values that no valid file has, the limits QEMU
// applies when it opens one.
func (h *header) check() error {
	switch {
	case h.Version < 1 || h.Version > 3:
		return fmt.Errorf("vmdk: version %d: %w", h.Version, info.ErrCorrupt)
	case h.GrainSize == 0 || h.GrainSize > 0x200000 || h.GrainSize&(h.GrainSize-1) != 0:
		return fmt.Errorf("vmdk: grain of %d sectors: %w", h.GrainSize, info.ErrCorrupt)
	case h.NumGTEsPerGT == 0 || h.NumGTEsPerGT > 512:
		return fmt.Errorf("vmdk: %d entries per grain table: %w", h.NumGTEsPerGT, info.ErrCorrupt)
	case h.Capacity == 0 || h.Capacity > 1<<54:
		return fmt.Errorf("vmdk: capacity of %d sectors: %w", h.Capacity, info.ErrCorrupt)
	}
	return nil
}

// readFull reads len(p) bytes at off of a file of size bytes.
func readFull(r io.ReaderAt, p []byte, off, size int64) error {
	if off < 0 || off > size || int64(len(p)) > size-off {
		return fmt.Errorf("%d bytes at %d past the end at %d: %w", len(p), off, size, info.ErrCorrupt)
	}
	n, err := r.ReadAt(p, off)
	if n < len(p) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%w: %w", info.ErrCorrupt, err)
	}
	return nil
}
