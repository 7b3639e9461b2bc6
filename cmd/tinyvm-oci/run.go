package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/run"
)

func newRunCmd() *cobra.Command {
	var (
		flags   buildFlags
		machine string
		bus     string
		accel   string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Boot the VM in local QEMU; serial goes to stdout",
		Long: `run builds the VM in one format into a temporary directory and boots it in
the local qemu-system-x86_64 (Debian package qemu-system-x86). The guest's
serial port goes to stdout, and run returns when the guest powers off.`,
		Example: `  tinyvm-oci run --then poweroff                       # prints Hello World! and exits
  tinyvm-oci run --then poweroff --machine q35 --bus virtio --format qcow2
  tinyvm-oci run --then poweroff --format iso           # boots as a CD-ROM
  tinyvm-oci run --timeout 5s                           # waits, then powers off`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := flags.options()
			if err != nil {
				return err
			}
			if len(o.Formats) != 1 {
				return usagef("--format: run boots one format, got %d", len(o.Formats))
			}
			qo := qemu.Options{Machine: machine, Bus: bus, Accel: accel, Serial: cmd.OutOrStdout(), File: "image"}
			if err := qo.Validate(); err != nil {
				return usageError{err}
			}
			if err := run.CheckBus(qo.Bus, o.Formats[0]); err != nil {
				return usageError{err}
			}
			warnings, err := run.Boot(cmd.Context(), o, qo)
			for _, w := range warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			return err
		},
	}
	flags.register(cmd.Flags(), "format to boot: "+joinNames())
	cmd.Flags().Lookup("format").DefValue = "raw"
	flags.formats = "raw"
	cmd.Flags().StringVar(&machine, "machine", "pc", "QEMU machine: pc or q35")
	cmd.Flags().StringVar(&bus, "bus", "", "how the disk attaches: ide, virtio, sata, scsi or cdrom (default ide, cdrom for iso; an ova boots the disk inside it)")
	cmd.Flags().StringVar(&accel, "accel", "tcg", "QEMU accelerator: tcg or kvm")
	return cmd
}
