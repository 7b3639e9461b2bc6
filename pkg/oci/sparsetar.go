package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/holes"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
)

// The artifact's tar stores the zeros of each file as holes, in GNU tar's
// PAX sparse format 1.0 (GNU tar manual, "Storing Sparse Files"), which Go's
// archive/tar reads (and so oras pull, go-containerregistry and Extract),
// as GNU tar does (TestArtifactGNUTar). Go's writer cannot write it, so
// this file writes the whole tar itself, in ustar blocks.
//
// Holes are found from the bytes, not from the filesystem, so the tar is
// the same on every machine.

const (
	blockSize = 512 // a tar block; holes are whole blocks
	// minHole is the smallest run of zero bytes stored as a hole: shorter
	// runs would cost more in the sparse map than they save.
	minHole = 8 * blockSize
	// maxOctal11 is the largest size or time an 11-digit octal field holds.
	maxOctal11 = 1<<33 - 1
)

// ustar header field offsets and sizes.
const (
	offName     = 0   // 100 bytes
	offMode     = 100 // 8
	offUID      = 108 // 8
	offGID      = 116 // 8
	offSize     = 124 // 12
	offMtime    = 136 // 12
	offChksum   = 148 // 8
	offTypeflag = 156 // 1
	offMagic    = 257 // 6, then the version, 2
	offUname    = 265 // 32
	offGname    = 297 // 32
	nameSize    = 100
	ownerSize   = 32
)

// tarOwner is who owns a tar's entries and their modes.
type tarOwner struct {
	id                int64  // uid and gid
	name              string // uname and gname; empty for none
	dirMode, fileMode int64
}

// The owners of the two kinds of tar: the artifact's files belong to no
// one in particular, a containerDisk's to the qemu user KubeVirt runs as.
var (
	artifactOwner = tarOwner{dirMode: 0o755, fileMode: 0o644}
	qemuOwner     = tarOwner{id: QemuUID, name: QemuUser, dirMode: 0o555, fileMode: 0o444}
)

// errTarField is a value a ustar field cannot hold.
var errTarField = errors.New("oci: tar: value does not fit its header field")

// segment is a run of data in a sparse file; everything between segments
// is zero.
type segment struct{ off, n int64 }

// dataSegments scans the file at p (size bytes) for runs of at least
// minHole zero bytes, block-aligned, and returns the data between them.
func dataSegments(p string, size int64) ([]segment, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	defer f.Close()
	// The file system's holes read as zeros: skip them unread. The
	// segments still come from the bytes (a hole is a run of zeros like
	// any other), so they are the same where holes are unknown.
	ext, ok := holes.Data(context.Background(), f, size)
	if !ok {
		ext = []holes.Extent{{Off: 0, End: size}}
	}
	var segs []segment
	var zeroRun int64 // zero bytes before off, since the last data
	start := int64(-1)
	// Read in large pieces, look at them a tar block at a time: one
	// read(2) per 512 bytes costs more than the compression after it.
	bp := scanBufs.Get().(*[]byte)
	defer scanBufs.Put(bp)
	buf := *bp
	var off int64
	for _, e := range ext {
		// Extents start and end on file system blocks, whole tar
		// blocks apart from a last partial one.
		zeroRun += e.Off - off
		off = e.Off
		for off < e.End {
			m := min(int64(len(buf)), e.End-off)
			if _, err := f.ReadAt(buf[:m], off); err != nil {
				return nil, fmt.Errorf("oci: read %s: %w", p, err)
			}
			for i := int64(0); i < m; i += blockSize {
				b := buf[i:min(i+blockSize, m)]
				n := int64(len(b))
				if disk.IsZero(b) {
					zeroRun += n
				} else {
					if start < 0 {
						start = off
					} else if zeroRun >= minHole {
						segs = append(segs, segment{start, off - zeroRun - start})
						start = off
					}
					zeroRun = 0
				}
				off += n
			}
		}
	}
	zeroRun += size - off
	if start >= 0 {
		end := size
		if zeroRun >= minHole {
			end = size - zeroRun
		}
		segs = append(segs, segment{start, end - start})
	}
	return segs, nil
}

// scanBufs holds the read buffers of dataSegments and copySegments.
var scanBufs = sync.Pool{New: func() any { b := make([]byte, scanSize); return &b }}

// scanSize is how much dataSegments and copySegments read at a time:
// enough that read(2) calls cost little next to the compression, small
// enough that a build's few buffers do not dominate its allocation.
const scanSize = 256 << 10

// sparse reports whether storing the file as segs saves anything.
func sparse(segs []segment, size int64) bool {
	var data int64
	for _, s := range segs {
		data += s.n
	}
	return size-data >= minHole
}

