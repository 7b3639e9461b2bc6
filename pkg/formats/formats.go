// Package formats is the table of disk formats: one entry per format drives
// the --format flag, file names, media types and dispatch to the writers in
// the sub-packages (raw, qcow2, vmdk, vdi, vhd, vhdx, iso, ova).
package formats

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/iso"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/ova"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/qcow2"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vdi"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vhd"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vhdx"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vmdk"
)

// BaseName is the file name every disk file shares; the format adds its
// extension. These are the names the oVirt 512-byte VM's releases used.
const BaseName = "512-byte-vm"

// DefaultTime is used for every timestamp when SOURCE_DATE_EPOCH is unset,
// so that outputs never depend on the wall clock.
var DefaultTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Options are the per-format choices. The zero value means each format's
// default.
type Options struct {
	// ClusterSize is the qcow2 cluster size in bytes (default 64 KiB).
	ClusterSize int64
	// Qcow2Compress stores qcow2 clusters deflate-compressed.
	Qcow2Compress bool
	// VMDKSubformat is "monolithicSparse" (default) or "streamOptimized".
	VMDKSubformat string
	// VHDType is "dynamic" (default) or "fixed".
	VHDType string
	// ISOBoot is "noemul" (default) or "floppy".
	ISOBoot string
	// ISOVolumeLabel is the iso's volume label (default iso.VolumeID),
	// such as "cidata" for a cloud-init NoCloud seed.
	ISOVolumeLabel string
	// Time stamps every date a format records (VHD, VHDX, ISO, OVA).
	// The zero value means DefaultTime.
	Time time.Time
}

// Stamp returns the time to record in outputs.
func (o Options) Stamp() time.Time {
	if o.Time.IsZero() {
		return DefaultTime
	}
	return o.Time.UTC()
}

// Format is one row of the table.
type Format struct {
	// Type is the format's name on the command line and in tags.
	Type string
	// Ext is the file extension, without the dot.
	Ext string
	// QemuDriver is the QEMU block driver that reads the file (-f).
	QemuDriver string
	// MediaType is the OCI media type of the file as an artifact layer.
	MediaType string
	// Description is a short human-readable summary.
	Description string
	// Media says how QEMU attaches the file: MediaDisk (the default, a
	// hard disk of the virtual size), MediaCDROM (iso) or MediaArchive
	// (ova: a tar that holds a disk).
	Media string
	// Write streams the disk in this format to w.
	Write func(w io.Writer, d disk.Disk, o Options) error
	// Detect reports whether a file of the given size whose first bytes
	// are head (up to 64 KiB) is in this format. r reads the whole file,
	// for formats whose mark is not at the start (a fixed VHD's footer).
	// nil for raw, which is what remains.
	Detect func(head []byte, r io.ReaderAt, size int64) bool
	// Inspect reads the file's facts. It never panics on corrupt input;
	// errors wrap info.ErrCorrupt.
	Inspect func(r io.ReaderAt, size int64) (*info.Info, error)
}

// FileName is the file the format is written to: 512-byte-vm.<ext>.
func (f Format) FileName() string { return BaseName + "." + f.Ext }

// Media kinds of a Format.
const (
	MediaDisk    = ""
	MediaCDROM   = "cdrom"
	MediaArchive = "archive"
)

