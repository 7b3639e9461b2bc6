// Package build runs the pipeline from options to disk files: it builds the
// boot sector, pads it to the virtual size, and writes each selected format
// to a directory, through temp files and renames, with SHA256SUMS.
package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// DefaultSize is the default virtual disk size: 1 MiB. SeaBIOS computes
// zero cylinders for disks under 1008 sectors and then boots them only
// from legacy IDE, not from virtio-blk or AHCI (KubeVirt's defaults).
const DefaultSize = 1 << 20

// MinBootableSize is the smallest disk that boots on every bus.
const MinBootableSize = 1008 * disk.SectorSize

// SumsFile is the checksum file written beside the disks.
const SumsFile = "SHA256SUMS"

// maxLayoutSize is the largest file the OCI layout takes. The layout
// holds each file as an artifact blob, written out in full (a sparse raw
// loses its holes), and gzips each containerDisk layer twice (digest, then
// blob), so a large sparse disk would make build slow and big.
const maxLayoutSize = 256 << 20

// LayoutDir is the OCI image layout's directory inside the output.
const LayoutDir = "oci"

// maxHashSize is the largest file SHA256SUMS covers. Hashing reads every
// byte, holes included: a 1 GiB sparse raw takes seconds to hash and a
// 2 TiB one hours, while writing it is instant. Larger files (only raw
// and fixed VHD get that big) are left out, with a warning.
const maxHashSize = 256 << 20

// Options are everything a build needs.
type Options struct {
	// Sector chooses the built-in boot program.
	Sector sector.Options
	// SectorFile, when set, is the user's own 512-byte boot sector, used
	// instead of building one.
	SectorFile []byte
	// Size is the virtual disk size in bytes (0 means DefaultSize).
	Size int64
	// Formats are the formats to write (nil means every format).
	Formats []formats.Format
	// Format holds the per-format options and the timestamp.
	Format formats.Options
	// OCILayout, when set, also writes an OCI image layout at dir/oci
	// holding every file's containerDisk and the artifact (oci.WriteLayout).
	OCILayout bool
	// Version is the tinyvm-oci version the OCI annotations record.
	Version string
	// Revision, when set, is the OCI revision annotation: the commit
	// tinyvm-oci was built from.
	Revision string
	// ImageRepo, when set, also writes KubeVirt and CDI manifests at
	// dir/kubevirt that reference the containerDisk in this repository
	// (for example registry.example.com/512vm), as push would publish it.
	ImageRepo string
}

// Result describes a finished build.
type Result struct {
	// Sector is the boot sector on the disk.
	Sector *sector.Sector
	// Size is the virtual size.
	Size int64
	// Files are the disk files written, in table order.
	Files []File
	// Warnings are things the user should know, such as a disk too small
	// to boot from virtio.
	Warnings []string
	// Layout is the OCI image layout written, if any.
	Layout string
	// Manifests are the KubeVirt and CDI manifests written, if any.
	Manifests []string
}

// File is one disk file written by Files.
type File struct {
	Format formats.Format
	// Path is where the file was written.
	Path string
	// Size is the file's apparent size in bytes.
	Size int64
	// SHA256 is the hex digest, empty when the file was too large to hash.
	SHA256 string
}

func (o Options) size() int64 {
	if o.Size == 0 {
		return DefaultSize
	}
	return o.Size
}

func (o Options) formatList() []formats.Format {
	if o.Formats == nil {
		return formats.Types
	}
	return o.Formats
}

// Validate checks the options without building anything.
func (o Options) Validate() error {
	if o.Size < 0 || o.size()%disk.SectorSize != 0 {
		return fmt.Errorf("size %d is not a multiple of 512 bytes: use a size such as 512, 1MiB or 10GiB", o.Size)
	}
	if o.SectorFile != nil {
		_, err := sector.Load(o.SectorFile)
		return err
	}
	return o.Sector.Validate()
}

// Sector builds the boot sector, or checks the user's.
func (o Options) BootSector() (*sector.Sector, error) {
	if o.SectorFile != nil {
		return sector.Load(o.SectorFile)
	}
	return sector.Build(o.Sector)
}

// Disk builds the raw virtual disk: the boot sector padded with zeros.
func Disk(o Options) (disk.Disk, *sector.Sector, []string, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, nil, err
	}
	s, err := o.BootSector()
	if err != nil {
		return nil, nil, nil, err
	}
	d, err := disk.New(s.Bytes(), o.size())
	if err != nil {
		return nil, nil, nil, err
	}
	var warnings []string
	if d.Size() < MinBootableSize {
		warnings = append(warnings, fmt.Sprintf(
			"a %d-byte disk boots only from IDE on the pc machine: SeaBIOS sees 0 cylinders below %d bytes, so virtio and SATA (KubeVirt's q35 and virtio defaults) will not boot it; use --size 1MiB for those",
			d.Size(), MinBootableSize))
	}
	return d, s, warnings, nil
}

