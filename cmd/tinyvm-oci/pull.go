package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

func newPullCmd() *cobra.Command {
	var (
		dir      string
		maxSize  string
		insecure bool
		asJSON   bool
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
			max, err := build.ParseSize(maxSize)
			if err != nil || max <= 0 {
				return usagef("--max-size %q: want a size such as 1GiB", maxSize)
			}
			ropts := []remote.Option{remote.WithInsecure(insecure), remote.WithMaxSize(max), remote.WithUserAgent("tinyvm-oci/" + version), remote.WithBackoff(retryBackoff)}
			ref, err := remote.ParseReference(args[0], ropts...)
			if err != nil {
				return usageError{err}
			}
			paths, digest, err := remote.Pull(cmd.Context(), ref, dir, ropts...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "pulled %s@%s\n", ref, digest)
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
	cmd.Flags().StringVar(&maxSize, "max-size", "1GiB", "largest file to accept")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP and unverified TLS to a registry that is not on loopback")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the reference, digest and files as JSON")
	return cmd
}