// tarHeader writes one ustar header block, owned by o.
func tarHeader(w io.Writer, name string, typeflag byte, mode, size int64, mtime time.Time, o tarOwner) error {
	if len(name) > nameSize || size < 0 || size > maxOctal11 || mtime.Unix() < 0 || mtime.Unix() > maxOctal11 || len(o.name) > ownerSize {
		return fmt.Errorf("%w: %q, size %d, time %v", errTarField, name, size, mtime)
	}
	var b [blockSize]byte
	copy(b[offName:], name)
	octal(b[offMode:offMode+8], mode)
	octal(b[offUID:offUID+8], o.id)
	octal(b[offGID:offGID+8], o.id)
	copy(b[offUname:], o.name)
	copy(b[offGname:], o.name)
	octal(b[offSize:offSize+12], size)
	octal(b[offMtime:offMtime+12], mtime.Unix())
	b[offTypeflag] = typeflag
	copy(b[offMagic:], "ustar\x0000")
	// The checksum is the sum of the header's bytes with the checksum
	// field as spaces, written as six octal digits, NUL, space.
	copy(b[offChksum:offChksum+8], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[offChksum:], fmt.Sprintf("%06o\x00 ", sum))
	_, err := w.Write(b[:])
	return err
}

// octal writes v as zero-padded octal digits filling field but its last
// byte, which stays NUL.
func octal(field []byte, v int64) {
	s := strconv.FormatInt(v, 8)
	for len(s) < len(field)-1 {
		s = "0" + s
	}
	copy(field, s)
}

// pad writes the zeros that take n bytes of data to a block boundary.
func pad(w io.Writer, n int64) error {
	if r := n % blockSize; r != 0 {
		_, err := w.Write(make([]byte, blockSize-r))
		return err
	}
	return nil
}

// paxRecord is one "LEN key=value\n" record, LEN counting the whole
// record, itself included.
func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3 // space, =, newline
	n += len(strconv.Itoa(n))
	r := strconv.Itoa(n) + " " + k + "=" + v + "\n"
	if len(r) != n { // the length gained a digit
		r = strconv.Itoa(len(r)) + " " + k + "=" + v + "\n"
	}
	return r
}

// writeSparseTar writes the tar of dir/ and the files, owned by o: the
// directory entry, then each file, as a PAX sparse 1.0 entry when it has
// holes and a plain one otherwise, then the two zero blocks that end a
// tar.
func writeSparseTar(w io.Writer, dir string, files []dirFile, mtime time.Time, o tarOwner) error {
	if err := tarHeader(w, dir+"/", '5', o.dirMode, 0, mtime, o); err != nil {
		return err
	}
	for i, f := range files {
		name := path.Join(dir, f.name)
		if f.segs == nil {
			if err := tarHeader(w, name, '0', o.fileMode, f.size, mtime, o); err != nil {
				return err
			}
			if err := copyExactly(w, f.path, f.size); err != nil {
				return err
			}
			if err := pad(w, f.size); err != nil {
				return err
			}
			continue
		}
		// The sparse map: the number of segments, then each offset and
		// length, one decimal number a line, padded to a block. A file
		// that ends in a hole gets a last, empty segment at its end, as
		// GNU tar writes it.
		segs := f.segs
		if n := len(segs); n == 0 || segs[n-1].off+segs[n-1].n < f.size {
			segs = append(segs[:n:n], segment{f.size, 0})
		}
		var m bytes.Buffer
		fmt.Fprintf(&m, "%d\n", len(segs))
		var data int64
		for _, s := range segs {
			fmt.Fprintf(&m, "%d\n%d\n", s.off, s.n)
			data += s.n
		}
		if r := m.Len() % blockSize; r != 0 {
			m.Write(make([]byte, blockSize-r))
		}
		pax := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
			paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", strconv.FormatInt(f.size, 10))
		if err := tarHeader(w, path.Join(dir, fmt.Sprintf("PaxHeaders.%d", i), f.name), 'x', o.fileMode, int64(len(pax)), mtime, o); err != nil {
			return err
		}
		if _, err := io.WriteString(w, pax); err != nil {
			return err
		}
		if err := pad(w, int64(len(pax))); err != nil {
			return err
		}
		body := int64(m.Len()) + data
		if err := tarHeader(w, path.Join(dir, fmt.Sprintf("GNUSparseFile.%d", i), f.name), '0', o.fileMode, body, mtime, o); err != nil {
			return err
		}
		if _, err := w.Write(m.Bytes()); err != nil {
			return err
		}
		if err := copySegments(w, f.path, f.segs); err != nil {
			return err
		}
		if err := pad(w, body); err != nil {
			return err
		}
	}
	_, err := w.Write(make([]byte, 2*blockSize))
	return err
}

// copySegments copies the data segments of the file at p to w.
func copySegments(w io.Writer, p string, segs []segment) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	defer f.Close()
	// One buffer for every segment: io.Copy would allocate one each.
	bp := scanBufs.Get().(*[]byte)
	defer scanBufs.Put(bp)
	for _, s := range segs {
		n, err := io.CopyBuffer(w, io.NewSectionReader(f, s.off, s.n), *bp)
		if err != nil {
			return fmt.Errorf("oci: read %s: %w", p, err)
		}
		if n != s.n {
			return fmt.Errorf("oci: %s shrank while being read", p)
		}
	}
	return nil
}
