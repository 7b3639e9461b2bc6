package qcow2

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
)

// Type is the format's name, as qemu-img calls it.
const Type = "qcow2"

// Magic is the first four bytes of every qcow2 file: "QFI\xfb".
const Magic = "QFI\xfb"

// Cluster sizes: QEMU accepts cluster_bits 9 to 21.
const (
	// DefaultClusterSize is qemu-img's default, 64 KiB.
	DefaultClusterSize = 64 << 10
	// MinClusterSize is the spec's smallest cluster (cluster_bits 9).
	MinClusterSize = 512
	// MaxClusterSize is QEMU's implementation limit (cluster_bits 21).
	MaxClusterSize = 2 << 20
)

// Header layout (spec "Header"), big-endian.
const (
	version3       = 3
	headerLength   = 112 // what QEMU writes for v3: up to compression_type, padded to 8
	headerV2Length = 72  // a version 2 header ends after snapshots_offset
	headerV3MinLen = 104 // a version 3 header has at least the fields up to header_length
	refcountOrder  = 4   // 16-bit refcounts, QEMU's default
	refcountBytes  = 1 << refcountOrder / 8
	maxRefcount    = 1<<(1<<refcountOrder) - 1
	extensionEnd   = 0 // header extension type that ends the list (length 0)
)

// QEMU's implementation limits (qcow2.txt notes; block/qcow2.h
// QCOW_MAX_L1_SIZE and QCOW_MAX_REFTABLE_SIZE).
const (
	maxL1Bytes       = 32 << 20
	maxRefTableBytes = 8 << 20
)

// Table entry bits (spec "Cluster mapping").
const (
	flagCopied     = 1 << 63 // L1/L2: refcount is exactly one
	flagCompressed = 1 << 62 // L2: compressed cluster descriptor
	flagZero       = 1 << 0  // L2 standard descriptor: reads as zeros (v3)
	offsetMask     = 0x00fffffffffffe00
	sectorSize     = 512 // unit of a compressed descriptor's sector count
	entrySize      = 8   // bytes per L1, L2 and refcount table entry
)

// Sentinel errors.
var (
	// ErrClusterSize is returned for a cluster size that is not a power of
	// two from 512 B to 2 MiB.
	ErrClusterSize = errors.New("qcow2: cluster size must be a power of two from 512 B to 2 MiB")
	// ErrTooLarge is returned when the virtual size needs a bigger L1 or
	// refcount table than QEMU can open; a larger cluster size helps.
	ErrTooLarge = errors.New("qcow2: disk too large for the cluster size")
)

// header mirrors the version 3 header field by field, as QEMU writes it.
type header struct {
	Magic                 [4]byte // 0: "QFI\xfb"
	Version               uint32  // 4: 2 or 3
	BackingFileOffset     uint64  // 8: 0, no backing file
	BackingFileSize       uint32  // 16
	ClusterBits           uint32  // 20: log2 of the cluster size, 9..21
	Size                  uint64  // 24: virtual disk size in bytes
	CryptMethod           uint32  // 32: 0, not encrypted
	L1Size                uint32  // 36: entries in the active L1 table
	L1TableOffset         uint64  // 40: cluster-aligned
	RefcountTableOffset   uint64  // 48: cluster-aligned
	RefcountTableClusters uint32  // 56
	NbSnapshots           uint32  // 60
	SnapshotsOffset       uint64  // 64
	IncompatibleFeatures  uint64  // 72: v3 from here on
	CompatibleFeatures    uint64  // 80
	AutoclearFeatures     uint64  // 88
	RefcountOrder         uint32  // 96: refcount_bits = 1 << refcount_order
	HeaderLength          uint32  // 100: 112
	CompressionType       uint8   // 104: 0, zlib (raw deflate)
	Padding               [7]byte // 105: zero up to header_length
}

// Options choose the cluster size and compression.
type Options struct {
	// ClusterSize is the cluster size in bytes; 0 means 64 KiB.
	ClusterSize int64
	// Compress stores clusters deflate-compressed, as qemu-img convert -c.
	Compress bool
}

