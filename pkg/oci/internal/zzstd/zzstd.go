// Package zzstd writes zstd streams (RFC 8878) that any zstd reader
// decodes, fast for disk images: a stream is a concatenation of frames
// (section 3: "one or more frames"), each long run of zero sectors one
// frame of RLE blocks that this package writes itself, without looking at
// the zeros, and the data between the runs one frame compressed by
// github.com/klauspost/compress/zstd. A sparse disk's holes (WriteZeros)
// are never materialized, so a 1 TiB raw disk holding a few KiB of data
// compresses in milliseconds; zstd's limit of 128 KiB per block makes its
// zeros cost 4 bytes per 128 KiB (32 MiB per TiB).
//
// The output depends only on the bytes written, not on how they were
// split into calls or which of them came through WriteZeros, and on the
// klauspost/compress version.
package zzstd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// chunk is the unit the writer classifies as zero or not: a sector.
const chunk = 512

// minRun is the shortest zero run written as its own frame: a shorter run
// stays in the data's frame, where klauspost codes it in a few bytes, and
// each frame boundary costs its header and checksum and the matches
// across it.
const minRun = 64 << 10

// maxStretch bounds the data buffered for one compressed frame, which is
// also that frame's window (klauspost writes it as a single segment).
const maxStretch = 1 << 20

// Frame layout (RFC 8878 section 3.1.1).
const (
	magic = 0xFD2FB528
	// descriptor is the Frame_Header_Descriptor of a run's frame:
	// Frame_Content_Size_Flag 3 (8 bytes), no Single_Segment_Flag, no
	// checksum, no dictionary.
	descriptor = 3 << 6
	// windowLog is the run frame's Window_Log, 10 + Exponent: 128 KiB,
	// the largest block, and little for any decoder to allocate.
	windowLog = 17
	// maxBlock is Block_Maximum_Size (section 3.1.1.2.4): the smaller of
	// the window and 128 KiB.
	maxBlock = 1 << windowLog
	// Block_Type values (section 3.1.1.2.2).
	rawType = 0
	rleType = 1
)

// ErrClosed is returned by Write and WriteZeros after Close.
var ErrClosed = errors.New("zzstd: write after close")

var zeros [chunk]byte

// rleBlocks is a run of full-size RLE blocks of zeros, none the last: a
// long run's frame is written from it a buffer at a time. Made on first
// use, not at every command's start.
var rleBlocks = sync.OnceValue(func() []byte { return bytes.Repeat(rleBlock(maxBlock, false), 16<<10) })

// encoderOptions are the data frames' settings: SpeedFastest, whose
// tables are a quarter of SpeedDefault's, was as small on these disks
// (within 2%) and a quarter of the time of a fresh encoder; one
// goroutine keeps the output independent of the machine.
var encoderOptions = []zstd.EOption{
	zstd.WithEncoderLevel(zstd.SpeedFastest),
	zstd.WithEncoderConcurrency(1),
	zstd.WithWindowSize(maxStretch),
}

// Writer is a zstd writer. Errors are sticky: after one, every call
// returns it.
type Writer struct {
	w       io.Writer
	enc     *zstd.Encoder
	part    []byte // less than a chunk, not classified yet
	stretch []byte // data (and short zero runs) for the next data frame
	run     int64  // zero chunks' bytes seen and not placed
	wrote   bool   // a frame was written
	out     []byte
	err     error
	closed  bool
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) (*Writer, error) {
	enc, err := zstd.NewWriter(nil, encoderOptions...)
	if err != nil {
		return nil, fmt.Errorf("zzstd: %w", err)
	}
	return &Writer{w: w, enc: enc}, nil
}

// Write compresses p.
func (z *Writer) Write(p []byte) (int, error) {
	if err := z.check(); err != nil {
		return 0, err
	}
	n := len(p)
	if len(z.part) > 0 {
		k := min(chunk-len(z.part), len(p))
		z.part = append(z.part, p[:k]...)
		p = p[k:]
		if len(z.part) < chunk {
			return n, nil
		}
		z.classify(z.part)
		z.part = z.part[:0]
	}
	for ; len(p) >= chunk && z.err == nil; p = p[chunk:] {
		z.classify(p[:chunk])
	}
	z.part = append(z.part, p...)
	return n, z.err
}

