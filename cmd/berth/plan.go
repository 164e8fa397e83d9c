package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render"
)

func newPlanCommand() *cobra.Command {
	o := &renderOptions{dryRun: true, exitCode: true, planning: true}
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what every template would change if it rendered now, changing nothing",
		Long: `Render every template of the running daemon (asked over its socket, -H)
or the ones --config, --confdir and --template name, against the store,
and print for each destination that would change a unified diff and the
check and reload commands applying it would run. Nothing is written and
nothing is run: this is render --dry-run --exit-code.

Exit status: 0 nothing would change, 2 something would (content, mode or
owner), 1 any error.

` + storeCommandHelp,
		Args: usageArgs(cobra.NoArgs),
		RunE: o.runE,
	}
	cmd.SetFlagErrorFunc(o.flagError)
	f := cmd.Flags()
	o.sources = addTemplateFlags(f)
	o.sources.allowNone = true // none named: the daemon's
	f.StringVar(&o.context, "context", "", "plan against this JSON fixture instead of the store (as berth render --context)")
	o.store = addStoreCommandFlags(f)
	addConsulFlag(f, &o.consul)
	return cmd
}

// daemonSocket is the socket of the daemon the store flags name (-H, else
// $BERTH_HOST, else the default).
func daemonSocket(f *storeFlags) string {
	return cmp.Or(f.host, os.Getenv("BERTH_HOST"), api.DefaultSocket)
}

// daemonTemplates asks the daemon for its templates.
func (o *renderOptions) daemonTemplates(ctx context.Context) ([]config.Template, error) {
	socket := daemonSocket(o.store)
	ctx, cancel := context.WithTimeout(ctx, daemonInfoTimeout)
	defer cancel()
	states, err := api.NewClient(socket).Templates(ctx)
	if err != nil {
		return nil, exitCodeError{exitFailure, fmt.Errorf("the templates of the daemon at %s (or name them with --config, --confdir, --template): %w", socket, err)}
	}
	ts := make([]config.Template, len(states))
	for i, s := range states {
		ts[i] = s.Config
	}
	return ts, nil
}

// writeCommands prints, after a change's diff, the commands applying it
// would run.
func writeCommands(w io.Writer, c render.Change, jobs []render.Job) error {
	i := slices.IndexFunc(jobs, func(j render.Job) bool { return j.Spec.Dest == c.Dest })
	if i < 0 {
		return nil
	}
	s := jobs[i].Spec
	out := ""
	if s.Check != "" {
		out += fmt.Sprintf("# %s: would check with: %s\n", c.Name, s.Check)
	}
	if s.Reload != "" {
		out += fmt.Sprintf("# %s: would reload with: %s\n", c.Name, s.Reload)
	} else {
		out += fmt.Sprintf("# %s: no reload command\n", c.Name)
	}
	_, err := io.WriteString(w, out)
	return err
}
