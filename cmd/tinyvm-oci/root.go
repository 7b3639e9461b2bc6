package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitInterrupted is the shell's code for a command ended by SIGINT
	// (128+2); SIGTERM gets it too, after the same cleanup.
	exitInterrupted = 130
)

// usageError marks a mistake in the command line (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// newRootCmd builds the command tree.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "tinyvm-oci",
		Short: "Build the 512-byte VM in every disk format and ship it as OCI images",
		Long: `tinyvm-oci builds the smallest real VM, a 512-byte x86 boot sector that prints
to screen and serial and powers itself off, writes it in every common disk
format, and ships it as KubeVirt containerDisks and OCI artifacts.`,
		Example: `  tinyvm-oci build                       # every format into dist/
  tinyvm-oci run --then poweroff         # boot it in local QEMU
  tinyvm-oci push ghcr.io/acme/512vm:qcow2`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newBuildCmd(),
		newRunCmd(),
		newInspectCmd(),
		newPushCmd(),
		newPullCmd(),
		newManifestCmd(),
		newVersionCmd(),
	)
	// pflag prints deprecation warnings to the flag set's output, which
	// is stdout unless set: keep stdout for results.
	for _, c := range append(root.Commands(), root) {
		c.Flags().SetOutput(stderr)
	}
	return root
}

// execute runs the command line and returns the exit code. Errors are one
// line on stderr. A command stopped because ctx ended (a signal) exits
// 130, after its own cleanup.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		fmt.Fprintf(stderr, "tinyvm-oci: stopped: %s\n", oneLine(context.Cause(ctx).Error()))
		return exitInterrupted
	}
	// Cobra appends its suggestions to the error; the error stays one
	// line and the suggestion gets a line of its own.
	msg, suggest, _ := strings.Cut(err.Error(), "\n\nDid you mean this?")
	fmt.Fprintf(stderr, "tinyvm-oci: %s\n", oneLine(msg))
	if s := strings.Fields(suggest); len(s) > 0 {
		fmt.Fprintf(stderr, "Did you mean: tinyvm-oci %s?\n", strings.Join(s, " or "))
	}
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") ||
		strings.HasPrefix(err.Error(), "accepts ") || strings.HasPrefix(err.Error(), "requires ") {
		fmt.Fprintf(stderr, "Run 'tinyvm-oci --help' for usage.\n")
		return exitUsage
	}
	return exitError
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
