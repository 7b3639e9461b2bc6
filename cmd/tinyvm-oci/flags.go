package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/iso"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/qcow2"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vhd"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/vmdk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/pe"
)

// buildFlags are the sector, size and format flags that build, run and
// push share.
type buildFlags struct {
	message       string
	serial        string
	then          string
	timeout       time.Duration
	sectorFile    string
	size          string
	formats       string
	clusterSize   string
	qcow2Compress bool
	vmdkSubformat string
	vhdType       string
	isoBoot       string
	volumeLabel   string
	firmware      string
	arch          string
	probes        string
	signKey       string
	signCert      string
	fs            *pflag.FlagSet
}

// sectorFlags shape the built-in program, which --sector replaces.
var sectorFlags = []string{"message", "serial", "then", "timeout", "probe"}

// formatFlags belong to one format each: giving one for a format the
// command does not build is a mistake, not a no-op.
var formatFlags = []struct{ flag, format string }{
	{"cluster-size", qcow2.Type},
	{"qcow2-compress", qcow2.Type},
	{"vmdk-subformat", vmdk.Type},
	{"vhd-type", vhd.Type},
	{"iso-boot", iso.Type},
	{"volume-label", iso.Type},
}

// register adds the flags. withFormats adds --format, whose meaning the
// command gives in usage.
func (f *buildFlags) register(fs *pflag.FlagSet, formatUsage string) {
	f.fs = fs
	fs.StringVar(&f.message, "message", "", "screen text under the banner (printable ASCII; default says what the VM does next)")
	fs.StringVar(&f.serial, "serial", sector.DefaultSerial, `marker line written to COM1 ("" writes nothing)`)
	fs.StringVar(&f.then, "then", string(sector.Wait), "after printing: wait (power off on a key or the ACPI power button), poweroff, halt or reboot")
	fs.DurationVar(&f.timeout, "timeout", 0, "with --then wait, power off after this long (e.g. 30s)")
	fs.StringVar(&f.sectorFile, "sector", "", "use this 512-byte boot sector file (ending in 0x55AA) instead of the built-in program")
	fs.StringVar(&f.size, "size", "1MiB", "virtual disk size (512, 1MiB, 10GiB; a multiple of 512; UEFI needs 504KiB)")
	fs.StringVar(&f.firmware, "firmware", "bios,uefi", "what the disk boots on: bios (the MBR program), uefi (an EFI system partition) or both; bios alone is the classic bare 512-byte disk")
	fs.StringVar(&f.arch, "arch", "amd64,arm64", "with uefi, the EFI applications the disk holds: amd64, arm64 or both")
	fs.StringVar(&f.signKey, "sign-key", "", "with uefi, sign the EFI applications (Authenticode) with this unencrypted RSA key (PEM), for Secure Boot")
	fs.StringVar(&f.signCert, "sign-cert", "", "the X.509 certificate (PEM) of --sign-key, which Secure Boot's db must hold")
	fs.StringVar(&f.probes, "probe", "", "fixture probes, comma-separated: heartbeat[=INTERVAL], echo, disks, bootcount, id (BIOS and UEFI; see docs/probes.md)")
	if formatUsage != "" {
		fs.StringVar(&f.formats, "format", "", formatUsage)
	}
	fs.StringVar(&f.clusterSize, "cluster-size", "64KiB", "qcow2 cluster size")
	fs.BoolVar(&f.qcow2Compress, "qcow2-compress", false, "store qcow2 clusters deflate-compressed, as qemu-img convert -c")
	fs.StringVar(&f.vmdkSubformat, "vmdk-subformat", "monolithicSparse", "vmdk subformat: monolithicSparse or streamOptimized")
	fs.StringVar(&f.vhdType, "vhd-type", "dynamic", "vhd type: dynamic or fixed (Azure)")
	fs.StringVar(&f.isoBoot, "iso-boot", "noemul", "iso El Torito boot: noemul or floppy (1.44 MB emulation)")
	fs.StringVar(&f.volumeLabel, "volume-label", iso.VolumeID, "iso volume label (up to 32 printable ASCII characters), such as cidata")
}

