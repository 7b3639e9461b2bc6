package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/info"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/inspect"
)

func newInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Detect a disk file's format and print its facts",
		Long: `inspect finds a disk file's format by its magic bytes and prints its facts.
It checks the tables as qemu-img check does (offsets inside the file, no two
tables or blocks overlapping) and exits 1 for a corrupt image or a file
that is not a disk image, after printing what it could read. Names read
from the file are quoted when they hold control characters.`,
		Example: `  tinyvm-oci inspect dist/512-byte-vm.qcow2
  tinyvm-oci inspect --json dist/512-byte-vm.iso`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inf, err := inspect.FileContext(cmd.Context(), args[0])
			if inf == nil {
				return err
			}
			// A corrupt file or one that is not a disk still shows what
			// could be read, and then fails.
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(inf); jerr != nil {
					return jerr
				}
			} else {
				printInfo(cmd.OutOrStdout(), inf)
			}
			return err
		},
	}
	registerJSON(cmd.Flags(), &asJSON, "print the facts as JSON")
	return cmd
}

func printInfo(w io.Writer, inf *info.Info) {
	row := func(k string, v any) { fmt.Fprintf(w, "%-14s %v\n", k+":", v) }
	row("format", inf.Format)
	if inf.Corrupt != "" {
		// Nothing past the format can be trusted.
		row("file size", fmt.Sprintf("%d bytes", inf.FileSize))
		row("corrupt", inf.Corrupt)
		return
	}
	if inf.Subformat != "" {
		row("subformat", inf.Subformat)
	}
	row("virtual size", fmt.Sprintf("%d bytes", inf.VirtualSize))
	row("file size", fmt.Sprintf("%d bytes", inf.FileSize))
	if inf.BlockSize != 0 {
		row("block size", fmt.Sprintf("%d bytes", inf.BlockSize))
	}
	row("allocated", fmt.Sprintf("%d bytes", inf.Allocated))
	if inf.Compressed {
		row("compressed", true)
	}
	for _, f := range inf.Files {
		row("file", f)
	}
	if e := inf.ElTorito; e != nil {
		row("el torito", fmt.Sprintf("platform %d, bootable %v, emulation %s, load segment 0x%X, %d sectors at LBA %d (catalog at LBA %d), hybrid %v",
			e.Platform, e.Bootable, e.Emulation, e.LoadSegment, e.SectorCount, e.ImageLBA, e.CatalogLBA, e.Hybrid))
		if e.EFI != nil {
			row("el torito efi", fmt.Sprintf("FAT image of %d sectors at LBA %d", e.EFI.SectorCount, e.EFI.ImageLBA))
		}
	}
	if inf.BootCount != nil {
		row("boot count", *inf.BootCount)
	}
	if inf.NotDisk != "" {
		row("not a disk", inf.NotDisk)
	}
}

// exactArgs is cobra.ExactArgs as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("expected %d argument(s), got %d", n, len(args))
		}
		return nil
	}
}
