package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/runtime"
)

// newDeployCommands returns deploy, history, rollback and undeploy.
func newDeployCommands() []*cobra.Command {
	return []*cobra.Command{newDeployCommand(), newHistoryCommand(), newRollbackCommand(), newUndeployCommand()}
}

// rolloutFlags are the flags of deploy and rollback that tune the rollout.
type rolloutFlags struct {
	timeout  time.Duration
	keepOld  bool
	maxSurge int
	probe    string
}

func (r *rolloutFlags) add(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&r.timeout, "timeout", deploy.DefaultTimeout, "how long the new containers get to start, pass their health check and reach the proxy")
	cmd.Flags().BoolVar(&r.keepOld, "keep-old", false, "stop the old containers without removing them")
	cmd.Flags().StringVar(&r.probe, "probe", "", "an http:// URL of the proxy: the new containers are in the proxy once GETs of it (Host: the first VIRTUAL_HOST) answer below 500, several in a row (the proxy's reload has finished)")
	cmd.Flags().IntVar(&r.maxSurge, "max-surge", 0, "start the new containers this many at a time, each batch healthy before the next (default: all at once)")
}

func newDeployCommand() *cobra.Command {
	var f runFlags
	var r rolloutFlags
	var image, file string
	var replicas int
	cmd := &cobra.Command{
		Use:   "deploy SERVICE (--image IMAGE[:TAG] [flags] [-- COMMAND [ARG...]] | -f service.toml)",
		Short: "Replace a service's containers, blue-green, with zero failed requests",
		Long: `berth deploy starts the new containers of SERVICE (the flags of berth run,
--replicas of them), waits until each passes its health check (or accepts
TCP on its port) and is in the proxy (every template that routes the
service has rendered, checked and reloaded it), marks the old ones
draining, waits the drain and stops and removes them (--keep-old keeps
them, stopped). If a new container fails its health check or does not
reach the proxy within --timeout, or on Ctrl-C, the new containers are
removed and the old ones serve on; the revision is recorded as failed
and berth deploy exits 1. The rollout runs in the daemon; berth history
lists the revisions, berth rollback deploys an earlier one again.

-f reads the spec from a TOML file instead (image, replicas, cmd, env,
labels, publish, health ...; see the README).`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
	}
	client := addHostFlag(cmd)
	fl := cmd.Flags()
	f.addSpecFlags(fl)
	fl.StringVar(&image, "image", "", "the image to deploy, IMAGE[:TAG]")
	fl.StringVarP(&file, "file", "f", "", "the service's spec file (TOML)")
	fl.IntVar(&replicas, "replicas", 1, "how many containers")
	r.add(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		service := args[0]
		if r.maxSurge < 0 {
			return usagef("--max-surge %d: want 1 or more (0: all at once)", r.maxSurge)
		}
		var spec deploy.Spec
		switch {
		case file != "" && image != "":
			return usagef("give --image or -f, not both")
		case file != "":
			s, err := deploy.LoadSpec(file)
			if err != nil {
				return usageError{err}
			}
			if cmd.Flags().Changed("replicas") {
				s.Replicas = replicas
			}
			spec = s
		case image != "":
			c, err := f.spec(cmd, append([]string{image}, args[1:]...))
			if err != nil {
				return err
			}
			spec = deploy.Spec{Image: image, Replicas: replicas, Container: c}
		default:
			return usagef("berth deploy %s: give --image IMAGE[:TAG] or -f service.toml", service)
		}
		rev, err := client().Deploy(cmd.Context(), deploy.Request{Service: service, Spec: spec, Timeout: r.timeout, KeepOld: r.keepOld, MaxSurge: r.maxSurge, Probe: r.probe},
			stepPrinter(cmd.OutOrStdout()))
		return rolloutResult(cmd, rev, err)
	}
	return cmd
}

