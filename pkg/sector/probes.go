package sector

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Probes are the opt-in fixture probes: each prints one parseable line on
// COM1 (the format is in docs/probes.md and testdata/probes). The zero
// value is none, which keeps the one-sector program; any probe makes the
// MBR load a second stage from the sectors after it.
type Probes struct {
	// Heartbeat, when not zero, prints "tinyvm heartbeat N" every
	// Heartbeat while waiting, N counting up from 1, timed by the BIOS
	// tick count.
	Heartbeat time.Duration
	// Echo echoes every byte received on COM1 (CR as CR LF); the line
	// "poweroff" powers off.
	Echo bool
	// Disks prints "tinyvm disks N", the hard disks the BIOS counts, then
	// "tinyvm volume LABEL" for each disk or CD with an ISO 9660 label.
	Disks bool
	// BootCount increments the counter in the sector at BootCountLBA of
	// the boot disk and prints "tinyvm boot N".
	BootCount bool
	// ID prints "tinyvm id XXXXXXXX", Options.ID.
	ID bool
}

// LinesVersion names the version of the probes' serial line format, the
// first line of testdata/probes/lines.txt. A change to any line's format
// is a new version.
const LinesVersion = "tinyvm probes v1"

// Probe names, as --probe takes them.
const (
	ProbeHeartbeat = "heartbeat"
	ProbeEcho      = "echo"
	ProbeDisks     = "disks"
	ProbeBootCount = "bootcount"
	ProbeID        = "id"
)

// ProbeNames lists the valid probe names, in the order their lines print.
var ProbeNames = []string{ProbeHeartbeat, ProbeEcho, ProbeDisks, ProbeBootCount, ProbeID}

// The heartbeat's interval: DefaultHeartbeat when none is given, and the
// range the 16-bit tick arithmetic allows (whole ticks of about 55 ms).
const (
	DefaultHeartbeat = time.Second
	MinHeartbeat     = 100 * time.Millisecond
	MaxHeartbeat     = 59 * time.Minute
)

// Errors about probes, wrapped with details.
var (
	ErrBadProbe    = errors.New("sector: unknown probe")
	ErrBadInterval = errors.New("sector: heartbeat interval out of range")
	ErrProbeThen   = errors.New("sector: probe needs --then wait")
	ErrReadOnly    = errors.New("sector: probe bootcount needs a writable disk")
)

// ParseProbes parses a comma-separated probe list such as
// "heartbeat=500ms,echo,bootcount". An empty list is no probes.
func ParseProbes(list string) (Probes, error) {
	var p Probes
	seen := map[string]bool{}
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			if strings.TrimSpace(list) == "" {
				break
			}
			return Probes{}, fmt.Errorf("%w: empty name in %q; use a comma-separated list of %s", ErrBadProbe, list, strings.Join(ProbeNames, ", "))
		}
		name, value, hasValue := strings.Cut(item, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if seen[name] {
			return Probes{}, fmt.Errorf("%w: %q given twice", ErrBadProbe, name)
		}
		seen[name] = true
		if hasValue && name != ProbeHeartbeat {
			return Probes{}, fmt.Errorf("%w: %q takes no value, got %q", ErrBadProbe, name, item)
		}
		switch name {
		case ProbeHeartbeat:
			p.Heartbeat = DefaultHeartbeat
			if hasValue {
				d, err := time.ParseDuration(strings.TrimSpace(value))
				if err != nil {
					return Probes{}, fmt.Errorf("%w: %q is not a duration such as 1s or 500ms", ErrBadInterval, value)
				}
				if err := checkInterval(d); err != nil {
					return Probes{}, err
				}
				p.Heartbeat = d
			}
		case ProbeEcho:
			p.Echo = true
		case ProbeDisks:
			p.Disks = true
		case ProbeBootCount:
			p.BootCount = true
		case ProbeID:
			p.ID = true
		default:
			return Probes{}, fmt.Errorf("%w %q: use %s (heartbeat takes =INTERVAL)", ErrBadProbe, name, strings.Join(ProbeNames, ", "))
		}
	}
	return p, nil
}

func checkInterval(d time.Duration) error {
	if d < MinHeartbeat || d > MaxHeartbeat {
		return fmt.Errorf("%w: %v; use %v to %v", ErrBadInterval, d, MinHeartbeat, MaxHeartbeat)
	}
	return nil
}

// Any reports whether any probe is on.
func (p Probes) Any() bool { return p != Probes{} }

// String is the canonical list that ParseProbes reads back, in
// ProbeNames order, such as "heartbeat=1s,bootcount".
func (p Probes) String() string {
	var out []string
	if p.Heartbeat != 0 {
		out = append(out, ProbeHeartbeat+"="+p.Heartbeat.String())
	}
	for _, on := range []struct {
		name string
		on   bool
	}{{ProbeEcho, p.Echo}, {ProbeDisks, p.Disks}, {ProbeBootCount, p.BootCount}, {ProbeID, p.ID}} {
		if on.on {
			out = append(out, on.name)
		}
	}
	return strings.Join(out, ",")
}

// CheckReadOnly refuses the probes on a medium the VM cannot write, such
// as an ISO: bootcount writes its counter to the boot disk. medium names
// it in the error.
func (p Probes) CheckReadOnly(medium string) error {
	if p.BootCount {
		return fmt.Errorf("%w: %s is read-only; drop bootcount or use a disk format", ErrReadOnly, medium)
	}
	return nil
}

// validate checks the probes against the rest of the options.
func (p Probes) validate(then Then) error {
	if p.Heartbeat != 0 {
		if err := checkInterval(p.Heartbeat); err != nil {
			return err
		}
	}
	for _, w := range []struct {
		name string
		on   bool
	}{{ProbeHeartbeat, p.Heartbeat != 0}, {ProbeEcho, p.Echo}} {
		if w.on && then != Wait {
			return fmt.Errorf("%w: %s runs while the VM waits, not with --then %s", ErrProbeThen, w.name, then)
		}
	}
	return nil
}