// clusterBits validates the cluster size and returns its log2.
func (o Options) clusterBits() (uint, error) {
	cs := o.ClusterSize
	if cs == 0 {
		cs = DefaultClusterSize
	}
	if cs < MinClusterSize || cs > MaxClusterSize || cs&(cs-1) != 0 {
		return 0, fmt.Errorf("%w, got %d", ErrClusterSize, o.ClusterSize)
	}
	return uint(bits.TrailingZeros64(uint64(cs))), nil
}

// sizeToL1 is how many L1 entries cover size bytes, as QEMU's size_to_l1.
func sizeToL1(size uint64, clusterBits uint) uint64 {
	shift := clusterBits + (clusterBits - 3) // bytes mapped by one L2 table
	n := size >> shift
	if size&(1<<shift-1) != 0 {
		n++
	}
	return n
}

// layout is where everything goes, computed before anything is written.
type layout struct {
	bits uint  // cluster_bits
	cs   int64 // cluster size
	size int64 // virtual size

	l1Size                 int64
	rtClusters, rbClusters int64
	l1Clusters             int64
	rtOff, rbOff, l1Off    int64
	l2Off                  int64 // first L2 table
	dataOff                int64 // first uncompressed data cluster
	cOff                   int64 // first compressed byte, cluster-aligned
	end                    int64 // file size

	blocks []int64  // stored guest clusters, ascending
	l1Used []int64  // L1 indexes that get an L2 table, ascending
	entry  []uint64 // L2 entry of each stored cluster
	clen   []int    // compressed length of each stored cluster; 0 = uncompressed
	counts []uint16 // refcounts of the clusters from cOff on
}

// plan lays out the image of d.
func plan(d disk.Disk, o Options) (*layout, error) {
	cb, err := o.clusterBits()
	if err != nil {
		return nil, err
	}
	l := &layout{bits: cb, cs: 1 << cb, size: d.Size()}
	if l.size <= 0 {
		return nil, fmt.Errorf("qcow2: virtual size %d is not positive", l.size)
	}
	l.l1Size = int64(sizeToL1(uint64(l.size), cb))
	if l.l1Size*entrySize > maxL1Bytes {
		return nil, fmt.Errorf("%w: %d bytes need an L1 table of %d bytes (QEMU allows %d); use larger clusters",
			ErrTooLarge, l.size, l.l1Size*entrySize, maxL1Bytes)
	}
	l.l1Clusters = align.CeilDiv(l.l1Size*entrySize, l.cs)

	if l.blocks, err = disk.Blocks(d, l.cs); err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	l2Bits := cb - 3
	for _, b := range l.blocks {
		if i := b >> l2Bits; len(l.l1Used) == 0 || l.l1Used[len(l.l1Used)-1] != i {
			l.l1Used = append(l.l1Used, i)
		}
	}

	// Sizes of the data: uncompressed clusters, then the compressed stream.
	nRaw := int64(len(l.blocks))
	var cLen int64
	if o.Compress {
		l.clen = make([]int, len(l.blocks))
		c := newCompressor(l.cs)
		nRaw = 0
		for i, b := range l.blocks {
			p, err := c.compress(d, b)
			if err != nil {
				return nil, err
			}
			if p == nil {
				nRaw++
				continue
			}
			l.clen[i] = len(p)
			cLen += int64(len(p))
		}
	}
	// Whole sectors, so that every byte a descriptor covers is in the file.
	cSpan := align.CeilDiv(cLen, sectorSize) * sectorSize
	cClusters := align.CeilDiv(cSpan, l.cs)

	// The refcount structures count themselves: grow them until they cover
	// every host cluster.
	fixed := 1 + l.l1Clusters + int64(len(l.l1Used)) + nRaw + cClusters
	perBlock := l.cs / refcountBytes
	perTable := l.cs / entrySize
	l.rtClusters, l.rbClusters = 1, 1
	for {
		total := fixed + l.rtClusters + l.rbClusters
		rb := align.CeilDiv(total, perBlock)
		rt := align.CeilDiv(rb, perTable)
		if rb == l.rbClusters && rt == l.rtClusters {
			break
		}
		l.rbClusters, l.rtClusters = max(rb, l.rbClusters), max(rt, l.rtClusters)
	}
	if l.rtClusters*l.cs > maxRefTableBytes {
		return nil, fmt.Errorf("%w: the refcount table would exceed %d bytes", ErrTooLarge, maxRefTableBytes)
	}

	l.rtOff = l.cs
	l.rbOff = l.rtOff + l.rtClusters*l.cs
	l.l1Off = l.rbOff + l.rbClusters*l.cs
	l.l2Off = l.l1Off + l.l1Clusters*l.cs
	l.dataOff = l.l2Off + int64(len(l.l1Used))*l.cs
	l.cOff = l.dataOff + nRaw*l.cs
	l.end = l.cOff + cSpan

	// L2 entries and the refcounts of the compressed region.
	l.entry = make([]uint64, len(l.blocks))
	if cClusters > 0 {
		l.counts = make([]uint16, cClusters)
	}
	x := 62 - (cb - 8) // compressed descriptor: offset in bits 0..x-1
	raw, coff := l.dataOff, l.cOff
	for i := range l.blocks {
		if l.clen == nil || l.clen[i] == 0 {
			l.entry[i] = uint64(raw) | flagCopied
			raw += l.cs
			continue
		}
		n := int64(l.clen[i])
		extra := (coff+n-1)/sectorSize - coff/sectorSize
		if uint64(coff) >= 1<<x {
			return nil, fmt.Errorf("%w: compressed data beyond offset 2^%d", ErrTooLarge, x)
		}
		l.entry[i] = flagCompressed | uint64(extra)<<x | uint64(coff)
		// QEMU reads, and qemu-img check counts, up to the end of the
		// descriptor's last sector.
		last := ((coff/sectorSize+extra+1)*sectorSize - 1) / l.cs
		for h := coff / l.cs; h <= last; h++ {
			k := h - l.cOff/l.cs
			if l.counts[k] == maxRefcount {
				return nil, fmt.Errorf("qcow2: host cluster %d is shared by more than %d compressed clusters", h, maxRefcount)
			}
			l.counts[k]++
		}
		coff += n
	}
	return l, nil
}