// options turns the flags into build options. Bad values, and flags that
// would have no effect, are usage errors.
func (f *buildFlags) options() (build.Options, error) {
	var o build.Options
	o.Sector = sector.Options{Message: f.message, Serial: &f.serial, Then: sector.Then(strings.ToLower(f.then)), Timeout: f.timeout}
	if f.probes != "" {
		p, err := sector.ParseProbes(f.probes)
		if err != nil {
			return o, usageError{fmt.Errorf("--probe: %w", err)}
		}
		o.Sector.Probes = p
	}
	if f.fs.Changed("firmware") {
		fw, err := build.ParseFirmware(f.firmware)
		if err != nil {
			return o, usageError{err}
		}
		o.Firmware = fw
	}
	if f.signKey != "" || f.signCert != "" {
		if f.signKey == "" || f.signCert == "" {
			return o, usagef("signing needs both --sign-key and --sign-cert")
		}
		kb, err := os.ReadFile(f.signKey)
		if err != nil {
			return o, fmt.Errorf("read --sign-key: %w", err)
		}
		cb, err := os.ReadFile(f.signCert)
		if err != nil {
			return o, fmt.Errorf("read --sign-cert: %w", err)
		}
		if o.SignKey, o.SignCert, err = pe.ParseKeyPair(kb, cb); err != nil {
			return o, usageError{fmt.Errorf("--sign-key, --sign-cert: %w", err)}
		}
	}
	if f.fs.Changed("arch") {
		a, err := build.ParseArches(f.arch)
		if err != nil {
			return o, usageError{err}
		}
		o.Arches = a
	}
	if f.sectorFile != "" {
		for _, name := range sectorFlags {
			if f.fs.Changed(name) {
				return o, usagef("--%s has no effect with --sector, whose file replaces the built-in program: give one or the other", name)
			}
		}
		b, err := readSector(f.sectorFile)
		if err != nil {
			return o, err
		}
		o.SectorFile = b
	}
	size, err := build.ParseSize(f.size)
	if err != nil {
		return o, usageError{fmt.Errorf("--size: %w", err)}
	}
	o.Size = size
	if f.formats != "" {
		if o.Formats, err = formats.Parse(f.formats); err != nil {
			return o, usageError{fmt.Errorf("--format: %w", err)}
		}
	}
	cs, err := build.ParseSize(f.clusterSize)
	if err != nil {
		return o, usageError{fmt.Errorf("--cluster-size: %w", err)}
	}
	stamp, err := build.ParseEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return o, usageError{err}
	}
	o.Format = formats.Options{
		ClusterSize:    cs,
		Qcow2Compress:  f.qcow2Compress,
		VMDKSubformat:  f.vmdkSubformat,
		VHDType:        strings.ToLower(f.vhdType),
		ISOBoot:        strings.ToLower(f.isoBoot),
		ISOVolumeLabel: f.volumeLabel,
		Time:           stamp,
	}
	if err := checkFormatOptions(o.Format); err != nil {
		return o, err
	}
	if o.Formats != nil {
		if err := f.checkBuilt(o.Formats); err != nil {
			return o, err
		}
	}
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	if _, _, _, err := build.Disk(o); err != nil {
		// Found only by building: a message over the budget, a disk too
		// small for the probes' second stage.
		return o, usageError{err}
	}
	return o, nil
}

// checkBuilt refuses a format's flag, given on the command line, when
// that format is not among those built. options calls it when --format
// chose them; a command that chooses otherwise (push, from the tag) calls
// it with its choice.
func (f *buildFlags) checkBuilt(built []formats.Format) error {
	names := make([]string, len(built))
	for i, b := range built {
		names[i] = b.Type
	}
	for _, ff := range formatFlags {
		if f.fs.Changed(ff.flag) && !slices.Contains(names, ff.format) {
			return usagef("--%s applies to %s, which is not built here (%s): build %s or drop --%s", ff.flag, ff.format, strings.Join(names, ","), ff.format, ff.flag)
		}
	}
	return nil
}

// checkFormatOptions checks every format's option, built or not, so that a
// typo never waits for the day its format is built.
func checkFormatOptions(fo formats.Options) error {
	if cs := fo.ClusterSize; cs < qcow2.MinClusterSize || cs > qcow2.MaxClusterSize || cs&(cs-1) != 0 {
		return usagef("--cluster-size: %v, got %d", qcow2.ErrClusterSize, cs)
	}
	if s := fo.VMDKSubformat; s != vmdk.MonolithicSparse && s != vmdk.StreamOptimized {
		return usagef("--vmdk-subformat %q: use %s or %s", s, vmdk.MonolithicSparse, vmdk.StreamOptimized)
	}
	if !slices.Contains(vhd.Types, fo.VHDType) {
		return usagef("--vhd-type %q: use %s", fo.VHDType, strings.Join(vhd.Types, " or "))
	}
	if !slices.Contains(iso.Boots, fo.ISOBoot) {
		return usagef("--iso-boot %q: use %s", fo.ISOBoot, strings.Join(iso.Boots, " or "))
	}
	if err := (iso.Options{VolumeLabel: fo.ISOVolumeLabel}).Validate(); err != nil {
		return usageError{fmt.Errorf("--volume-label: %w", err)}
	}
	return nil
}

// readSector reads a --sector file: a regular file (a FIFO or device
// would block or never end), at most one byte more than a sector. It opens
// without blocking, so that even a FIFO is only looked at.
func readSector(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read --sector: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read --sector: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, usagef("--sector %s is %s, not a regular file: give a file holding a 512-byte boot sector", path, fileKind(st.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, sector.Size+1))
	if err != nil {
		return nil, fmt.Errorf("read --sector: %w", err)
	}
	if len(b) > sector.Size {
		return nil, usagef("--sector %s: %v, got more", path, sector.ErrSize)
	}
	if _, err := sector.Load(b); err != nil {
		return nil, usageError{fmt.Errorf("--sector %s: %w", path, err)}
	}
	return b, nil
}

// fileKind names what a non-regular file is.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a plain file"
}

// registerJSON adds --json, the one flag every command uses for
// machine-readable output, and the old --output text|json of push and
// inspect as a hidden, deprecated alias that warns (kept for one
// release: -o and --output name directories in build and pull).
func registerJSON(fs *pflag.FlagSet, asJSON *bool, usage string) {
	fs.BoolVar(asJSON, "json", false, usage)
	fs.Var(outputAlias{asJSON}, "output", "deprecated: use --json")
	fs.MarkDeprecated("output", "use --json instead")
	fs.MarkHidden("output")
}

// outputAlias is the deprecated --output text|json.
type outputAlias struct{ asJSON *bool }

func (o outputAlias) String() string {
	if o.asJSON != nil && *o.asJSON {
		return "json"
	}
	return "text"
}

func (o outputAlias) Set(v string) error {
	switch v {
	case "json":
		*o.asJSON = true
	case "text":
		*o.asJSON = false
	default:
		return fmt.Errorf("%q: use text or json (or --json)", v)
	}
	return nil
}

func (outputAlias) Type() string { return "text|json" }
