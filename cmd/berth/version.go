package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/berthd/berth/internal/buildinfo"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// buildVersion reports the binary's version (see buildinfo.Version).
func buildVersion() string { return buildinfo.Version(version) }

// buildDescription is the one-line answer of `berth version` and
// `berth --version`: the version, the VCS revision the binary was built
// from (with "+dirty" when the tree had uncommitted changes), its commit
// time, and the Go toolchain and platform.
func buildDescription() string {
	var b strings.Builder
	b.WriteString(buildVersion())
	var rev, at, dirty string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
	}
	b.WriteString(" (")
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, "revision %s%s", rev, dirty)
		if at != "" {
			fmt.Fprintf(&b, " of %s", at)
		}
		b.WriteString(", ")
	}
	fmt.Fprintf(&b, "%s, %s/%s)", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print berth's version, build revision and Go version",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "berth %s\n", buildDescription())
			return err
		},
	}
}