// Types is the table of formats, in the order they are built and listed.
var Types = []Format{
	{
		Type:        raw.Type,
		Ext:         "raw",
		QemuDriver:  "raw",
		MediaType:   "application/vnd.tinyvm-oci.disk.raw",
		Description: "raw disk image, sparse",
		Write: func(w io.Writer, d disk.Disk, _ Options) error {
			_, err := raw.Write(w, d)
			return err
		},
		Inspect: raw.Inspect,
	},
	{
		Type:        qcow2.Type,
		Ext:         "qcow2",
		QemuDriver:  "qcow2",
		MediaType:   "application/vnd.tinyvm-oci.disk.qcow2",
		Description: "QEMU copy-on-write v3, 64 KiB clusters, sparse; deflate with --qcow2-compress",
		Write: func(w io.Writer, d disk.Disk, o Options) error {
			return qcow2.Write(w, d, qcow2.Options{ClusterSize: o.ClusterSize, Compress: o.Qcow2Compress})
		},
		Detect:  qcow2.Detect,
		Inspect: qcow2.Inspect,
	},
	{
		Type:        vmdk.Type,
		Ext:         "vmdk",
		QemuDriver:  "vmdk",
		MediaType:   "application/vnd.tinyvm-oci.disk.vmdk",
		Description: "VMware VMDK, monolithicSparse (default) or streamOptimized",
		Write: func(w io.Writer, d disk.Disk, o Options) error {
			return sizeError(vmdk.Write(w, d, vmdk.Options{Subformat: o.VMDKSubformat, ExtentName: BaseName + ".vmdk"}), vmdk.ErrSize)
		},
		Detect:  vmdk.Detect,
		Inspect: vmdk.Inspect,
	},
	{
		Type:        vdi.Type,
		Ext:         "vdi",
		QemuDriver:  "vdi",
		MediaType:   "application/vnd.tinyvm-oci.disk.vdi",
		Description: "VirtualBox VDI, dynamic, 1 MiB blocks",
		Write: func(w io.Writer, d disk.Disk, _ Options) error {
			return sizeError(vdi.Write(w, d), vdi.ErrTooLarge)
		},
		Detect:  vdi.Detect,
		Inspect: vdi.Inspect,
	},
	{
		Type:        vhd.Type,
		Ext:         "vhd",
		QemuDriver:  "vpc",
		MediaType:   "application/vnd.tinyvm-oci.disk.vhd",
		Description: "Hyper-V/Azure VHD, dynamic (2 MiB blocks) or fixed",
		Write: func(w io.Writer, d disk.Disk, o Options) error {
			return sizeError(vhd.Write(w, d, vhd.Options{Type: o.VHDType, Time: o.Stamp()}), vhd.ErrTooLarge)
		},
		Detect:  vhd.Detect,
		Inspect: vhd.Inspect,
	},
	{
		Type:        vhdx.Type,
		Ext:         "vhdx",
		QemuDriver:  "vhdx",
		MediaType:   "application/vnd.tinyvm-oci.disk.vhdx",
		Description: "Hyper-V VHDX, dynamic, 1 MiB blocks",
		Write: func(w io.Writer, d disk.Disk, _ Options) error {
			return vhdx.Write(w, d, vhdx.Options{})
		},
		Detect:  vhdx.Detect,
		Inspect: vhdx.Inspect,
	},
	{
		Type:        iso.Type,
		Ext:         "iso",
		QemuDriver:  "raw",
		MediaType:   "application/vnd.tinyvm-oci.disk.iso",
		Media:       MediaCDROM,
		Description: "ISO 9660 CD-ROM with El Torito boot (no emulation or 1.44 MB floppy), hybrid MBR",
		Write: func(w io.Writer, d disk.Disk, o Options) error {
			return iso.Write(w, d, iso.Options{Boot: o.ISOBoot, Time: o.Stamp(), VolumeLabel: o.ISOVolumeLabel})
		},
		Detect:  iso.Detect,
		Inspect: iso.Inspect,
	},
	{
		Type:        ova.Type,
		Ext:         "ova",
		QemuDriver:  "vmdk", // of the disk inside; the .ova itself is a tar
		MediaType:   "application/vnd.tinyvm-oci.disk.ova",
		Media:       MediaArchive,
		Description: "OVA: OVF 1.0 descriptor, streamOptimized VMDK and SHA-256 manifest in a tar",
		Write: func(w io.Writer, d disk.Disk, o Options) error {
			return sizeError(ova.Write(w, d, ova.Options{Time: o.Stamp(), Name: BaseName}), vmdk.ErrSize)
		},
		Detect:  ova.Detect,
		Inspect: ova.Inspect,
	},
}

// ErrSize is matched (errors.Is) by a Write error when the format cannot
// hold a disk of that virtual size, such as vmdk and ova below a multiple
// of the 64 KiB grain. A default build leaves such formats out with a
// warning instead of failing.
var ErrSize = errors.New("formats: size not supported by this format")

// sizeError marks err as an ErrSize when it wraps the format package's
// own size sentinel; the message stays the package's.
func sizeError(err, sentinel error) error {
	if errors.Is(err, sentinel) {
		return sizeErr{err}
	}
	return err
}

type sizeErr struct{ error }

func (e sizeErr) Unwrap() error        { return e.error }
func (e sizeErr) Is(target error) bool { return target == ErrSize }

// Names returns the type of every format in table order.
func Names() []string {
	names := make([]string, len(Types))
	for i, f := range Types {
		names[i] = f.Type
	}
	return names
}

// Lookup returns the format named t.
func Lookup(t string) (Format, error) {
	for _, f := range Types {
		if f.Type == t {
			return f, nil
		}
	}
	return Format{}, fmt.Errorf("unknown format %q: known formats are %s", t, strings.Join(Names(), ", "))
}

// Parse turns a comma-separated list such as "qcow2,vmdk" into formats, in
// table order and without duplicates. An empty list means every format.
func Parse(list string) ([]Format, error) {
	if strings.TrimSpace(list) == "" {
		return slices.Clone(Types), nil
	}
	want := map[string]bool{}
	for _, t := range strings.Split(list, ",") {
		t = strings.ToLower(strings.TrimSpace(t))
		if _, err := Lookup(t); err != nil {
			return nil, err
		}
		want[t] = true
	}
	var out []Format
	for _, f := range Types {
		if want[f.Type] {
			out = append(out, f)
		}
	}
	return out, nil
}

// Detect finds the format of a file of the given size by its magic bytes.
// A file no row claims is raw.
func Detect(r io.ReaderAt, size int64) (Format, error) {
	head := make([]byte, min(size, 64<<10))
	if _, err := r.ReadAt(head, 0); err != nil && err != io.EOF {
		return Format{}, fmt.Errorf("read header: %w", err)
	}
	for _, f := range Types {
		if f.Detect != nil && f.Detect(head, r, size) {
			return f, nil
		}
	}
	return Lookup(raw.Type)
}
