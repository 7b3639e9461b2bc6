// Package run builds the VM in one format and boots it in local QEMU: the
// library behind `tinyvm-oci run`.
package run

import (
	"context"
	"errors"
	"fmt"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/inspect"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// Boot writes the single format in bo.Formats to a temporary directory
// (see txn.Scratch) and boots it with qo (File and Driver are filled in).
// It returns the build's warnings and the emulator's error once the guest
// powers off, or ctx's error once ctx ends.
func Boot(ctx context.Context, bo build.Options, qo qemu.Options) ([]string, error) {
	if len(bo.Formats) != 1 {
		return nil, fmt.Errorf("run boots one format, got %d", len(bo.Formats))
	}
	if err := CheckBus(qo.Bus, bo.Formats[0]); err != nil {
		return nil, err
	}
	// A killed run leaves this behind; the next one removes it.
	dir, release, err := txn.Scratch("")
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := build.FilesContext(ctx, dir, bo)
	if err != nil {
		return nil, err
	}
	qo.File = res.Files[0].Path
	if qo, err = ForFormat(qo, bo.Formats[0]); err != nil {
		return res.Warnings, err
	}
	return res.Warnings, qemu.Run(ctx, qo)
}

// ErrBus is a bus the format cannot boot from.
var ErrBus = errors.New("run: format cannot boot from this bus")

// CheckBus reports whether a file of format f boots from bus (empty
// means the default, which always does). Only an iso boots from a
// CD-ROM: SeaBIOS finds no El Torito record on a disk image and waits
// forever for a boot device.
func CheckBus(bus string, f formats.Format) error {
	if bus == "cdrom" && f.Media != formats.MediaCDROM {
		return fmt.Errorf("%w: --bus cdrom boots only an iso, and a %s disk on a CD-ROM drive never boots: use --format iso, or another --bus", ErrBus, f.Type)
	}
	return nil
}

// ForFormat fills in how QEMU reads qo.File, a file of format f: its block
// driver, the bus when none is chosen (a CD-ROM for an iso, IDE
// otherwise) and, for an archive (ova), where the disk sits inside it.
func ForFormat(qo qemu.Options, f formats.Format) (qemu.Options, error) {
	qo.Driver = f.QemuDriver
	if qo.Bus == "" {
		qo.Bus = "ide"
		if f.Media == formats.MediaCDROM {
			qo.Bus = "cdrom"
		}
	}
	if f.Media == formats.MediaArchive {
		inf, err := inspect.File(qo.File)
		if err != nil {
			return qo, err
		}
		if inf.DiskSize == 0 {
			return qo, fmt.Errorf("%s holds no disk QEMU can boot", qo.File)
		}
		qo.Offset, qo.Length = inf.DiskOffset, inf.DiskSize
	}
	return qo, nil
}
