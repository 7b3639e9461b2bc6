package build

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/iso"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/efi"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/pe"
)

// Firmware is a kind of firmware the disk boots on.
type Firmware string

// The firmwares a disk can carry programs for.
const (
	// BIOS is the MBR boot program (SeaBIOS, any PC BIOS).
	BIOS Firmware = "bios"
	// UEFI is an EFI system partition holding \EFI\BOOT\BOOTX64.EFI and
	// BOOTAA64.EFI (OVMF, AAVMF, any UEFI firmware).
	UEFI Firmware = "uefi"
)

// Firmwares lists the valid values of Firmware, in the default order.
var Firmwares = []Firmware{BIOS, UEFI}

// Errors about the firmware and architecture options, wrapped with details.
var (
	ErrFirmware = errors.New("build: bad --firmware")
	ErrArch     = errors.New("build: bad --arch")
	ErrProbe    = errors.New("build: bad --probe")
)

// ParseFirmware reads a comma-separated list such as "bios,uefi".
func ParseFirmware(list string) ([]Firmware, error) {
	var out []Firmware
	for _, f := range strings.Split(list, ",") {
		fw := Firmware(strings.ToLower(strings.TrimSpace(f)))
		if !slices.Contains(Firmwares, fw) {
			return nil, fmt.Errorf("%w %q: use bios, uefi or bios,uefi", ErrFirmware, f)
		}
		if !slices.Contains(out, fw) {
			out = append(out, fw)
		}
	}
	return out, nil
}

// ParseArches reads a comma-separated list of EFI architectures such as
// "amd64,arm64".
func ParseArches(list string) ([]efi.Arch, error) {
	var out []efi.Arch
	for _, a := range strings.Split(list, ",") {
		arch := efi.Arch(strings.ToLower(strings.TrimSpace(a)))
		if arch.Validate() != nil {
			return nil, fmt.Errorf("%w %q: use amd64, arm64 or amd64,arm64", ErrArch, a)
		}
		if !slices.Contains(out, arch) {
			out = append(out, arch)
		}
	}
	return out, nil
}

// firmware is what the disk carries: the options', or both by default,
// or BIOS alone for the user's own boot sector.
func (o Options) firmware() []Firmware {
	switch {
	case o.Firmware != nil:
		return o.Firmware
	case o.SectorFile != nil:
		return []Firmware{BIOS}
	}
	return Firmwares
}

// Has reports whether the disk carries a program for fw.
func (o Options) Has(fw Firmware) bool { return slices.Contains(o.firmware(), fw) }

// EFIArches are the architectures whose EFI applications the disk holds:
// none without UEFI.
func (o Options) EFIArches() []efi.Arch {
	switch {
	case !o.Has(UEFI):
		return nil
	case o.Arches != nil:
		return o.Arches
	}
	return efi.Arches
}

// Architectures are the CPU architectures the disk boots on, as OCI and
// KubeVirt name them: amd64 for BIOS (x86 only), plus each EFI
// application's.
func (o Options) Architectures() []string {
	var out []string
	if o.Has(BIOS) {
		out = append(out, string(efi.AMD64))
	}
	for _, a := range o.EFIArches() {
		if !slices.Contains(out, string(a)) {
			out = append(out, string(a))
		}
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(archOrder, a) - slices.Index(archOrder, b) })
	return out
}

// archOrder keeps amd64 first, as the OCI index lists it.
var archOrder = []string{string(efi.AMD64), string(efi.ARM64)}

// validateFirmware checks the firmware, architecture and size choices
// against each other.
func (o Options) validateFirmware() error {
	for _, fw := range o.Firmware {
		if !slices.Contains(Firmwares, fw) {
			return fmt.Errorf("%w %q: use bios, uefi or bios,uefi", ErrFirmware, string(fw))
		}
	}
	if o.Firmware != nil && len(o.Firmware) == 0 {
		return fmt.Errorf("%w: name at least one of bios and uefi", ErrFirmware)
	}
	for _, a := range o.Arches {
		if err := a.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrArch, err)
		}
	}
	if (o.SignKey == nil) != (o.SignCert == nil) {
		return fmt.Errorf("%w: signing needs both --sign-key and --sign-cert", ErrFirmware)
	}
	if o.SignKey != nil && !o.Has(UEFI) {
		return fmt.Errorf("%w: --sign-key signs the EFI applications, and the disk carries none; add --firmware uefi", ErrFirmware)
	}
	if o.Arches != nil && !o.Has(UEFI) {
		return fmt.Errorf("%w: --arch chooses the EFI applications, and the disk carries none; add --firmware uefi", ErrArch)
	}
	if o.SectorFile != nil && o.Has(UEFI) {
		return fmt.Errorf("%w: --sector is your own BIOS boot sector, which cannot carry the EFI applications; use --firmware bios", ErrFirmware)
	}
	if o.Has(UEFI) && o.size() < universal.MinSize {
		return fmt.Errorf("%w: a UEFI disk needs at least %d bytes (504 KiB), --size is %d; use --size 1MiB, or --firmware bios for a smaller BIOS-only disk",
			ErrFirmware, int64(universal.MinSize), o.size())
	}
	if slices.ContainsFunc(o.Formats, func(f formats.Format) bool { return f.Type == iso.Type }) {
		// The CD is read-only: bootcount could not write its counter.
		if err := o.Sector.Probes.CheckReadOnly(iso.Type); err != nil {
			return fmt.Errorf("%w: %w", ErrProbe, err)
		}
	}
	if o.Sector.Probes.Any() && o.Format.ISOBoot == iso.BootFloppy && slices.ContainsFunc(o.formatList(), func(f formats.Format) bool { return f.Type == iso.Type }) {
		// SeaBIOS's emulated floppy has no int 13h extended read, which
		// the loader reads the second stage with.
		return fmt.Errorf("%w: the probes' loader cannot read its second stage from an emulated floppy; use --iso-boot noemul", ErrProbe)
	}
	return nil
}

