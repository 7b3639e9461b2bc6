package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/run"
)

// diskFlags shape the disk that run builds; with FILE there is none to
// shape.
var diskFlags = []string{
	"message", "serial", "then", "timeout", "sector", "size", "format", "firmware", "arch", "probe",
	"cluster-size", "qcow2-compress", "vmdk-subformat", "vhd-type", "iso-boot", "volume-label",
}

func newRunCmd() *cobra.Command {
	var (
		flags        buildFlags
		machine      string
		bus          string
		accel        string
		boot         string
		guestArch    string
		display      string
		screenshot   string
		printCommand bool
	)
	cmd := &cobra.Command{
		Use:   "run [FILE]",
		Short: "Boot the VM in local QEMU; serial on stdin and stdout, Ctrl-C powers it off",
		Long: `run boots a disk file, in any of the formats (found as inspect finds them),
or without FILE builds the VM in one format into a temporary directory and
boots that. It uses the local qemu-system-x86_64 (Debian package
qemu-system-x86), or qemu-system-aarch64 (qemu-system-arm) for
--guest-arch arm64. The guest's serial port is on stdout, what is typed on
stdin goes to it, and run returns when the guest powers off.

The first Ctrl-C (or SIGTERM) presses the ACPI power button: the VM powers
off and run exits 0. A second one kills QEMU (exit 130). --screenshot saves
the screen as a PNG; --print-command prints the plain QEMU line for FILE.`,
		Example: `  tinyvm-oci run --then poweroff                       # prints Hello World! and exits
  tinyvm-oci run --then poweroff --machine q35 --bus virtio --format qcow2
  tinyvm-oci run --then poweroff --format iso           # boots as a CD-ROM
  tinyvm-oci run --timeout 5s                           # waits, then powers off
  tinyvm-oci run --then poweroff --boot uefi            # on OVMF
  tinyvm-oci run --then poweroff --guest-arch arm64     # the AArch64 application on AAVMF
  tinyvm-oci run --then poweroff --screenshot vm.png    # the screen as a PNG
  tinyvm-oci build -q --then poweroff -o fx && tinyvm-oci run fx/512-byte-vm.vhdx # boot a file build or pull wrote
  tinyvm-oci run --print-command dist/512-byte-vm.qcow2 # the plain QEMU line`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			qo := qemu.Options{Machine: machine, Bus: bus, Accel: accel, Serial: cmd.OutOrStdout(), File: "image"}
			switch strings.ToLower(guestArch) {
			case "amd64":
			case "arm64":
				qo.Arch = "arm64"
				if boot == "bios" && cmd.Flags().Changed("boot") {
					return usagef("--guest-arch arm64 boots on UEFI (AAVMF) only: drop --boot bios")
				}
				boot = "uefi"
				if !cmd.Flags().Changed("machine") {
					qo.Machine = "virt"
				}
			default:
				return usagef("--guest-arch %q: use amd64 or arm64", guestArch)
			}
			switch strings.ToLower(boot) {
			case "bios":
			case "uefi":
				qo.Firmware = "uefi"
			default:
				return usagef("--boot %q: use bios (SeaBIOS) or uefi (OVMF, or AAVMF on arm64)", boot)
			}
			switch display {
			case "none":
			case "gtk", "sdl":
				// Without a desktop QEMU dies with "gtk initialization
				// failed" after the build; say why before it. Printing the
				// line needs no window.
				if !printCommand && os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
					return usagef("--display %s opens a window, and neither DISPLAY nor WAYLAND_DISPLAY is set: set DISPLAY to your X display (such as :0), or use --display none or curses", display)
				}
				qo.Display = display
			case "curses":
				if printCommand {
					return usagef("--print-command prints the headless line: drop --display curses")
				}
				// QEMU draws on the terminal, and takes its keys, Ctrl-C
				// included (a key press powers the waiting VM off).
				tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
				if err != nil {
					return usagef("--display curses draws on a terminal, and there is none here (%v): use none, gtk or sdl", err)
				}
				defer tty.Close()
				qo.Display, qo.Terminal, qo.Serial = display, tty, nil
			default:
				return usagef("--display %q: use none, gtk, sdl or curses", display)
			}
			if err := qo.Validate(); err != nil {
				return usageError{err}
			}
			if screenshot != "" {
				if dir := filepath.Dir(screenshot); dir != "." {
					if st, err := os.Stat(dir); err != nil || !st.IsDir() {
						return usagef("--screenshot %s: the directory %s does not exist: create it or write the PNG elsewhere", screenshot, dir)
					}
				}
			}
			ro := run.Options{Qemu: qo, Screenshot: screenshot, Notify: func(s string) {
				fmt.Fprintf(cmd.ErrOrStderr(), "tinyvm-oci: %s\n", s)
			}}
			if len(args) == 1 {
				for _, name := range diskFlags {
					if cmd.Flags().Changed(name) {
						return usagef("--%s shapes the disk run builds, but %s is a disk already: drop --%s, or drop the file", name, args[0], name)
					}
				}
			} else if printCommand {
				return usagef("--print-command prints the line for a disk file: give one, such as dist/512-byte-vm.raw")
			}
			if printCommand {
				if screenshot != "" {
					return usagef("--print-command only prints: drop --screenshot")
				}
				qo, err := run.Prepare(args[0], qo)
				if err != nil {
					return err
				}
				line, err := qo.Command()
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), shellJoin(line))
				return nil
			}
			// The first signal ends cmd's context (see main), which presses
			// the power button; this channel sees it too, and the second
			// kills QEMU. Being registered also keeps Go from dying of the
			// second one before QEMU is gone.
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			kill := make(chan struct{})
			go func() {
				<-sigs
				<-sigs
				close(kill)
			}()
			ro.Kill = kill
			if qo.Terminal == nil {
				ro.Qemu.Console = stdinReader{cmd.InOrStdin()}
			}
			if len(args) == 1 {
				return run.File(cmd.Context(), args[0], ro)
			}
			o, err := flags.options()
			if err != nil {
				return err
			}
			if len(o.Formats) != 1 {
				return usagef("--format: run boots one format, got %d", len(o.Formats))
			}
			if err := run.CheckBus(qo.Bus, o.Formats[0]); err != nil {
				return usageError{err}
			}
			if err := run.CheckBuild(o, qo); err != nil {
				return usageError{err}
			}
			warnings, err := run.Build(cmd.Context(), o, ro)
			for _, w := range warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			return err
		},
	}
	flags.register(cmd.Flags(), "format to boot: "+joinNames())
	cmd.Flags().Lookup("format").DefValue = "raw"
	flags.formats = "raw"
	cmd.Flags().StringVar(&boot, "boot", "bios", "firmware QEMU boots on: bios (SeaBIOS) or uefi (OVMF; AAVMF with --guest-arch arm64)")
	cmd.Flags().StringVar(&guestArch, "guest-arch", "amd64", "guest CPU: amd64 (qemu-system-x86_64) or arm64 (qemu-system-aarch64, machine virt, UEFI)")
	cmd.Flags().StringVar(&machine, "machine", "pc", "QEMU machine: pc or q35 (virt with --guest-arch arm64)")
	cmd.Flags().StringVar(&bus, "bus", "", "how the disk attaches: ide, virtio, sata, scsi or cdrom (default ide, cdrom for iso, virtio on arm64; an ova boots the disk inside it)")
	cmd.Flags().StringVar(&accel, "accel", "tcg", "QEMU accelerator: tcg or kvm")
	cmd.Flags().StringVar(&display, "display", "none", "QEMU's screen: none, gtk or sdl (a window; serial stays on stdout), or curses (drawn in this terminal, which its keys then go to)")
	cmd.Flags().StringVar(&screenshot, "screenshot", "", "save the guest's screen as a PNG when the VM has printed its marker, or at power-off")
	cmd.Flags().BoolVar(&printCommand, "print-command", false, "print the qemu-system command line that boots FILE, and exit")
	return cmd
}

// stdinReader hides whether stdin is an *os.File, so that qemu copies it
// through a pipe instead of handing QEMU our terminal (see
// qemu.Options.Console).
type stdinReader struct{ r io.Reader }

func (s stdinReader) Read(p []byte) (int, error) { return s.r.Read(p) }

// shellJoin quotes each word for a POSIX shell when it needs it.
func shellJoin(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=,./:+") == "" {
			out[i] = w
			continue
		}
		out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
