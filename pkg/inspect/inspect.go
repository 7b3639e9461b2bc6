// Package inspect reports the facts of a disk file: its format, found by
// magic bytes, and what that format's reader says about it.
//
// The work is bounded by what the file stores, not by the sizes it claims:
// the format readers skip tables that lie in the file's holes (found with
// SEEK_DATA and SEEK_HOLE), read each table at most once, and stop at the
// first table that overlaps another, so a sparse 64 GiB image that holds
// 4 MiB costs about 4 MiB of reads.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/tinyvm-oci/tinyvm-oci/internal/holes"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// File inspects the disk file at path; see FileContext.
func File(path string) (*info.Info, error) {
	return FileContext(context.Background(), path)
}

// FileContext inspects the disk file at path. It refuses anything but a
// regular file (a FIFO, a device, a directory) before reading it, and
// opens the file without blocking, so a FIFO put in its place cannot
// hang it. When ctx is done it stops at the next read and returns ctx's
// error.
//
// A file that is corrupt (an error wrapping info.ErrCorrupt) or that is
// not a disk image at all (info.ErrNotDisk: empty, not a whole number of
// sectors, or no boot signature and no format's magic) gives both the
// error and an Info with what could be read and the reason in Corrupt or
// NotDisk, so the caller can print the facts and still fail.
func FileContext(ctx context.Context, path string) (*info.Info, error) {
	inf, _, err := inspectFile(ctx, path)
	return inf, escape(err)
}

// inspectFile is FileContext, returning the reader too so that tests can
// count the bytes read.
func inspectFile(ctx context.Context, path string) (*info.Info, *reader, error) {
	name := info.Quote(path)
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if err := regular(name, st); err != nil {
		return nil, nil, err
	}
	f, err := open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	// The path may have been replaced between Stat and open.
	if st, err = f.Stat(); err != nil {
		return nil, nil, err
	}
	if err := regular(name, st); err != nil {
		return nil, nil, err
	}
	size := st.Size()
	r := newReader(ctx, f, size)
	inf, err := inspect(r, size)
	if err := ctx.Err(); err != nil {
		// Wrap both: the generic exit-code mapping looks for
		// context.Canceled, the user wants to read the cause (a signal).
		if cause := context.Cause(ctx); cause != nil && cause != err {
			return nil, r, fmt.Errorf("inspect %s: %w (%w)", name, err, cause)
		}
		return nil, r, fmt.Errorf("inspect %s: %w", name, err)
	}
	if inf != nil {
		inf.FileSize = size
		if inf.Format == raw.Type && inf.NotDisk == "" {
			// A raw file's allocation is its blocks on disk: holes are zeros.
			if blocks, ok := allocatedBlocks(st); ok {
				inf.Allocated = min(blocks*512, size)
			}
		}
	}
	if err != nil {
		return inf, r, fmt.Errorf("%s: %w", name, err)
	}
	return inf, r, nil
}

// escape returns err, or an escapedError when its text holds control
// characters: a path from the command line in an os error, bytes of the
// file in a parser's complaint.
func escape(err error) error {
	if err == nil || info.Escape(err.Error()) == err.Error() {
		return err
	}
	return escapedError{err}
}

// escapedError is an error whose text is escaped for printing; errors.Is
// and As see the error inside.
type escapedError struct{ err error }

func (e escapedError) Error() string { return info.Escape(e.err.Error()) }
func (e escapedError) Unwrap() error { return e.err }

// inspect detects the format of the file r of size bytes and reads it.
func inspect(r io.ReaderAt, size int64) (*info.Info, error) {
	format, err := formats.Detect(r, size)
	if err != nil {
		return nil, err
	}
	inf, err := format.Inspect(r, size)
	if err != nil {
		if !errors.Is(err, info.ErrCorrupt) {
			return nil, err
		}
		return &info.Info{Format: format.Type, Corrupt: info.Escape(err.Error())},
			fmt.Errorf("not a valid %s file: %w", format.Type, err)
	}
	if format.Type == raw.Type {
		if why := notDisk(r, size); why != "" {
			inf.NotDisk = why
			return inf, fmt.Errorf("%w: %s", info.ErrNotDisk, why)
		}
		// The bootcount probe's counter, readable offline (docs/probes.md).
		n, ok, err := sector.ReadBootCount(r)
		if err != nil {
			return nil, err
		}
		if ok {
			inf.BootCount = &n
		}
	}
	// Names come from the file: quote any that could carry escapes.
	inf.Subformat = info.Quote(inf.Subformat)
	for i, f := range inf.Files {
		inf.Files[i] = info.Quote(f)
	}
	return inf, nil
}

// Boot sector signature (the last two bytes of sector 0).
const (
	sectorSize      = 512
	signatureOffset = 510
)

// notDisk says why a file that no format claims is not a raw disk either,
// or "" when it is one: whole sectors, and a boot signature in the first.
func notDisk(r io.ReaderAt, size int64) string {
	switch {
	case size == 0:
		return "the file is empty"
	case size%sectorSize != 0:
		return fmt.Sprintf("%d bytes is not a whole number of 512-byte sectors, and no disk format's magic matches", size)
	}
	var sig [2]byte
	if _, err := r.ReadAt(sig[:], signatureOffset); err != nil {
		return fmt.Sprintf("read the boot sector: %v", err)
	}
	if sig != [2]byte{0x55, 0xAA} {
		return "no boot signature (0x55 0xAA at byte 510), and no disk format's magic matches"
	}
	return ""
}

// regular refuses what is not a regular file, naming what it is.
func regular(name string, st fs.FileInfo) error {
	m := st.Mode()
	if m.IsRegular() {
		return nil
	}
	what := "not a regular file"
	switch {
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	case m&fs.ModeDevice != 0:
		what = "a block device"
	}
	return fmt.Errorf("%s is %s, not a regular file: inspect reads disk image files", name, what)
}

// reader reads the file for the format readers: it fails once ctx is
// done, knows the file's holes (info.SparseReaderAt), and counts the
// bytes read.
type reader struct {
	ctx   context.Context
	f     *os.File
	size  int64
	data  []holes.Extent // where the data is, ascending
	known bool           // data lists the extents; false: every byte may be data
	asked bool           // the extents have been looked up
	bytes int64
}

func newReader(ctx context.Context, f *os.File, size int64) *reader {
	return &reader{ctx: ctx, f: f, size: size}
}

// ReadAt reads the file unless ctx is done.
func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	r.bytes += int64(len(p))
	return r.f.ReadAt(p, off)
}

// NextData returns the start of the first data extent that ends after off.
// The extents are looked up on the first call: the formats whose tables
// can be sparse ask, the others never pay for it.
func (r *reader) NextData(off int64) int64 {
	if !r.asked {
		r.data, r.known = holes.Data(r.ctx, r.f, r.size)
		r.asked = true
	}
	if !r.known {
		return off
	}
	lo, hi := 0, len(r.data)
	for lo < hi {
		m := (lo + hi) / 2
		if r.data[m].End <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.data) {
		return max(off, 1<<62) // only holes remain
	}
	return max(off, r.data[lo].Off)
}