// refcount is the reference count of host cluster h.
func (l *layout) refcount(h int64) uint16 {
	if h < l.cOff/l.cs {
		return 1
	}
	if k := h - l.cOff/l.cs; k < int64(len(l.counts)) {
		return l.counts[k]
	}
	return 0
}

// compressor deflates one cluster at a time.
type compressor struct {
	block []byte // the cluster being compressed
	buf   bytes.Buffer
	fw    *flate.Writer
}

func newCompressor(cs int64) *compressor {
	c := &compressor{block: make([]byte, cs)}
	c.fw, _ = flate.NewWriter(&c.buf, flate.BestCompression) // the level is valid
	return c
}

// compress returns the raw deflate stream of guest cluster b, zero-padded to
// a whole cluster, or nil when it would not be smaller than a cluster (QEMU
// stores such a cluster uncompressed too). The slice is reused by the next
// call.
func (c *compressor) compress(d disk.Disk, b int64) ([]byte, error) {
	p := c.block
	if err := disk.ReadBlock(d, b, p); err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	c.buf.Reset()
	c.fw.Reset(&c.buf)
	if _, err := c.fw.Write(p); err != nil {
		return nil, fmt.Errorf("qcow2: deflate: %w", err)
	}
	if err := c.fw.Close(); err != nil {
		return nil, fmt.Errorf("qcow2: deflate: %w", err)
	}
	if int64(c.buf.Len()) >= int64(len(c.block)) {
		return nil, nil
	}
	return c.buf.Bytes(), nil
}

// countingWriter tracks the file offset and keeps the first error.
type countingWriter struct {
	w   io.Writer
	off int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.off += int64(n)
	if err != nil {
		c.err = fmt.Errorf("qcow2: %w", err)
	}
	return n, c.err
}

// at checks that the writer is at the offset the layout gave a structure.
func (c *countingWriter) at(off int64, what string) error {
	if c.err == nil && c.off != off {
		c.err = fmt.Errorf("qcow2: internal error: %s at offset %d, planned %d", what, c.off, off)
	}
	return c.err
}

