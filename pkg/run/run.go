// Package run builds the VM in one format and boots it in local QEMU: the
// library behind `tinyvm-oci run`.
package run

import (
	"context"
	"fmt"
	"os"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/inspect"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// Boot writes the single format in bo.Formats to a temporary directory
// and boots it with qo (File and Driver are filled in). It returns the
// build's warnings and the emulator's error once the guest powers off.
func Boot(ctx context.Context, bo build.Options, qo qemu.Options) ([]string, error) {
	if len(bo.Formats) != 1 {
		return nil, fmt.Errorf("run boots one format, got %d", len(bo.Formats))
	}
	dir, err := os.MkdirTemp("", "tinyvm-run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res, err := build.Files(dir, bo)
	if err != nil {
		return nil, err
	}
	qo.File = res.Files[0].Path
	if qo, err = ForFormat(qo, bo.Formats[0]); err != nil {
		return res.Warnings, err
	}
	return res.Warnings, qemu.Run(ctx, qo)
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