// Programs are the boot programs on a disk.
type Programs struct {
	// Sector is the BIOS program (or the user's sector); nil when the disk
	// carries none (--firmware uefi).
	Sector *sector.Sector
	// EFI are the EFI applications, in EFIArches order.
	EFI []EFIApp
}

// EFIApp is one EFI application on the ESP.
type EFIApp struct {
	Arch efi.Arch
	// Path is where it sits on the ESP, such as EFI/BOOT/BOOTX64.EFI.
	Path string
	// Size is its size in bytes.
	Size int
}

// Programs builds the boot programs the options ask for.
func (o Options) Programs() (*Programs, []fat.File, error) {
	p := &Programs{}
	if o.Has(BIOS) {
		so := o.Sector
		if o.Has(UEFI) {
			// The program shares the protective MBR with the GPT's
			// partition table: 440 bytes.
			so.Layout = sector.Partitioned
		}
		var err error
		if o.SectorFile != nil {
			p.Sector, err = sector.Load(o.SectorFile)
		} else {
			p.Sector, err = sector.Build(so)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	var files []fat.File
	for _, a := range o.EFIArches() {
		app, err := efi.Build(o.Sector, a)
		if err != nil {
			return nil, nil, err
		}
		if o.SignKey != nil {
			if app, err = pe.Sign(app, o.SignKey, o.SignCert); err != nil {
				return nil, nil, fmt.Errorf("sign %s: %w", a.BootPath(), err)
			}
		}
		files = append(files, fat.File{Path: a.BootPath(), Data: app})
		p.EFI = append(p.EFI, EFIApp{Arch: a, Path: a.BootPath(), Size: len(app)})
	}
	return p, files, nil
}

// rawDisk lays the programs out on a disk of the options' size: the bare
// boot sector (and a probe's second stage at its LBAs) for BIOS alone,
// else the universal GPT disk with the ESP.
func (o Options) rawDisk(p *Programs, files []fat.File) (disk.Disk, error) {
	var reserved []sector.Reserved
	switch {
	case p.Sector != nil && !p.Sector.Custom():
		reserved = p.Sector.Reserved()
	case p.Sector == nil && o.Sector.Probes.BootCount:
		// UEFI alone: no BIOS program places the EFI applications' counter.
		reserved = []sector.Reserved{sector.BootCounter()}
	}
	if !o.Has(UEFI) {
		if need := p.Sector.MinDiskSize(); o.size() < need {
			return nil, fmt.Errorf("size %d is too small for the probes' second stage: use at least %d bytes (or --size 1MiB)", o.size(), need)
		}
		chunks := []disk.Chunk{{Off: 0, Data: p.Sector.Bytes()}}
		for _, r := range reserved {
			chunks = append(chunks, disk.Chunk{Off: r.LBA * disk.SectorSize, Data: r.Data})
		}
		return disk.NewSparse(o.size(), chunks...)
	}
	var code []byte
	if p.Sector != nil {
		code = p.Sector.Code()
	}
	opts := []universal.Option{universal.WithTime(o.Format.Stamp())}
	for _, r := range reserved {
		opts = append(opts, universal.WithReserved(r.LBA, r.Data))
	}
	return universal.New(code, files, o.size(), opts...)
}

// FileSize is the size of the file format f writes for the options' disk:
// what CDI downloads and copies into its scratch space. It writes the
// format to a counter, skipping holes the way a sparse file does, so no
// file is made and a large sparse disk costs little.
func FileSize(o Options, f formats.Format) (int64, error) {
	d, _, _, err := Disk(o)
	if err != nil {
		return 0, err
	}
	var c sizeCounter
	if err := f.Write(&c, d, o.Format); err != nil {
		return 0, fmt.Errorf("write %s: %w", f.Type, err)
	}
	return c.size, nil
}

// sizeCounter is a WriteSeeker with Truncate, like a sparse *os.File,
// that keeps only the size.
type sizeCounter struct{ off, size int64 }

func (c *sizeCounter) Write(p []byte) (int, error) {
	c.off += int64(len(p))
	c.size = max(c.size, c.off)
	return len(p), nil
}

func (c *sizeCounter) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case 0:
		c.off = off
	case 1:
		c.off += off
	case 2:
		c.off = c.size + off
	}
	return c.off, nil
}

func (c *sizeCounter) Truncate(n int64) error {
	c.size = n
	return nil
}