// Write streams the disk d to w as a qcow2 version 3 image. Only clusters
// holding non-zero bytes are stored, so the output grows with the data, not
// the virtual size.
func Write(w io.Writer, d disk.Disk, o Options) error {
	l, err := plan(d, o)
	if err != nil {
		return err
	}
	cw := &countingWriter{w: w}
	buf := make([]byte, l.cs)

	// Cluster 0: header, end-of-extensions marker, zeros.
	h := header{
		Version:               version3,
		ClusterBits:           uint32(l.bits),
		Size:                  uint64(l.size),
		L1Size:                uint32(l.l1Size),
		L1TableOffset:         uint64(l.l1Off),
		RefcountTableOffset:   uint64(l.rtOff),
		RefcountTableClusters: uint32(l.rtClusters),
		RefcountOrder:         refcountOrder,
		HeaderLength:          headerLength,
	}
	copy(h.Magic[:], Magic)
	hb, err := binary.Append(buf[:0], binary.BigEndian, &h)
	if err != nil {
		return fmt.Errorf("qcow2: header: %w", err)
	}
	clear(buf[len(hb):])
	// The extension area at header_length holds only its end marker, type
	// 0 and length 0. The rest of cluster 0 stays zero: QEMU would parse
	// anything else there as extensions.
	binary.BigEndian.PutUint32(buf[headerLength:], extensionEnd)
	binary.BigEndian.PutUint32(buf[headerLength+4:], 0)
	cw.Write(buf)

	// Refcount table: one entry per refcount block.
	cw.at(l.rtOff, "refcount table")
	next := int64(0)
	for range l.rtClusters {
		clear(buf)
		for i := int64(0); i < l.cs/entrySize && next < l.rbClusters; i++ {
			binary.BigEndian.PutUint64(buf[i*entrySize:], uint64(l.rbOff+next*l.cs))
			next++
		}
		cw.Write(buf)
	}

	// Refcount blocks.
	cw.at(l.rbOff, "refcount blocks")
	perBlock := l.cs / refcountBytes
	for b := range l.rbClusters {
		for i := range perBlock {
			binary.BigEndian.PutUint16(buf[i*refcountBytes:], l.refcount(b*perBlock+i))
		}
		cw.Write(buf)
	}

	// L1 table: one cluster at a time, entries for the L2 tables written.
	cw.at(l.l1Off, "L1 table")
	perTable := l.cs / entrySize
	u := 0
	for c := range l.l1Clusters {
		clear(buf)
		for ; u < len(l.l1Used) && l.l1Used[u] < (c+1)*perTable; u++ {
			i := l.l1Used[u] - c*perTable
			binary.BigEndian.PutUint64(buf[i*entrySize:], uint64(l.l2Off+int64(u)*l.cs)|flagCopied)
		}
		cw.Write(buf)
	}

	// L2 tables.
	cw.at(l.l2Off, "L2 tables")
	bi := 0
	for _, t := range l.l1Used {
		clear(buf)
		for ; bi < len(l.blocks) && l.blocks[bi]/perTable == t; bi++ {
			i := l.blocks[bi] % perTable
			binary.BigEndian.PutUint64(buf[i*entrySize:], l.entry[bi])
		}
		cw.Write(buf)
	}

	// Uncompressed data clusters.
	cw.at(l.dataOff, "data")
	for i, b := range l.blocks {
		if l.clen != nil && l.clen[i] != 0 {
			continue
		}
		if err := disk.ReadBlock(d, b, buf); err != nil {
			return fmt.Errorf("qcow2: %w", err)
		}
		cw.Write(buf)
	}

	// Compressed stream, padded to a whole sector.
	cw.at(l.cOff, "compressed data")
	if l.clen != nil {
		c := newCompressor(l.cs)
		for i, b := range l.blocks {
			if l.clen[i] == 0 {
				continue
			}
			p, err := c.compress(d, b)
			if err != nil {
				return err
			}
			if len(p) != l.clen[i] {
				return fmt.Errorf("qcow2: internal error: cluster %d deflated to %d bytes, then %d", b, l.clen[i], len(p))
			}
			cw.Write(p)
		}
		if pad := l.end - cw.off; cw.err == nil && pad >= 0 && pad < sectorSize {
			clear(buf)
			cw.Write(buf[:pad])
		}
	}
	return cw.at(l.end, "end of file")
}
