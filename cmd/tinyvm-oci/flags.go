package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
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
}

// register adds the flags. withFormats adds --format, whose meaning the
// command gives in usage.
func (f *buildFlags) register(fs *pflag.FlagSet, formatUsage string) {
	fs.StringVar(&f.message, "message", "", "screen text under the banner (printable ASCII; default says what the VM does next)")
	fs.StringVar(&f.serial, "serial", sector.DefaultSerial, `marker line written to COM1 ("" writes nothing)`)
	fs.StringVar(&f.then, "then", string(sector.Wait), "after printing: wait (power off on a key or the ACPI power button), poweroff, halt or reboot")
	fs.DurationVar(&f.timeout, "timeout", 0, "with --then wait, power off after this long (e.g. 30s)")
	fs.StringVar(&f.sectorFile, "sector", "", "use this 512-byte boot sector file (ending in 0x55AA) instead of the built-in program")
	fs.StringVar(&f.size, "size", "1MiB", "virtual disk size (512, 1MiB, 10GiB; a multiple of 512)")
	if formatUsage != "" {
		fs.StringVar(&f.formats, "format", "", formatUsage)
	}
	fs.StringVar(&f.clusterSize, "cluster-size", "64KiB", "qcow2 cluster size")
	fs.BoolVar(&f.qcow2Compress, "qcow2-compress", false, "store qcow2 clusters deflate-compressed, as qemu-img convert -c")
	fs.StringVar(&f.vmdkSubformat, "vmdk-subformat", "monolithicSparse", "vmdk subformat: monolithicSparse or streamOptimized")
	fs.StringVar(&f.vhdType, "vhd-type", "dynamic", "vhd type: dynamic or fixed (Azure)")
	fs.StringVar(&f.isoBoot, "iso-boot", "noemul", "iso El Torito boot: noemul or floppy (1.44 MB emulation)")
}

// options turns the flags into build options. Bad values are usage errors.
func (f *buildFlags) options() (build.Options, error) {
	var o build.Options
	o.Sector = sector.Options{Message: f.message, Serial: &f.serial, Then: sector.Then(strings.ToLower(f.then)), Timeout: f.timeout}
	if f.sectorFile != "" {
		b, err := os.ReadFile(f.sectorFile)
		if err != nil {
			return o, fmt.Errorf("read --sector: %w", err)
		}
		if _, err := sector.Load(b); err != nil {
			return o, usageError{fmt.Errorf("--sector %s: %w", f.sectorFile, err)}
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
		ClusterSize:   cs,
		Qcow2Compress: f.qcow2Compress,
		VMDKSubformat: f.vmdkSubformat,
		VHDType:       strings.ToLower(f.vhdType),
		ISOBoot:       strings.ToLower(f.isoBoot),
		Time:          stamp,
	}
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	return o, nil
}
