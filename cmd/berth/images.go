package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

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
	var format string
	cmd := &cobra.Command{Use: "images", Short: "List images", Args: usageArgs(cobra.NoArgs)}
	client := addHostFlag(cmd)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print image ids")
	cmd.Flags().StringVar(&format, "format", "", `output format: "json", a Go template ({{.Repository}}:{{.Tag}} {{.ID}} {{.Size}} ...), or "table TEMPLATE"`)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		fm, custom, err := newFormatter(format)
		if err != nil {
			return err
		}
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
		var rows []any
		for _, img := range imgs {
			tags := img.RepoTags
			if len(tags) == 0 {
				tags = []string{"<none>:<none>"}
			}
			for _, t := range tags {
				i := strings.LastIndex(t, ":")
				rows = append(rows, imageRow{Repository: t[:i], Tag: t[i+1:], ID: img.ShortID(),
					CreatedAt: img.Created.Format("2006-01-02 15:04:05 -0700 MST"), CreatedSince: units.HumanDuration(time.Since(img.Created)) + " ago",
					Size: units.HumanSize(float64(img.Size))})
			}
		}
		if custom {
			return fm.print(out, rows, func(f string) string { return cmp.Or(imageHeaders[f], strings.ToUpper(f)) })
		}
		tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
		fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
		for _, r := range rows {
			r := r.(imageRow)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, r.ID, r.CreatedSince, r.Size)
		}
		return tw.Flush()
	}
	return cmd
}

// imageRow is what a `berth images --format` template sees: docker
// images's fields.
type imageRow struct {
	Repository, Tag, ID, CreatedAt, CreatedSince, Size string
}

var imageHeaders = map[string]string{"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
	"CreatedAt": "CREATED AT", "CreatedSince": "CREATED", "Size": "SIZE"}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool { return terminalFd(w) >= 0 }

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
			return daemonError(pullHint(err))
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
			in    = cmd.InOrStdin()
			total int64
		)
		if input != "" {
			f, err := os.Open(input)
			if err != nil {
				return fmt.Errorf("load: %w", err)
			}
			defer f.Close()
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				total = fi.Size()
			}
			in = f
		} else if terminalFd(in) >= 0 {
			return usagef("load: stdin is a terminal: give -i FILE or redirect a tarball to stdin")
		}
		pr := newSendProgress(in, total, cmd.ErrOrStderr(), time.Now)
		imgs, err := client().LoadReader(cmd.Context(), pr)
		pr.finish()
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

// pullHint adds what to do instead when err says the registry cannot be
// reached: berth can take images in without a network.
func pullHint(err error) error {
	msg := err.Error()
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout",
		"network is unreachable", "TLS handshake timeout", "server misbehaving"} {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%w\nthe registry cannot be reached from the daemon; to bring the image in without it, "+
				"run `docker save IMAGE | berth load` on a machine that has it, or make one from a root filesystem "+
				"with `berth import ROOTFS.tar|DIR NAME:TAG`", err)
		}
	}
	return err
}

// sendProgress counts the bytes of a stream sent to the daemon (load,
// import) and shows the count on w once the transfer has taken longer than
// a second: redrawn in place on a terminal, one line every 10% (or every
// 256 MB of a stream of unknown size) otherwise.
type sendProgress struct {
	r       io.Reader
	w       io.Writer
	tty     bool
	total   int64 // 0: unknown
	n       int64
	now     func() time.Time
	start   time.Time
	last    time.Time
	lastN   int64 // bytes at the last line written (not on a terminal)
	printed bool
}

func newSendProgress(r io.Reader, total int64, w io.Writer, now func() time.Time) *sendProgress {
	t := now()
	return &sendProgress{r: r, w: w, tty: isTerminal(w), total: total, now: now, start: t, last: t}
}

func (p *sendProgress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	t := p.now()
	if t.Sub(p.start) < time.Second {
		return n, err
	}
	switch {
	case p.tty && t.Sub(p.last) >= 200*time.Millisecond:
		fmt.Fprintf(p.w, "\r\033[Ksent %s", p.amount())
		p.last, p.printed = t, true
	case !p.tty && p.n-p.lastN >= p.step():
		fmt.Fprintf(p.w, "sent %s\n", p.amount())
		p.lastN, p.printed = p.n, true
	}
	return n, err
}

func (p *sendProgress) step() int64 {
	if p.total > 0 {
		return max(p.total/10, 1)
	}
	return 256 << 20
}

func (p *sendProgress) amount() string {
	s := units.HumanSize(float64(p.n))
	if p.total > 0 {
		s += fmt.Sprintf(" of %s (%d%%)", units.HumanSize(float64(p.total)), p.n*100/p.total)
	}
	return s
}

// finish ends the progress display with the total, for a transfer that
// took a second or more.
func (p *sendProgress) finish() {
	if !p.printed && p.now().Sub(p.start) < time.Second {
		return
	}
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "sent %s in %s\n", units.HumanSize(float64(p.n)), p.now().Sub(p.start).Round(time.Millisecond))
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
			pr := newSendProgress(cmd.InOrStdin(), 0, cmd.ErrOrStderr(), time.Now)
			img, err = client().ImportReader(cmd.Context(), pr, args[1])
			pr.finish()
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
