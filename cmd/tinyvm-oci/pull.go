package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

func newPullCmd() *cobra.Command {
	var (
		dir      string
		maxSize  string
		insecure bool
		asJSON   bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull the disk files out of a containerDisk or an artifact",
		Long: `pull writes the disk file of a containerDisk (the single file under disk/),
or every titled layer of an artifact, into the output directory.

Digests are checked. Absolute paths, "..", links, devices, several files
under disk/ and files over --max-size are refused, and nothing is written
outside the directory. Files are written to temp files and renamed, so an
interrupted pull leaves no partial file.

stdout gets the path of each file written (--json for machines).`,
		Example: `  tinyvm-oci pull ghcr.io/acme/512vm:qcow2 -o vm
  tinyvm-oci pull 127.0.0.1:5000/512vm:disks -o dist`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			max, err := parseLimit(maxSize)
			if err != nil {
				return usagef("--max-size: %w", err)
			}
			if timeout < 0 {
				return usagef("--timeout must not be negative, got %v", timeout)
			}
			ropts := []remote.Option{remote.WithInsecure(insecure), remote.WithMaxSize(max), remote.WithUserAgent("tinyvm-oci/" + version), remote.WithBackoff(retryBackoff)}
			ref, err := remote.ParseReference(args[0], ropts...)
			if err != nil {
				return usageError{err}
			}
			ctx, cancel := withTimeout(cmd.Context(), timeout)
			defer cancel()
			paths, digest, err := remote.Pull(ctx, ref, dir, ropts...)
			if errors.Is(err, oci.ErrTooLarge) && strings.Contains(err.Error(), "size limit") {
				err = fmt.Errorf("%w (--max-size %s)", err, maxSize)
			}
			if err != nil {
				return timedOut(ctx, "--timeout", timeout, err)
			}
			pinned := ref.String()
			if _, byDigest := ref.(name.Digest); !byDigest {
				pinned += "@" + digest.String()
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "pulled %s\n", pinned)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Reference string   `json:"reference"`
					Digest    string   `json:"digest"`
					Files     []string `json:"files"`
				}{ref.String(), digest.String(), paths})
			}
			for _, p := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "output", "o", ".", "directory to write the files to")
	cmd.Flags().StringVar(&maxSize, "max-size", "1GiB", "largest file to accept, in bytes or with a unit (1000, 64KiB, 1GiB)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up the whole pull after this long (e.g. 10m; 0: no limit)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP and unverified TLS to a registry that is not on loopback")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the reference, digest and files as JSON")
	return cmd
}

// limitUnits are the units --max-size takes, binary as in --size.
var limitUnits = []struct {
	suffix string
	shift  uint
}{
	{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40},
	{"K", 10}, {"M", 20}, {"G", 30}, {"T", 40},
	{"B", 0},
}

// parseLimit reads a byte count such as 1000, 64KiB or 1GiB. Unlike a
// disk size it need not be a multiple of 512.
func parseLimit(s string) (int64, error) {
	in := strings.TrimSpace(s)
	num, shift := in, uint(0)
	for _, u := range limitUnits {
		if strings.HasSuffix(strings.ToLower(in), strings.ToLower(u.suffix)) {
			num, shift = strings.TrimSpace(in[:len(in)-len(u.suffix)]), u.shift
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad size %q: use a positive whole number of bytes with an optional unit, such as 1000, 64KiB or 1GiB", s)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("bad size %q: larger than 8 EiB", s)
	}
	return int64(n) << shift, nil
}