// heartbeatTicks converts the interval to BIOS timer ticks, rounding up.
func (p Probes) heartbeatTicks() uint16 {
	return uint16(math.Ceil(p.Heartbeat.Seconds() * ticksPerSecond))
}

// ID is the short build id that the id probe prints: 8 hex digits of a
// SHA-256 of the options with their defaults filled in, the layout left
// out, so the BIOS and UEFI programs of one disk print the same id and
// disks built with different options print different ones.
func (o Options) ID() string {
	h := sha256.New()
	for _, f := range []string{"tinyvm-oci id v1", o.message(), o.serial(), string(o.then()), o.Timeout.String(), o.Probes.String()} {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// BootCountLBA is the boot counter's sector: in the universal disk's free
// gap before the ESP (LBA 34-63) and, on a bare disk, after the second
// stage. It starts with BootCountMagic; the count follows as a
// little-endian uint32.
const BootCountLBA = 63

// Offsets of the counter's sector.
const (
	bootCountOffset = len(BootCountMagic) // the uint32 count
	bootCountEnd    = bootCountOffset + 4
)

// Where the second stage lives: its first LBA in each layout, where the
// loader puts it in memory (right after the MBR), its 4-byte signature
// ("TV" and two bytes of the id) and the entry after it.
const (
	stage2BareLBA = 1
	stage2GPTLBA  = 34
	stage2Sig     = "TV"
	stage2Load    = 0x7E00
	stage2Entry   = stage2Load + 4
)

// BootCountMagic starts the boot counter's sector.
const BootCountMagic = "tinyvm bootcount"

// ReadBootCount reads the boot counter from a raw disk, as the bootcount
// probe leaves it: ok is false when the disk has no counter sector.
func ReadBootCount(r io.ReaderAt) (n uint32, ok bool, err error) {
	b := make([]byte, Size)
	m, err := r.ReadAt(b, BootCountLBA*Size)
	if m < bootCountEnd {
		if err == nil || errors.Is(err, io.EOF) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("sector: read the boot counter: %w", err)
	}
	if !bytes.HasPrefix(b, []byte(BootCountMagic)) {
		return 0, false, nil
	}
	return binary.LittleEndian.Uint32(b[bootCountOffset:]), true, nil
}

// BootCounter is the counter's sector as a new disk holds it, counting 0,
// for a disk whose boot programs run the bootcount probe but carry no
// BIOS program to place it (Sector.Reserved does when they do).
func BootCounter() Reserved { return Reserved{LBA: BootCountLBA, Data: bootCountSector()} }

// bootCountSector is the counter's initial sector, counting 0.
func bootCountSector() []byte {
	b := make([]byte, Size)
	copy(b, BootCountMagic)
	return b
}

// Stage2LBA is where the second stage starts on the layout's disk: LBA 1
// on a bare disk, LBA 34 (the first sector after the primary GPT) on the
// universal disk.
func (l Layout) Stage2LBA() int64 {
	if l == Partitioned {
		return stage2GPTLBA
	}
	return stage2BareLBA
}

// Stage2Budget is how many bytes the second stage may take: the sectors
// from Stage2LBA up to the boot counter.
func (l Layout) Stage2Budget() int { return int(BootCountLBA-l.Stage2LBA()) * Size }

// Reserved is data the program needs on its disk besides the boot
// sector, at a sector address.
type Reserved struct {
	LBA  int64  // the first sector
	Data []byte // whole sectors
}

// Stage2 returns the second stage, whole sectors to be written at
// Layout().Stage2LBA(), or nil for a one-sector program.
func (s *Sector) Stage2() []byte { return bytes.Clone(s.stage2) }

// Reserved returns what the disk must hold besides the boot sector: the
// second stage and, with bootcount, the counter's sector at BootCountLBA.
// It is empty for a one-sector program. pkg/disk/universal places them
// with WithReserved; a bare disk writes them at their LBAs.
func (s *Sector) Reserved() []Reserved {
	var out []Reserved
	if s.stage2 != nil {
		out = append(out, Reserved{LBA: s.layout.Stage2LBA(), Data: bytes.Clone(s.stage2)})
	}
	if s.counter != nil {
		out = append(out, Reserved{LBA: BootCountLBA, Data: bytes.Clone(s.counter)})
	}
	return out
}

// Stage2Free is how many bytes of the layout's second-stage budget are
// left; 0 for a one-sector program.
func (s *Sector) Stage2Free() int {
	if s.stage2 == nil {
		return 0
	}
	return s.layout.Stage2Budget() - s.stage2Used
}

// BootImage returns what an El Torito no-emulation entry must load for
// the program to boot from a CD: the boot sector followed by the second
// stage at its LBA (zeros between), or just the sector without probes.
// Loaded whole at 0000:7C00, the loader finds the stage there instead of
// reading it; the entry's sector count is len/512.
func (s *Sector) BootImage() []byte {
	if s.stage2 == nil {
		return s.Bytes()
	}
	lba := s.layout.Stage2LBA()
	b := make([]byte, lba*Size+int64(len(s.stage2)))
	copy(b, s.code[:])
	copy(b[lba*Size:], s.stage2)
	return b
}

// MinDiskSize is the smallest disk that holds the boot sector and
// everything Reserved places.
func (s *Sector) MinDiskSize() int64 {
	end := int64(Size)
	for _, r := range s.Reserved() {
		end = max(end, r.LBA*Size+int64(len(r.Data)))
	}
	return end
}
