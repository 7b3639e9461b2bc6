package vmdk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
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
	if h.GDOffset == gdAtEnd {
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
	if h.GDOffset == 0 || h.GDOffset >= sectors || numGTs*4 > (sectors-h.GDOffset)*SectorSize {
		return nil, fmt.Errorf("vmdk: grain directory at sector %d with %d entries is past the end: %w", h.GDOffset, numGTs, info.ErrCorrupt)
	}
	gd := make([]byte, numGTs*4)
	if err := readFull(r, gd, int64(h.GDOffset)*SectorSize, size); err != nil {
		return nil, fmt.Errorf("vmdk: grain directory: %w", err)
	}

	compressed := h.Flags&flagCompressed != 0
	gtBytes := uint64(h.NumGTEsPerGT) * 4
	gt := make([]byte, gtBytes)
	var allocated uint64
	for t := range numGTs {
		off := uint64(binary.LittleEndian.Uint32(gd[4*t:]))
		if off == 0 {
			continue // no table: every grain it covers is sparse
		}
		if off >= sectors || gtBytes > (sectors-off)*SectorSize {
			return nil, fmt.Errorf("vmdk: grain table %d at sector %d is past the end: %w", t, off, info.ErrCorrupt)
		}
		if err := readFull(r, gt, int64(off)*SectorSize, size); err != nil {
			return nil, fmt.Errorf("vmdk: grain table %d: %w", t, err)
		}
		n := min(uint64(h.NumGTEsPerGT), numGrains-t*uint64(h.NumGTEsPerGT))
		for i := range n {
			e := uint64(binary.LittleEndian.Uint32(gt[4*i:]))
			if e == 0 || (e == 1 && h.Flags&flagZeroGTE != 0) {
				continue // sparse, or a zeroed grain with no data
			}
			// A plain grain must fit in the file; a compressed one has its
			// size in its own header, so only its start can be checked.
			if e >= sectors || (!compressed && h.GrainSize > sectors-e) {
				return nil, fmt.Errorf("vmdk: grain %d at sector %d is past the end: %w", t*uint64(h.NumGTEsPerGT)+i, e, info.ErrCorrupt)
			}
			allocated++
		}
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
