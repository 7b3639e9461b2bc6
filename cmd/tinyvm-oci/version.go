package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Example: "  tinyvm-oci version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "tinyvm-oci %s\n", v.version)
			if v.commit != "" {
				fmt.Fprintf(out, "commit: %s\n", v.commit)
			}
			if v.date != "" {
				fmt.Fprintf(out, "built: %s\n", v.date)
			}
			fmt.Fprintf(out, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// buildVersion is what version prints.
type buildVersion struct{ version, commit, date string }

// versionInfo takes the release build's -ldflags values and, for a plain
// go build or go install in a clone, falls back to the VCS stamp the Go
// toolchain records (vcs.revision, vcs.time, vcs.modified).
func versionInfo() buildVersion {
	v := buildVersion{version, commit, date}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if v.version == "devel" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.version = bi.Main.Version // go install …@vX.Y.Z
	}
	if v.commit != "" {
		return v
	}
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.commit = s.Value
		case "vcs.time":
			if v.date == "" {
				v.date = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && v.commit != "" {
		v.commit += " (modified)"
	}
	return v
}

// stampImages records, in the OCI revision annotation, the commit this
// binary was built from, when the build info has one and the tree was not
// modified (then no commit describes it).
func stampImages(o *build.Options) {
	if c := versionInfo().commit; c != "" && !strings.Contains(c, " ") {
		o.Revision = c
	}
}