// WriteZeros compresses n zero bytes without reading them: a hole.
func (z *Writer) WriteZeros(n int64) error {
	if err := z.check(); err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("zzstd: %d zeros", n)
	}
	// Whole chunks from the chunk boundary on go straight into the run;
	// the zeros around them go through Write, as if read.
	if len(z.part) > 0 {
		k := min(int64(chunk-len(z.part)), n)
		z.Write(zeros[:k])
		n -= k
	}
	z.run += n - n%chunk
	_, err := z.Write(zeros[:n%chunk])
	return err
}

func (z *Writer) check() error {
	if z.err != nil {
		return z.err
	}
	if z.closed {
		return ErrClosed
	}
	return nil
}

// classify takes one chunk, whole but for the stream's last.
func (z *Writer) classify(c []byte) {
	if bytes.Equal(c, zeros[:len(c)]) {
		z.run += int64(len(c))
		return
	}
	z.placeRun()
	z.add(c)
}

// placeRun puts the pending zero run before what comes next: a long one
// as its own frame, a short one into the data's.
func (z *Writer) placeRun() {
	if z.run >= minRun {
		z.flushStretch()
		z.writeRun(z.run)
		z.run = 0
	}
	for ; z.run > 0 && z.err == nil; z.run -= min(z.run, chunk) {
		z.add(zeros[:min(z.run, chunk)])
	}
	z.run = 0
}

// add appends a chunk to the stretch, first writing a full one out.
func (z *Writer) add(c []byte) {
	if len(z.stretch)+len(c) > maxStretch {
		z.flushStretch()
	}
	z.stretch = append(z.stretch, c...)
}

// flushStretch writes the buffered data as one compressed frame.
func (z *Writer) flushStretch() {
	if len(z.stretch) == 0 || z.err != nil {
		return
	}
	z.out = z.enc.EncodeAll(z.stretch, z.out[:0])
	z.stretch = z.stretch[:0]
	z.wrote = true
	z.emit(z.out)
}

// writeRun writes n zero bytes as one frame of RLE blocks; n = 0 is an
// empty frame, one empty raw block.
func (z *Writer) writeRun(n int64) {
	z.wrote = true
	var hdr [14]byte
	binary.LittleEndian.PutUint32(hdr[0:], magic)
	hdr[4] = descriptor
	hdr[5] = (windowLog - 10) << 3 // Exponent, Mantissa 0
	binary.LittleEndian.PutUint64(hdr[6:], uint64(n))
	z.emit(hdr[:])
	if n == 0 {
		z.emit(blockHeader(rawType, 0, true))
		return
	}
	// Whole buffers of full blocks, then the rest, the last one flagged.
	for full := (n - 1) / maxBlock; full > 0 && z.err == nil; {
		blocks := rleBlocks()
		k := min(full, int64(len(blocks)/4))
		z.emit(blocks[:4*k])
		full -= k
	}
	z.emit(rleBlock(int((n-1)%maxBlock+1), true))
}

// blockHeader is a 3-byte Block_Header (section 3.1.1.2): Last_Block,
// Block_Type, Block_Size, little-endian.
func blockHeader(typ, size int, last bool) []byte {
	h := uint32(size)<<3 | uint32(typ)<<1
	if last {
		h |= 1
	}
	return []byte{byte(h), byte(h >> 8), byte(h >> 16)}
}

// rleBlock is an RLE block of size zeros: its header, then the byte to
// repeat.
func rleBlock(size int, last bool) []byte {
	return append(blockHeader(rleType, size, last), 0)
}

func (z *Writer) emit(p []byte) {
	if z.err != nil {
		return
	}
	if _, err := z.w.Write(p); err != nil {
		z.err = err
	}
}

// Close writes what is pending. It does not close the underlying
// writer. A stream of no bytes is one empty frame.
func (z *Writer) Close() error {
	if err := z.check(); err != nil {
		return err
	}
	if len(z.part) > 0 {
		z.classify(z.part)
		z.part = nil
	}
	z.placeRun()
	z.flushStretch()
	if !z.wrote {
		z.writeRun(0)
	}
	z.closed = true
	z.enc.Close()
	return z.err
}