// Files writes every selected format into dir, then SHA256SUMS. Every file
// is first written to a temp file in dir; only when all are complete are
// they renamed into place, so a failed build leaves no partial file and
// replaces none of a previous build's.
func Files(dir string, o Options) (res *Result, err error) {
	d, s, warnings, err := Disk(o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", unwrapPath(err))
	}
	var staged []pending
	defer func() {
		if err != nil {
			discard(staged)
		}
	}()
	res = &Result{Sector: s, Size: d.Size(), Warnings: warnings}
	var sums strings.Builder
	for _, f := range o.formatList() {
		p, err := stage(filepath.Join(dir, f.FileName()), func(w *os.File) error {
			if err := f.Write(w, d, o.Format); err != nil {
				return fmt.Errorf("write %s: %w", f.Type, err)
			}
			return nil
		})
		if errors.Is(err, formats.ErrSize) && o.Formats == nil {
			// Asked for every format: write those that can hold this size.
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s left out: %v", f.Type, err))
			continue
		}
		if err != nil {
			return nil, err
		}
		staged = append(staged, p)
		file, err := describe(f, p)
		if err != nil {
			return nil, err
		}
		res.Files = append(res.Files, file)
		if file.SHA256 == "" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s left out of %s: hashing a %d-byte file would read it all", f.FileName(), SumsFile, file.Size))
			continue
		}
		fmt.Fprintf(&sums, "%s  %s\n", file.SHA256, f.FileName())
	}
	p, err := stage(filepath.Join(dir, SumsFile), func(w *os.File) error {
		_, err := io.WriteString(w, sums.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	staged = append(staged, p)
	if err := commit(staged); err != nil {
		return nil, err
	}
	if o.OCILayout {
		if err := writeLayout(dir, o, res); err != nil {
			return nil, err
		}
	}
	if o.ImageRepo != "" {
		if err := writeManifests(dir, o, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// writeManifests writes dir/kubevirt for the containerDisk KubeVirt can
// boot: qcow2 if it was built, else raw (virt-launcher takes only these).
func writeManifests(dir string, o Options, res *Result) error {
	tag := ""
	for _, want := range []string{"qcow2", "raw"} {
		for _, f := range res.Files {
			if tag == "" && f.Format.Type == want {
				tag = want
			}
		}
	}
	if tag == "" {
		res.Warnings = append(res.Warnings, "KubeVirt manifests not written: KubeVirt boots only qcow2 or raw containerDisks; add --format qcow2")
		return nil
	}
	ko := kubevirt.DirOptions{Repo: o.ImageRepo, Tag: tag, Size: res.Size}
	if o.SectorFile == nil && o.Sector.Then == sector.PowerOff {
		// A VM that powers itself off runs to completion: the VMI ends
		// Succeeded instead of being restarted.
		ko.RunStrategy = kubevirtv1.RunStrategyOnce
	}
	paths, err := kubevirt.WriteDir(dir, ko)
	if err != nil {
		return err
	}
	res.Manifests = paths
	return nil
}

// writeLayout writes dir/oci from the files just written.
func writeLayout(dir string, o Options, res *Result) error {
	var files []oci.File
	for _, f := range res.Files {
		if f.Size > maxLayoutSize {
			res.Warnings = append(res.Warnings, fmt.Sprintf("OCI layout not written: %s is %d bytes, over %d; push it with tinyvm-oci push", filepath.Base(f.Path), f.Size, int64(maxLayoutSize)))
			return nil
		}
		files = append(files, oci.File{Path: f.Path, Format: f.Format})
	}
	opts := []oci.Option{oci.WithCreated(o.Format.Stamp()), oci.WithRevision(o.Revision),
		oci.WithCreatedBy("tinyvm-oci build"), oci.WithVirtualMachine(o.ExportedVM)}
	if o.Version != "" {
		opts = append(opts, oci.WithVersion(o.Version))
	}
	path := filepath.Join(dir, LayoutDir)
	if err := oci.WriteLayout(path, files, opts...); err != nil {
		return err
	}
	res.Layout = path
	return nil
}

// describe sizes and hashes a staged file.
func describe(f formats.Format, p pending) (File, error) {
	st, err := os.Stat(p.tmp)
	if err != nil {
		return File{}, err
	}
	file := File{Format: f, Path: p.path, Size: st.Size()}
	if st.Size() <= maxHashSize {
		if file.SHA256, err = hashFile(p.tmp); err != nil {
			return File{}, err
		}
	}
	return file, nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", filepath.Base(path), err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteFileAtomic creates path by writing a temp file in the same
// directory and renaming it into place. On any error the temp file is
// removed and path is left as it was.
func WriteFileAtomic(path string, write func(*os.File) error) error {
	p, err := stage(path, write)
	if err != nil {
		return err
	}
	return commit([]pending{p})
}

// pending is a complete temp file waiting to be renamed to path.
type pending struct{ tmp, path string }

// stage writes a temp file beside path. On error nothing is left behind.
func stage(path string, write func(*os.File) error) (p pending, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return p, fmt.Errorf("write %s: %w", path, unwrapPath(err))
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = write(tmp); err != nil {
		return p, err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return p, fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return p, fmt.Errorf("write %s: %w", path, err)
	}
	return pending{tmp: tmp.Name(), path: path}, nil
}

// commit renames every staged file into place; on error it removes the
// temp files not yet renamed.
func commit(ps []pending) error {
	for i, p := range ps {
		if err := os.Rename(p.tmp, p.path); err != nil {
			discard(ps[i:])
			return fmt.Errorf("write %s: %w", p.path, unwrapPath(err))
		}
	}
	return nil
}

func discard(ps []pending) {
	for _, p := range ps {
		os.Remove(p.tmp)
	}
}

// unwrapPath drops the *PathError wrapper whose temp-file name would only
// confuse; the caller names the real path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
