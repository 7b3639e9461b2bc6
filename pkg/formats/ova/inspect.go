package ova

import (
	"archive/tar"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vmdk"
)

// Offsets in a ustar header block.
const (
	nameOffset  = 0
	nameSize    = 100
	magicOffset = 257
	blockSize   = 512
)

// maxOVF bounds how much of a descriptor Inspect parses.
const maxOVF = 4 << 20

// maxMembers bounds how many archive members Inspect lists.
const maxMembers = 1000

// Detect reports whether head is a tar archive whose first member is an
// OVF descriptor, as DSP0243 requires of an OVA.
func Detect(head []byte, _ io.ReaderAt, _ int64) bool {
	if len(head) < blockSize || !bytes.HasPrefix(head[magicOffset:], []byte("ustar")) {
		return false
	}
	name, _, _ := bytes.Cut(head[nameOffset:nameOffset+nameSize], []byte{0})
	return strings.HasSuffix(strings.ToLower(string(name)), ".ovf")
}

// ovfEnvelope is the part of an OVF descriptor Inspect reads.
type ovfEnvelope struct {
	XMLName    xml.Name  `xml:"Envelope"`
	References []ovfFile `xml:"References>File"`
	Disks      []ovfDisk `xml:"DiskSection>Disk"`
}

type ovfFile struct {
	Href string `xml:"http://schemas.dmtf.org/ovf/envelope/1 href,attr"`
	ID   string `xml:"http://schemas.dmtf.org/ovf/envelope/1 id,attr"`
}

type ovfDisk struct {
	Capacity string `xml:"http://schemas.dmtf.org/ovf/envelope/1 capacity,attr"`
	Units    string `xml:"http://schemas.dmtf.org/ovf/envelope/1 capacityAllocationUnits,attr"`
	FileRef  string `xml:"http://schemas.dmtf.org/ovf/envelope/1 fileRef,attr"`
}

// Inspect lists an OVA's members and reads the virtual size of its first
// disk: from the embedded VMDK when it is in the archive (with its grain,
// allocation and compression), checked against the OVF's ovf:capacity.
// Bad or truncated files give an error wrapping info.ErrCorrupt.
func Inspect(r io.ReaderAt, size int64) (*info.Info, error) {
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	type member struct{ off, size int64 }
	members := map[string]member{}
	var files []string
	var env *ovfEnvelope
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ova: tar: %w: %w", info.ErrCorrupt, err)
		}
		if len(files) == maxMembers {
			return nil, fmt.Errorf("ova: more than %d members: %w", maxMembers, info.ErrCorrupt)
		}
		// tar.Reader reads no further than the header, so the section's
		// position is where the member's data starts.
		off, _ := sr.Seek(0, io.SeekCurrent)
		if h.Size < 0 || h.Size > size-off {
			return nil, fmt.Errorf("ova: member %q of %d bytes runs past the end: %w", h.Name, h.Size, info.ErrCorrupt)
		}
		files = append(files, h.Name)
		members[h.Name] = member{off, h.Size}
		if len(files) == 1 {
			if !strings.HasSuffix(strings.ToLower(h.Name), ".ovf") {
				return nil, fmt.Errorf("ova: first member %q is not an OVF descriptor: %w", h.Name, info.ErrCorrupt)
			}
			if env, err = parseOVF(tr, h.Size); err != nil {
				return nil, err
			}
		}
	}
	if env == nil {
		return nil, fmt.Errorf("ova: empty archive: %w", info.ErrCorrupt)
	}
	if len(env.Disks) == 0 {
		return nil, fmt.Errorf("ova: the OVF has no disk: %w", info.ErrCorrupt)
	}
	capacity, err := parseCapacity(env.Disks[0])
	if err != nil {
		return nil, err
	}
	out := &info.Info{Format: Type, VirtualSize: capacity, FileSize: size, Files: files}

	href := ""
	for _, f := range env.References {
		if f.ID == env.Disks[0].FileRef {
			href = f.Href
		}
	}
	if m, ok := members[href]; ok && strings.HasSuffix(strings.ToLower(href), ".vmdk") {
		vi, err := vmdk.Inspect(info.Section(r, m.off, m.size), m.size)
		if err != nil {
			return nil, fmt.Errorf("ova: %q: %w", href, err)
		}
		if vi.VirtualSize != capacity {
			return nil, fmt.Errorf("ova: OVF capacity %d but %q holds %d bytes: %w", capacity, href, vi.VirtualSize, info.ErrCorrupt)
		}
		out.Subformat = vi.Subformat
		out.DiskOffset, out.DiskSize = m.off, m.size
		out.BlockSize, out.Allocated, out.Compressed = vi.BlockSize, vi.Allocated, vi.Compressed
	}
	return out, nil
}

func parseOVF(r io.Reader, size int64) (*ovfEnvelope, error) {
	if size > maxOVF {
		return nil, fmt.Errorf("ova: OVF descriptor of %d bytes is too large: %w", size, info.ErrCorrupt)
	}
	var env ovfEnvelope
	if err := xml.NewDecoder(io.LimitReader(r, size)).Decode(&env); err != nil {
		return nil, fmt.Errorf("ova: OVF: %w: %w", info.ErrCorrupt, err)
	}
	if env.XMLName.Space != NamespaceOVF {
		return nil, fmt.Errorf("ova: OVF envelope namespace %q is not OVF 1.0's %q: %w", env.XMLName.Space, NamespaceOVF, info.ErrCorrupt)
	}
	return &env, nil
}

// parseCapacity reads ovf:capacity in its allocation units: bytes, or
// "byte * 2^n" (DSP0243 1.0.0, 8.3 and DSP0004 programmatic units).
func parseCapacity(d ovfDisk) (int64, error) {
	bad := func(err error) (int64, error) {
		return 0, fmt.Errorf("ova: disk capacity %q %q: %w", d.Capacity, d.Units, errors.Join(info.ErrCorrupt, err))
	}
	n, err := strconv.ParseInt(strings.TrimSpace(d.Capacity), 10, 64)
	if err != nil || n <= 0 {
		return bad(err)
	}
	shift := int64(0)
	units := strings.ReplaceAll(d.Units, " ", "")
	switch {
	case units == "" || units == "byte":
	case strings.HasPrefix(units, "byte*2^"):
		if shift, err = strconv.ParseInt(units[len("byte*2^"):], 10, 64); err != nil || shift < 0 || shift > 62 {
			return bad(err)
		}
	default:
		return bad(errors.New("unknown units"))
	}
	if n > (1<<62)>>shift {
		return bad(errors.New("too large"))
	}
	return n << shift, nil
}
