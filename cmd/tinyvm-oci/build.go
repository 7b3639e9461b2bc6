package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
)

func newBuildCmd() *cobra.Command {
	var (
		flags   buildFlags
		dir     string
		verbose bool
		quiet   bool
		repo    string
		layout  bool
		kube    bool
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Write the VM in every disk format, with SHA256SUMS, an OCI layout and KubeVirt manifests",
		Example: `  tinyvm-oci build                                  # every format into dist/
  tinyvm-oci build -o out --format qcow2,vmdk       # just these
  tinyvm-oci build --then poweroff --serial READY   # a fixture that runs to completion
  tinyvm-oci build --size 10GiB --format raw        # sparse: instant, no disk space`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef("--output: give a directory, not an empty name")
			}
			o, err := flags.options()
			if err != nil {
				return err
			}
			o.OCILayout, o.Version = layout, version
			stampImages(&o)
			if kube {
				o.ImageRepo = repo
			}
			res, err := build.FilesContext(cmd.Context(), dir, o)
			if err != nil {
				return err
			}
			printSummary(cmd, res, verbose)
			for _, f := range res.Files {
				fmt.Fprintln(cmd.OutOrStdout(), f.Path)
			}
			if res.Layout != "" {
				fmt.Fprintln(cmd.OutOrStdout(), res.Layout)
			}
			for _, m := range res.Manifests {
				fmt.Fprintln(cmd.OutOrStdout(), m)
			}
			if !quiet {
				printNextSteps(cmd, res, o.ImageRepo)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "output", "o", "dist", "output directory")
	cmd.Flags().BoolVar(&layout, "oci-layout", true, "also write DIR/oci, an OCI image layout of every containerDisk, the artifact and the VM artifact")
	cmd.Flags().BoolVar(&kube, "kubevirt", true, "also write DIR/kubevirt, KubeVirt and CDI manifests")
	cmd.Flags().StringVar(&repo, "image-repo", kubevirt.DefaultRepo, "repository the KubeVirt manifests in DIR/kubevirt reference")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print each file's size and digest")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "leave out the hint on what to do next")
	flags.register(cmd.Flags(), fmt.Sprintf("formats to write, comma-separated (default all: %s)", joinNames()))
	return cmd
}

// printSummary reports the sector budget and warnings on stderr.
func printSummary(cmd *cobra.Command, res *build.Result, verbose bool) {
	errw := cmd.ErrOrStderr()
	for _, w := range res.Warnings {
		fmt.Fprintf(errw, "warning: %s\n", w)
	}
	switch s := res.Sector; {
	case s == nil:
		fmt.Fprintf(errw, "boot sector: none (UEFI only); disk %d bytes\n", res.Size)
	case s.Custom():
		fmt.Fprintf(errw, "boot sector: your own 512 bytes, disk %d bytes\n", res.Size)
	default:
		fmt.Fprintf(errw, "boot sector: %d of %d bytes used, %d free; disk %d bytes\n", s.Used(), s.Layout().Budget(), s.Free(), res.Size)
		if s.Stage2() != nil {
			fmt.Fprintf(errw, "second stage (probes): %d of %d bytes free\n", s.Stage2Free(), s.Layout().Stage2Budget())
		}
	}
	for _, app := range res.EFI {
		fmt.Fprintf(errw, "EFI application: %s, %d bytes\n", app.Path, app.Size)
	}
	if verbose {
		for _, f := range res.Files {
			fmt.Fprintf(errw, "%-8s %12d  %s  %s\n", f.Format.Type, f.Size, f.SHA256, f.Path)
		}
	}
}

// printNextSteps ends a build with a short hint on stderr: how to boot
// what was written, how to push it, and what dir/kubevirt points at.
func printNextSteps(cmd *cobra.Command, res *build.Result, repo string) {
	if len(res.Files) == 0 {
		return
	}
	boot := res.Files[0].Path
	for _, f := range res.Files {
		if f.Format.Type == "qcow2" {
			boot = f.Path
		}
	}
	errw := cmd.ErrOrStderr()
	fmt.Fprintf(errw, "next: boot it:  tinyvm-oci run %s  (Ctrl-C presses the power button)\n", boot)
	fmt.Fprintf(errw, "      push it:  tinyvm-oci push --all REGISTRY/REPO\n")
	for _, m := range res.Manifests {
		if filepath.Base(m) == "vm.yaml" {
			fmt.Fprintf(errw, "      KubeVirt: kubectl apply -f %s  (it points at %s; set --image-repo to your repository)\n", m, repo)
		}
	}
}

func joinNames() string { return strings.Join(formats.Names(), ",") }
