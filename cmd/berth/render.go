package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

// renderOptions are the flags of berth render.
type renderOptions struct {
	sources *templateFlags
	dryRun  bool
	stdout  bool
	context string
	store   *storeFlags
}

func newRenderCommand() *cobra.Command {
	o := &renderOptions{}
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Render templates once and exit (one-shot)",
		Long: `Render every template once from the store (or a --context fixture), write
the files that changed (check, atomic swap, reload; rollback when the reload
fails) and exit: 0 rendered or unchanged, 1 render/check/reload failure,
2 usage or configuration error.

Templates come from --config (berth.toml, or a docker-gen [[config]] file),
--confdir (confd's conf.d/*.toml with templates/ beside them, run
unmodified) and --template SRC[:DEST[:RELOAD]] (repeatable; without DEST
the output goes to standard output). --dialect and --prefix apply to
--template; --prefix also overrides the confd resources' prefix.

` + storeCommandHelp + `

Each prefix of a template is read with one List (consistent per prefix).
--context renders from a JSON fixture instead: a list of containers in
docker-gen's RuntimeContainer shape, or an object mapping keys to values.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	o.sources = addTemplateFlags(f)
	f.BoolVar(&o.dryRun, "dry-run", false, "write nothing, run nothing: print a unified diff against each destination")
	f.BoolVar(&o.stdout, "stdout", false, "write nothing, run nothing: print each rendered output")
	f.StringVar(&o.context, "context", "", "render from this JSON fixture instead of a store")
	o.store = addStoreCommandFlags(f)
	return cmd
}

// loaded is one template ready to execute.
type loaded struct {
	conf config.Template
	tmpl *dialect.Template
}

func (o *renderOptions) run(cmd *cobra.Command) error {
	log, err := commandLogger(cmd)
	if err != nil {
		return err
	}
	if o.dryRun && o.stdout {
		return usagef("--dry-run and --stdout exclude each other")
	}
	if o.context != "" && cmd.Flags().Changed("store") {
		return usagef("--context and --store exclude each other")
	}
	confs, files, err := o.sources.load()
	if err != nil {
		return err
	}
	ts := make([]loaded, 0, len(confs))
	var parseErrs []error
	for _, c := range confs {
		if c.Stdout() && !o.stdout {
			return usagef("%s: no destination: use --stdout, or SRC:DEST", c.Origin)
		}
		t, err := dialect.Parse(c.Src, c.Options)
		if err != nil {
			parseErrs = append(parseErrs, fmt.Errorf("%s: %w", c.Origin, err))
			continue
		}
		ts = append(ts, loaded{conf: c, tmpl: t})
	}
	if err := errors.Join(parseErrs...); err != nil {
		return exitCodeError{exitFailure, err}
	}

	o.store.useConfig(files)
	inputs, err := o.inputs(cmd.Context(), log, ts)
	if err != nil {
		return err
	}
	jobs := make([]render.Job, len(ts))
	for i, t := range ts {
		jobs[i] = render.Job{Spec: t.conf.Spec, Source: render.Bind(t.tmpl, inputs[i])}
	}
	r := render.New(render.WithLogger(log))
	switch {
	case o.stdout:
		return o.print(cmd.OutOrStdout(), log, r, jobs, false)
	case o.dryRun:
		return o.print(cmd.OutOrStdout(), log, r, jobs, true)
	}
	if _, err := r.Cycle(cmd.Context(), jobs); err != nil {
		return exitCodeError{exitFailure, err}
	}
	return nil
}

// inputs reads each template's data: from the fixture, or from the store
// (one List per distinct prefix, shared by the templates that name it).
func (o *renderOptions) inputs(ctx context.Context, log *slog.Logger, ts []loaded) ([]dialect.Input, error) {
	in := make([]dialect.Input, len(ts))
	if o.context != "" {
		fx, err := render.ReadFixture(o.context)
		if err != nil {
			return nil, usageError{err}
		}
		for i, t := range ts {
			in[i] = fx.Input(t.conf.Prefixes)
		}
		return in, nil
	}
	st, err := o.store.open(ctx, log)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	type listing struct {
		kvs []store.KV
		rev store.Revision
	}
	lists := map[string]listing{}
	for i, t := range ts {
		var parts [][]store.KV
		for _, p := range t.conf.Prefixes {
			l, ok := lists[p]
			if !ok {
				kvs, rev, err := st.List(ctx, p)
				if err != nil {
					return nil, exitCodeError{exitFailure, fmt.Errorf("%s: list %s: %w", t.conf.Origin, p, err)}
				}
				l = listing{kvs, rev}
				lists[p] = l
			}
			parts = append(parts, l.kvs)
			in[i].Revision = max(in[i].Revision, l.rev)
		}
		in[i].KVs = render.MergeKVs(parts...)
	}
	return in, nil
}

// print renders each job without writing it: its output, or its diff
// against the destination.
func (o *renderOptions) print(w io.Writer, log *slog.Logger, r *render.Renderer, jobs []render.Job, diff bool) error {
	var errs []error
	for _, job := range jobs {
		p, err := r.Preview(job)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !diff {
			if _, err := w.Write(p.Output); err != nil {
				return err
			}
			continue
		}
		if !p.Changed {
			log.Info("unchanged", "template", job.Spec.Name, "dest", job.Spec.Dest)
			continue
		}
		old := job.Spec.Dest
		if !p.Exists {
			old = "/dev/null"
		}
		d := render.Diff(old, job.Spec.Dest+" (rendered)", p.Current, p.Output)
		if d == "" {
			log.Info("same content, but mode or owner would change", "template", job.Spec.Name, "dest", job.Spec.Dest)
		}
		if _, err := io.WriteString(w, d); err != nil {
			return err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return exitCodeError{exitFailure, err}
	}
	return nil
}