func newRollbackCommand() *cobra.Command {
	var r rolloutFlags
	var to int
	cmd := &cobra.Command{
		Use:   "rollback SERVICE [--to REV]",
		Short: "Deploy the previous succeeded revision of a service again (or --to REV), by its image digest",
		Long: `berth rollback deploys the service's previous succeeded revision again
(--to: the one named, from berth history), by the image digest it
recorded, with berth deploy's procedure: the current containers serve
until the earlier ones are healthy and in the proxy.`,
		Args: usageArgs(cobra.ExactArgs(1)),
	}
	client := addHostFlag(cmd)
	cmd.Flags().IntVar(&to, "to", 0, "the revision to deploy again (default: the previous succeeded one)")
	r.add(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if cmd.Flags().Changed("to") && to < 1 {
			return usagef("--to %d: want a revision number from berth history %s", to, args[0])
		}
		rev, err := client().Rollback(cmd.Context(), deploy.RollbackRequest{Service: args[0], To: to, Timeout: r.timeout, KeepOld: r.keepOld, MaxSurge: r.maxSurge, Probe: r.probe},
			stepPrinter(cmd.OutOrStdout()))
		return rolloutResult(cmd, rev, err)
	}
	return cmd
}

func newUndeployCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "undeploy SERVICE",
		Short: "Remove a deployed service: drain, stop and remove its containers; berth up stops keeping it",
		Long: `berth undeploy takes the service's containers out of the proxy while they
still run, waits the drain, stops and removes them (kept ones too), and
records an "undeployed" revision: berth up's replica keeper no longer
restarts them. berth deploy (or berth rollback, to what ran) brings the
service back; berth history keeps its revisions.`,
		Args: usageArgs(cobra.ExactArgs(1)),
	}
	client := addHostFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		rev, err := client().Undeploy(cmd.Context(), args[0], stepPrinter(cmd.OutOrStdout()))
		if err != nil {
			return rolloutResult(cmd, rev, err)
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s revision %d undeployed after %s\n", rev.Service, rev.Number, rev.Finished.Sub(rev.Started).Round(time.Millisecond))
		return err
	}
	return cmd
}

func newHistoryCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history SERVICE",
		Short: "List the deployed revisions of a service",
		Args:  usageArgs(cobra.ExactArgs(1)),
	}
	client := addHostFlag(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		hist, err := client().History(cmd.Context(), args[0])
		if err != nil {
			return daemonError(err)
		}
		out := cmd.OutOrStdout()
		if asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(hist)
		}
		if len(hist) == 0 {
			_, err := fmt.Fprintf(out, "%s has no deployed revision\n", args[0])
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REVISION\tIMAGE\tDIGEST\tREPLICAS\tOUTCOME\tSTARTED\tTOOK\tREASON")
		for _, r := range hist {
			took := "-"
			if !r.Finished.IsZero() {
				took = r.Finished.Sub(r.Started).Round(time.Millisecond).String()
			}
			img := r.Image
			if r.RollbackTo > 0 {
				img += fmt.Sprintf(" (rollback to %d)", r.RollbackTo)
			}
			if r.Undeploy {
				img = "(undeploy of " + img + ")"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Number, img, shortDigest(r.Digest), r.Spec.Replicas, r.Outcome,
				r.Started.Local().Format(time.DateTime), took, oneLine(r.Reason))
		}
		return tw.Flush()
	}
	return cmd
}

func shortDigest(d string) string {
	h := strings.TrimPrefix(d, "sha256:")
	if h == "" {
		return "-"
	}
	return h[:min(12, len(h))]
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func stepPrinter(w io.Writer) func(deploy.Progress) {
	return func(p deploy.Progress) { fmt.Fprintf(w, "%-8s %s\n", p.Step+":", p.Message) }
}

// rolloutResult prints a rollout's outcome; a failed one exits 1 (bad
// input 2).
func rolloutResult(cmd *cobra.Command, rev deploy.Revision, err error) error {
	if err != nil {
		if cmd.Context().Err() != nil {
			return exitCodeError{code: exitFailure, err: errors.New("interrupted: the daemon removes the new containers and the old ones serve on (berth history shows the outcome)")}
		}
		if errors.Is(err, runtime.ErrInvalid) || errors.Is(err, runtime.ErrNotFound) {
			return usageError{err}
		}
		return err
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s revision %d %s: %s (%s), %d replica(s), serving after %s, done after %s\n",
		rev.Service, rev.Number, rev.Outcome, rev.Image, shortDigest(rev.Digest), rev.Spec.Replicas,
		rev.Serving.Sub(rev.Started).Round(time.Millisecond), rev.Finished.Sub(rev.Started).Round(time.Millisecond))
	return err
}
