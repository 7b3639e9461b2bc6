package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/publish"
)

// retryBackoff is push's and pull's retry schedule; tests shorten it.
var retryBackoff = remote.DefaultBackoff

func newPushCmd() *cobra.Command {
	var (
		flags         buildFlags
		all, artifact bool
		insecure      bool
		asJSON        bool
		timeout       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "push REF",
		Short: "Build the VM and push it as a KubeVirt containerDisk or an OCI artifact",
		Long: `push builds the VM and pushes it to a registry.

With a tag that names a format (raw, qcow2, vmdk, ...) it pushes that format
as a KubeVirt containerDisk: one file at /disk/512-byte-vm.<ext>, owned by
uid 107 (qemu). Otherwise --format chooses (default qcow2). An ova is no
containerDisk (KubeVirt would boot the tar as a raw disk): it is a file of the
artifact. The tag "disks", or --artifact, pushes one OCI artifact holding every
format, for oras pull. The tag "vm" pushes KubeVirt's VM artifact (virtctl
vmexport --format=oci): the VirtualMachine and its zstd-compressed raw disk.
--all pushes every containerDisk under its own tag, the artifact under "disks"
and the VM artifact under "vm".

Registries on loopback (127.0.0.1, localhost, [::1]) are reached over plain
HTTP; any other needs --insecure for that. Credentials come from the docker
config and credential helpers, and GITHUB_TOKEN for ghcr.io.

stdout gets REF@sha256:... for each tag pushed. Every blob is uploaded before
any manifest; when a push fails part way, stdout still lists the tags that
were written, and stderr names the ones that were not.`,
		Example: `  tinyvm-oci push ghcr.io/acme/512vm:qcow2      # a containerDisk
  tinyvm-oci push ghcr.io/acme/512vm:disks      # every format as an artifact
  tinyvm-oci push ghcr.io/acme/512vm:vm         # KubeVirt's VM artifact
  tinyvm-oci push --all ghcr.io/acme/512vm      # every tag at once
  tinyvm-oci push --all --then poweroff 127.0.0.1:5000/512vm`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return usagef("--push-timeout must not be negative, got %v", timeout)
			}
			ropts := []remote.Option{remote.WithInsecure(insecure), remote.WithUserAgent("tinyvm-oci/" + version), remote.WithBackoff(retryBackoff)}
			ref, err := remote.ParseReference(args[0], ropts...)
			if err != nil {
				return usageError{err}
			}
			o, err := flags.options()
			if err != nil {
				return err
			}
			stampImages(&o)
			target, err := publish.Resolve(ref, all, artifact, o.Formats)
			if err != nil {
				return usageError{err}
			}
			if target.Formats != nil {
				// The tag chose the formats: a flag of another is a mistake.
				if err := flags.checkBuilt(target.Formats); err != nil {
					return err
				}
			}
			var progress chan v1.Update
			if isTerminal(cmd.ErrOrStderr()) {
				progress = make(chan v1.Update, 64)
				done := make(chan struct{})
				go func() { showProgress(cmd.ErrOrStderr(), progress); close(done) }()
				defer func() { <-done }()
			}
			ctx, cancel := withTimeout(cmd.Context(), timeout)
			defer cancel()
			res, pushed, err := publish.Push(ctx, target, o, version, progress, ropts...)
			if res != nil {
				printSummary(cmd, res, false)
			}
			var notWritten []remote.Pushed
			var pe *remote.PartialError
			if errors.As(err, &pe) {
				notWritten = pe.NotWritten
			}
			if perr := printPushed(cmd.OutOrStdout(), asJSON, pushed, notWritten); err == nil {
				err = perr
			}
			if err != nil && !asJSON {
				for _, p := range notWritten {
					fmt.Fprintf(cmd.ErrOrStderr(), "not pushed: %s\n", p.Ref)
				}
			}
			return timedOut(ctx, "--push-timeout", timeout, err)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&all, "all", false, `push every containerDisk under its own tag, the artifact under "disks" and the VM artifact under "vm"`)
	fs.BoolVar(&artifact, "artifact", false, "push the OCI artifact holding every format (or those --format lists)")
	fs.BoolVar(&insecure, "insecure", false, "allow plain HTTP and unverified TLS to a registry that is not on loopback")
	registerJSON(fs, &asJSON, "print the tags written (and, after a failure, those not written) as JSON instead of REF@sha256:... lines")
	fs.DurationVar(&timeout, "push-timeout", 0, "give up the whole push after this long (e.g. 10m; 0: no limit; --timeout is the VM's)")
	flags.register(fs, "format to push when the tag does not name one (default qcow2); with --all or --artifact, the formats to include (default all)")
	return cmd
}

type pushedJSON struct {
	Reference string `json:"reference"`
	Digest    string `json:"digest"`
	Pinned    string `json:"pinned,omitempty"`
	// Written is false for a tag a failed push did not write; Digest is
	// then what it would have pointed at.
	Written bool `json:"written"`
}

// printPushed prints the tags written; with json, also those not written.
func printPushed(w io.Writer, asJSON bool, pushed, notWritten []remote.Pushed) error {
	if asJSON {
		out := make([]pushedJSON, 0, len(pushed)+len(notWritten))
		for _, p := range pushed {
			out = append(out, pushedJSON{Reference: p.Ref.String(), Digest: p.Digest.String(), Pinned: p.String(), Written: true})
		}
		for _, p := range notWritten {
			out = append(out, pushedJSON{Reference: p.Ref.String(), Digest: p.Digest.String()})
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, p := range pushed {
		if _, err := fmt.Fprintln(w, p); err != nil {
			return err
		}
	}
	return nil
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// showProgress draws one updating line until ch closes.
func showProgress(w io.Writer, ch <-chan v1.Update) {
	var last v1.Update
	for u := range ch {
		last = u
		fmt.Fprintf(w, "\rpushing: %d of %d bytes", u.Complete, u.Total)
	}
	if last.Total > 0 {
		fmt.Fprintln(w)
	}
}

// withTimeout bounds ctx by d when d > 0.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

// timedOut says so when err came from ctx's deadline, the flag's limit.
func timedOut(ctx context.Context, flag string, d time.Duration, err error) error {
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("gave up after %s %v: %w", flag, d, err)
	}
	return err
}
