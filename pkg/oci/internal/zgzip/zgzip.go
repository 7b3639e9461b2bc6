// Package zgzip writes gzip streams (RFC 1952) that any gzip reader
// decodes, fast for disk images: runs of zero sectors, which make up most
// of a small VM's disk in every format, are coded directly as deflate
// back-references instead of being searched for matches by
// compress/flate. Everything else goes through compress/flate at the
// chosen level.
//
// The stream is a concatenation of deflate blocks (RFC 1951): each stretch
// of data is compressed by a fresh flate.Writer and ended with a sync
// flush, which leaves the output byte-aligned; each long run of zeros is
// one dynamic-Huffman block of a literal zero and repeated (length 258,
// distance 1) matches at two bits each, followed by an empty stored block
// to realign; the last block is an empty final one. A fresh flate.Writer
// per stretch never refers back across a zero block, so no reference
// reaches data it did not see.
package zgzip

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/tinyvm-oci/tinyvm-oci/internal/flatepool"
)

// chunk is the unit the writer classifies as zero or not: a sector, which
// is also tar's block size, so a disk's zero sectors stay whole in a tar.
const chunk = 512

// minRun is the shortest zero run coded as its own block: below it the
// block's fixed cost (about 20 bytes with the flush and the realignment)
// outweighs what compress/flate would spend.
const minRun = 4 << 10

// maxMatch is deflate's longest match (RFC 1951 section 3.2.5, code 285).
const maxMatch = 258

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("zgzip: write after close")

var zeros [chunk]byte

// Writer is a gzip writer. Errors are sticky: after one, every call
// returns it.
type Writer struct {
	w       io.Writer
	level   int
	fw      *flate.Writer
	started bool   // fw holds a stretch not yet flushed
	pending []byte // less than a chunk, not classified yet
	run     int64  // zero chunks' bytes seen and not written
	crc     uint32
	size    uint32
	err     error
	closed  bool
}

// NewWriterLevel returns a Writer compressing non-zero data at level, as
// gzip.NewWriterLevel takes it. Its header is the one compress/gzip
// writes with an empty Header.
func NewWriterLevel(w io.Writer, level int) (*Writer, error) {
	if level < flate.HuffmanOnly || level > flate.BestCompression {
		return nil, fmt.Errorf("zgzip: invalid compression level %d: use -2 to 9", level)
	}
	// Its tables are the costly part: one lent by flatepool, which
	// Close gives back.
	fw, err := flatepool.Get(io.Discard, level)
	if err != nil {
		return nil, err
	}
	z := &Writer{w: w, level: level, fw: fw}
	// ID1 ID2 CM FLG MTIME(4) XFL OS, as compress/gzip writes them.
	hdr := [10]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}
	switch level {
	case flate.BestCompression:
		hdr[8] = 2
	case flate.BestSpeed:
		hdr[8] = 4
	}
	_, z.err = w.Write(hdr[:])
	return z, nil
}

// Write compresses p.
func (z *Writer) Write(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if z.closed {
		return 0, ErrClosed
	}
	n := len(p)
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.size += uint32(n)
	if len(z.pending) > 0 {
		k := min(chunk-len(z.pending), len(p))
		z.pending = append(z.pending, p[:k]...)
		p = p[k:]
		if len(z.pending) < chunk {
			return n, nil
		}
		z.classify(z.pending)
		z.pending = z.pending[:0]
	}
	// Hand compress/flate whole stretches of non-zero chunks at once.
	start := -1 // where the open stretch of non-zero chunks began
	off := 0
	for ; off+chunk <= len(p) && z.err == nil; off += chunk {
		if !bytes.Equal(p[off:off+chunk], zeros[:]) {
			if start < 0 {
				start = off
			}
			continue
		}
		if start >= 0 {
			z.data(p[start:off])
			start = -1
		}
		z.run += chunk
	}
	if start >= 0 && z.err == nil {
		z.data(p[start:off])
	}
	z.pending = append(z.pending, p[off:]...)
	return n, z.err
}

// classify takes one whole chunk.
func (z *Writer) classify(c []byte) {
	if bytes.Equal(c, zeros[:]) {
		z.run += chunk
		return
	}
	z.data(c)
}

// data compresses non-zero data, first writing the zero run before it.
func (z *Writer) data(p []byte) {
	z.flushRun()
	if z.err != nil {
		return
	}
	if !z.started {
		z.fw.Reset(z.w)
		z.started = true
	}
	if _, err := z.fw.Write(p); err != nil {
		z.err = err
	}
}

// flushRun writes the pending zero run: a long one as its own block, a
// short one through compress/flate.
func (z *Writer) flushRun() {
	run := z.run
	z.run = 0
	if run == 0 || z.err != nil {
		return
	}
	if run < minRun {
		if !z.started {
			z.fw.Reset(z.w)
			z.started = true
		}
		for ; run > 0 && z.err == nil; run -= chunk {
			_, z.err = z.fw.Write(zeros[:])
		}
		return
	}
	if z.started {
		if err := z.fw.Flush(); err != nil {
			z.err = err
			return
		}
		z.started = false
	}
	// One literal zero, then whole matches; the remainder (under 258
	// bytes) goes to a fresh flate stretch.
	matches := (run - 1) / maxMatch
	rest := run - 1 - matches*maxMatch
	z.err = writeZeroBlock(z.w, matches)
	if z.err != nil || rest == 0 {
		return
	}
	z.fw.Reset(z.w)
	z.started = true
	_, z.err = z.fw.Write(zeros[:rest])
}

// Close writes what is pending, the final block and the gzip trailer
// (CRC-32 and size). It does not close the underlying writer.
func (z *Writer) Close() error {
	if z.err != nil {
		return z.err
	}
	if z.closed {
		return nil
	}
	z.closed = true
	if len(z.pending) > 0 {
		z.data(z.pending) // less than a chunk: never a run of its own
		z.pending = nil
	}
	z.flushRun()
	if z.err != nil {
		return z.err
	}
	if z.started {
		if z.err = z.fw.Flush(); z.err != nil {
			return z.err
		}
	}
	// An empty final fixed-Huffman block (BFINAL 1, BTYPE 01, then
	// end-of-block, code 0000000), padded: 0x03 0x00. Then CRC32, ISIZE.
	var tail [10]byte
	tail[0], tail[1] = 0x03, 0x00
	binary.LittleEndian.PutUint32(tail[2:], z.crc)
	binary.LittleEndian.PutUint32(tail[6:], z.size)
	_, z.err = z.w.Write(tail[:])
	flatepool.Put(z.fw, z.level)
	z.fw = nil
	return z.err
}
