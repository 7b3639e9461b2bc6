package vmdk

import "io"

// truncater is implemented by *os.File.
type truncater interface {
	Truncate(size int64) error
}

// sink is the writers' output: it keeps the first error (later writes do
// nothing) and turns runs of zeros into holes when the destination is a
// seekable file, so a 1 TiB monolithicSparse file, whose empty grain
// tables are 128 MiB of zeros, takes a few KiB on disk.
type sink struct {
	w     io.Writer
	file  io.WriteSeeker // non-nil when zeros may be skipped
	start int64          // offset of the image in file
	pos   int64          // bytes of image emitted, zeros included
	zeros int64          // trailing zeros not yet emitted
	err   error
}

var zeroChunk [64 << 10]byte

func newSink(w io.Writer) *sink {
	s := &sink{w: w}
	if ws, ok := w.(io.WriteSeeker); ok {
		if _, ok := w.(truncater); ok {
			if start, err := ws.Seek(0, io.SeekCurrent); err == nil {
				s.file, s.start = ws, start
			}
		}
	}
	return s
}

func (s *sink) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// zero adds n zero bytes.
func (s *sink) zero(n int64) {
	s.zeros += n
	s.pos += n
}

// flush emits pending zeros, as a seek or as bytes.
func (s *sink) flush() {
	if s.err != nil || s.zeros == 0 {
		return
	}
	if s.file != nil {
		if _, err := s.file.Seek(s.zeros, io.SeekCurrent); err != nil {
			s.fail(err)
		}
		s.zeros = 0
		return
	}
	for s.zeros > 0 && s.err == nil {
		n := min(s.zeros, int64(len(zeroChunk)))
		if _, err := s.w.Write(zeroChunk[:n]); err != nil {
			s.fail(err)
		}
		s.zeros -= n
	}
}

func (s *sink) write(p []byte) {
	s.flush()
	if s.err != nil {
		return
	}
	if _, err := s.w.Write(p); err != nil {
		s.fail(err)
	}
	s.pos += int64(len(p))
}

// finish emits trailing zeros and returns the first error.
func (s *sink) finish() error {
	if s.err == nil && s.zeros > 0 && s.file != nil {
		s.zeros = 0
		if err := s.file.(truncater).Truncate(s.start + s.pos); err != nil {
			s.fail(err)
		} else if _, err := s.file.Seek(s.start+s.pos, io.SeekStart); err != nil {
			s.fail(err)
		}
	}
	s.flush()
	return s.err
}
