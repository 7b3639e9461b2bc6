package ova

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vmdk"
)

// Type is the format's name.
const Type = "ova"

// DefaultName is the base name of the archive's members when
// Options.Name is empty.
const DefaultName = "512-byte-vm"

// ErrTime is returned for a time a ustar header cannot hold.
var ErrTime = errors.New("ova: time outside the ustar range 1970 to 2242")

// Options are the OVA writer's choices.
type Options struct {
	// Time is every member's modification time. Callers pass
	// formats.Options.Stamp(); the zero value means the Unix epoch.
	Time time.Time
	// Name is the base name of the members and of the virtual machine
	// (DefaultName when empty).
	Name string
}

// Names are the archive's member names, in order.
type Names struct {
	OVF, Disk, Manifest string
}

// MemberNames returns the names of the members Write writes for base
// name name.
func MemberNames(name string) Names {
	if name == "" {
		name = DefaultName
	}
	return Names{OVF: name + ".ovf", Disk: name + "-disk1.vmdk", Manifest: name + ".mf"}
}

// Write streams d to w as an OVA.
func Write(w io.Writer, d disk.Disk, o Options) error {
	name := o.Name
	if name == "" {
		name = DefaultName
	}
	names := MemberNames(name)
	mtime := o.Time.UTC().Truncate(time.Second)
	if o.Time.IsZero() {
		mtime = time.Unix(0, 0).UTC()
	}
	if mtime.Unix() < 0 || mtime.Unix() >= 1<<33 {
		return fmt.Errorf("%w: %s", ErrTime, mtime)
	}
	vo := vmdk.Options{Subformat: vmdk.StreamOptimized, ExtentName: names.Disk}

	// First pass: the VMDK's size and digest.
	dh := &counter{h: sha256.New()}
	if err := vmdk.Write(dh, d, vo); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	diskSum := hex.EncodeToString(dh.h.Sum(nil))

	populated, err := disk.Blocks(d, vmdk.GrainSize)
	if err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	ovf := envelope(name, names.Disk, dh.n, d.Size(), int64(len(populated))*vmdk.GrainSize)
	ovfSum := sha256.Sum256(ovf)
	mf := fmt.Sprintf("SHA256(%s)= %x\nSHA256(%s)= %s\n", names.OVF, ovfSum, names.Disk, diskSum)

	tw := tar.NewWriter(w)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Size:     size,
			Mode:     0o644,
			ModTime:  mtime,
			Format:   tar.FormatUSTAR,
		}
	}
	if err := tw.WriteHeader(hdr(names.OVF, int64(len(ovf)))); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	if _, err := tw.Write(ovf); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	if err := tw.WriteHeader(hdr(names.Disk, dh.n)); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	// Second pass: the same bytes, checked against the first.
	check := &counter{h: sha256.New()}
	if err := vmdk.Write(io.MultiWriter(tw, check), d, vo); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	if check.n != dh.n || hex.EncodeToString(check.h.Sum(nil)) != diskSum {
		return errors.New("ova: the disk changed while it was written")
	}
	if err := tw.WriteHeader(hdr(names.Manifest, int64(len(mf)))); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	if _, err := io.WriteString(tw, mf); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	return nil
}

// counter hashes and counts what is written to it.
type counter struct {
	h hash.Hash
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}
