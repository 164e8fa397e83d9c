package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime/embedded/image"
)

// newRuntimeCommands returns the daemon and every container and image
// command, for the root command.
func newRuntimeCommands() []*cobra.Command {
	return append(newContainerCommands(), newUpCommand(),
		newImagesCommand(), newPullCommand(), newLoadCommand(), newImportCommand(), newRmiCommand())
}

func newImagesCommand() *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{Use: "images", Short: "List images", Args: usageArgs(cobra.NoArgs)}
	client := addHostFlag(cmd)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print image ids")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		imgs, err := client().Images(cmd.Context())
		if err != nil {
			return daemonError(err)
		}
		out := cmd.OutOrStdout()
		if quiet {
			for _, img := range imgs {
				fmt.Fprintln(out, img.ShortID())
			}
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
		fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
		for _, img := range imgs {
			tags := img.RepoTags
			if len(tags) == 0 {
				tags = []string{"<none>:<none>"}
			}
			for _, t := range tags {
				i := strings.LastIndex(t, ":")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\n", t[:i], t[i+1:], img.ShortID(),
					units.HumanDuration(time.Since(img.Created)), units.HumanSize(float64(img.Size)))
			}
		}
		return tw.Flush()
	}
	return cmd
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressPrinter shows pull progress: a bar redrawn in place on a
// terminal, one line per finished layer otherwise.
func progressPrinter(w io.Writer) func(image.Progress) {
	tty := isTerminal(w)
	return func(p image.Progress) {
		short := strings.TrimPrefix(p.Layer, "sha256:")[:12]
		switch {
		case p.Cached:
			fmt.Fprintf(w, "layer %d/%d %s: already present\n", p.Index, p.Count, short)
		case p.Done:
			if tty {
				fmt.Fprint(w, "\r\033[K")
			}
			fmt.Fprintf(w, "layer %d/%d %s: done (%s)\n", p.Index, p.Count, short, units.HumanSize(float64(p.Current)))
		case tty && p.Total > 0:
			const width = 30
			done := int(min(p.Current, p.Total) * width / p.Total)
			fmt.Fprintf(w, "\r\033[Klayer %d/%d %s: [%s%s] %s / %s", p.Index, p.Count, short,
				strings.Repeat("=", done), strings.Repeat(" ", width-done),
				units.HumanSize(float64(p.Current)), units.HumanSize(float64(p.Total)))
		case tty:
			fmt.Fprintf(w, "\r\033[Klayer %d/%d %s: %s", p.Index, p.Count, short, units.HumanSize(float64(p.Current)))
		}
	}
}

func newPullCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "pull IMAGE", Short: "Pull an image from a registry", Args: usageArgs(cobra.ExactArgs(1))}
	client := addHostFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		out := cmd.OutOrStdout()
		img, err := client().Pull(cmd.Context(), args[0], progressPrinter(out))
		if err != nil {
			return daemonError(err)
		}
		fmt.Fprintf(out, "Pulled %s\nDigest: %s\n", args[0], img.ID)
		return nil
	}
	return cmd
}

func newLoadCommand() *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a docker save tarball (legacy or OCI)",
		Long: `Load images from a docker save tarball (legacy or OCI layout), read from
FILE or else from stdin, and streamed to the daemon (so the daemon need
not see this machine's files).`,
		Args: usageArgs(cobra.NoArgs),
	}
	client := addHostFlag(cmd)
	cmd.Flags().StringVarP(&input, "input", "i", "", "tarball to load (default stdin)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var (
			imgs []image.Image
			err  error
		)
		if input != "" {
			imgs, err = client().Load(cmd.Context(), input)
		} else {
			in := cmd.InOrStdin()
			if terminalFd(in) >= 0 {
				return usagef("load: stdin is a terminal: give -i FILE or redirect a tarball to stdin")
			}
			imgs, err = client().LoadReader(cmd.Context(), in)
		}
		if err != nil {
			return daemonError(err)
		}
		for _, img := range imgs {
			if len(img.RepoTags) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "Loaded image ID:", img.ID)
			}
			for _, t := range img.RepoTags {
				fmt.Fprintln(cmd.OutOrStdout(), "Loaded image:", t)
			}
		}
		return nil
	}
	return cmd
}

func newImportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import ROOTFS.tar|DIR|- NAME[:TAG]",
		Short: "Make a one-layer image from a root filesystem tarball or directory",
		Long: `Make a one-layer image from a root filesystem: a tarball (optionally
compressed), a directory, or "-" for a tarball on stdin. It is streamed to
the daemon (a directory as a tar).`,
		Args: usageArgs(cobra.ExactArgs(2)),
	}
	client := addHostFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var (
			img image.Image
			err error
		)
		if args[0] == "-" {
			img, err = client().ImportReader(cmd.Context(), cmd.InOrStdin(), args[1])
		} else {
			img, err = client().Import(cmd.Context(), args[0], args[1])
		}
		if err != nil {
			return daemonError(err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), img.ID)
		return nil
	}
	return cmd
}

func newRmiCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{Use: "rmi IMAGE...", Short: "Untag or remove images", Args: usageArgs(cobra.MinimumNArgs(1))}
	client := addHostFlag(cmd)
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove even if a container uses it")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := client()
		var first error
		for _, ref := range args {
			did, err := c.RemoveImage(cmd.Context(), ref, force)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "berth:", err)
				if first == nil {
					first = exitCodeError{code: exitFailure}
				}
				continue
			}
			for _, d := range did {
				fmt.Fprintln(cmd.OutOrStdout(), d)
			}
		}
		return first
	}
	return cmd
}
