package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berthd/berth/catalog"
	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/explain"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
)

// renderOptions are the flags of berth render.
type renderOptions struct {
	sources  *templateFlags
	dryRun   bool
	exitCode bool
	stdout   bool
	context  string
	dump     bool // --context-dump
	store    *storeFlags
	consul   string // --consul: the agent of the catalog functions
	// planning is berth plan: --dry-run --exit-code, the daemon's templates
	// when none are named, and the commands each change would run.
	planning bool
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
unmodified) and --template SRC[:DEST[:RELOAD]] (repeatable). With DEST the
output is written to DEST (and RELOAD run after the swap); without DEST
there is nowhere to write it, so the template needs --stdout, which prints
it (a usage error otherwise). --dialect and --prefix apply to --template;
--prefix also overrides the confd resources' prefix.

--dry-run writes nothing and runs no command: it prints a unified diff of
each destination against its rendered output ("unchanged" is logged).
With --exit-code it answers scripts: 0 nothing would change, 2 something
would (content, mode or owner), 1 any error (usage errors included).

` + storeCommandHelp + `

Each prefix of a template is read with one List (consistent per prefix).
Native templates' service, services, node and nodes read the Consul
catalog of the agent --consul names (else the [catalog] of --config, or
its consul-catalog [registry]'s agent, else the daemon's at -H); a render
waits for the first answer of each query, as consul-template -once does,
and fails when a query fails.
A render runs once and exits, so it collects no garbage until its heap
reaches 128 MB (then as usual); GOGC or GOMEMLIMIT in the environment
override that.
--context renders from a JSON fixture instead: a list of containers in
docker-gen's RuntimeContainer shape, or an object mapping keys to values.

--context-dump writes nothing and runs nothing: it prints, as a JSON list,
the exact data each template receives: "dot" (what {{.}} is, with the
field names templates use: .Services, .Containers, .Hosts, .Env,
.Revision; docker-gen: the container list) and "keys" (every key it reads).
"keys" is a --context fixture: to write a template against today's data,
  berth render --config berth.toml --context-dump | jq '.[0].keys' > fixture.json
  berth render --template my.tmpl --context fixture.json --stdout`,
		Args: usageArgs(cobra.NoArgs),
		RunE: o.runE,
	}
	cmd.SetFlagErrorFunc(o.flagError)
	f := cmd.Flags()
	o.sources = addTemplateFlags(f)
	f.BoolVar(&o.dryRun, "dry-run", false, "write nothing, run nothing: print a unified diff against each destination")
	f.BoolVar(&o.exitCode, "exit-code", false, "with --dry-run: exit 2 when a destination would change, 0 when none would, 1 on any error")
	f.BoolVar(&o.stdout, "stdout", false, "write nothing, run nothing: print each rendered output")
	f.StringVar(&o.context, "context", "", "render from this JSON fixture instead of a store")
	f.BoolVar(&o.dump, "context-dump", false, "write nothing, run nothing: print the data each template receives (its dot and the keys it reads) as JSON")
	o.store = addStoreCommandFlags(f)
	addConsulFlag(f, &o.consul)
	return cmd
}

// addConsulFlag registers --consul, the agent of the catalog functions.
func addConsulFlag(f *pflag.FlagSet, addr *string) {
	f.StringVar(addr, "consul", "", `Consul agent whose catalog the native templates' service, services, node and nodes read (host:port or http[s]://host:port; token: CONSUL_HTTP_TOKEN; default: the [catalog] of --config)`)
}

// runE runs the command; with --exit-code every error exits 1, as 2
// means "would change" only.
func (o *renderOptions) runE(cmd *cobra.Command, _ []string) error {
	err := o.run(cmd)
	var ce exitCodeError
	if o.exitCode && err != nil && !(errors.As(err, &ce) && ce.code == exitChanges) {
		return exitCodeError{exitFailure, err}
	}
	return err
}

func (o *renderOptions) flagError(_ *cobra.Command, err error) error {
	if o.exitCode {
		return exitCodeError{exitFailure, err}
	}
	return usageError{err}
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
	deferGC(oneShotHeap) // renders once and exits
	if o.dryRun && o.stdout {
		return usagef("--dry-run and --stdout exclude each other")
	}
	if o.dump && (o.dryRun || o.stdout) {
		return usagef("--context-dump excludes --dry-run and --stdout")
	}
	if o.exitCode && !o.dryRun {
		return usagef("--exit-code needs --dry-run")
	}
	if o.context != "" && cmd.Flags().Changed("store") {
		return usagef("--context and --store exclude each other")
	}
	confs, files, err := o.sources.load()
	if err != nil {
		return err
	}
	if o.planning && len(confs) == 0 {
		if confs, err = o.daemonTemplates(cmd.Context()); err != nil {
			return err
		}
	}
	ts := make([]loaded, 0, len(confs))
	var parseErrs []error
	for _, c := range confs {
		if c.Stdout() && !o.stdout && !o.dump {
			return usagef("%s: no destination: use --stdout, or SRC:DEST", c.Origin)
		}
		opts := c.Options
		opts.Once = true // rendered once
		t, err := dialect.Parse(c.Src, opts)
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
	if o.context == "" && !o.dump {
		return o.fromStore(cmd.Context(), cmd.OutOrStdout(), log, ts, files)
	}
	inputs, err := o.inputs(cmd.Context(), log, ts)
	if err != nil {
		return err
	}
	if o.context == "" { // .Certs as berth up reads them
		set := readCerts(certDir(o.store.stateDir, files), log)
		env := acmeEnv(o.store.stateDir, files) // BERTH_ACME_CHALLENGE as berth up gives it
		for i := range inputs {
			inputs[i].Certs = set
			if inputs[i].Env == nil {
				inputs[i].Env = env
			}
		}
	}
	if o.dump {
		return o.dumpContext(cmd.OutOrStdout(), ts, inputs)
	}
	jobs := make([]render.Job, len(ts))
	for i, t := range ts {
		jobs[i] = render.Job{Spec: t.conf.Spec, Source: render.Bind(t.tmpl, inputs[i])}
	}
	r := render.New(render.WithLogger(log))
	if o.stdout || o.dryRun {
		changes, results := planEach(r, jobs)
		return o.show(cmd.OutOrStdout(), log, changes, results, jobs)
	}
	if _, err := r.Cycle(cmd.Context(), jobs); err != nil {
		return exitCodeError{exitFailure, err}
	}
	return nil
}

// fromStore renders the templates from the store through the runner
// (runner.Once: each prefix listed once, .Certs, and the [catalog] or
// --consul agent's catalog, a render held for its first answer waiting
// for it); --stdout and --dry-run plan the jobs instead of applying them.
func (o *renderOptions) fromStore(ctx context.Context, w io.Writer, log *slog.Logger, ts []loaded, files []*config.File) error {
	st, err := o.store.open(ctx, log)
	if err != nil {
		return err
	}
	defer st.Close()
	ropts := []runner.Option{runner.WithLogger(log),
		runner.WithCerts(certs.New(certDir(o.store.stateDir, files), certs.WithLogger(log))), // .Certs as berth up reads them
		runner.WithEnv(acmeEnv(o.store.stateDir, files)),                                     // BERTH_ACME_CHALLENGE as berth up gives it
	}
	cat, err := catalogSources(ctx, o.consul, files, log)
	if err == nil && cat == nil { // the daemon's, as its store
		cat, err = o.daemonCatalog(ctx, log)
	}
	if err != nil {
		return err
	}
	if cat != nil {
		ropts = append(ropts, cat)
	}
	rend := render.New(render.WithLogger(log))
	r := runner.New(st, rend, ropts...)
	confs := make([]config.Template, len(ts))
	for i, t := range ts {
		confs[i] = t.conf
	}
	if o.stdout || o.dryRun {
		var changes []render.Change
		var jobs []render.Job
		results, err := r.OnceWith(ctx, confs, func(_ context.Context, js []render.Job) ([]render.Result, error) {
			var results []render.Result
			changes, results = planEach(rend, js)
			jobs = js
			return results, nil
		})
		if err != nil {
			return exitCodeError{exitFailure, err}
		}
		return o.show(w, log, changes, results, jobs)
	}
	results, err := r.Once(ctx, confs)
	if err == nil {
		err = joinResults(results)
	}
	if err != nil {
		return exitCodeError{exitFailure, err}
	}
	return nil
}

// catalogSources is runner.WithSources over the Consul catalog of the
// agent at addr (--consul), else of the first configuration file's
// [catalog] (or its [registry]'s agent, config.Catalog.FromRegistry); nil:
// none is configured.
func catalogSources(ctx context.Context, addr string, files []*config.File, log *slog.Logger) (runner.Option, error) {
	var c config.Catalog
	if len(files) > 0 {
		c = files[0].Catalog
	}
	if addr != "" {
		c.Address = addr
	}
	if !c.Enabled() {
		return nil, nil
	}
	return catalogOption(ctx, c, log)
}

// catalogOption is runner.WithSources over the catalog c configures.
func catalogOption(ctx context.Context, c config.Catalog, log *slog.Logger) (runner.Option, error) {
	cat, err := catalog.FromConfig(ctx, c, log)
	if err != nil {
		return nil, err
	}
	return runner.WithSources(catalog.Keys, cat.Open), nil
}

// daemonCatalog is runner.WithSources over the catalog of the daemon at
// -H (else BERTH_HOST, else the default socket, if one answers there);
// nil: it has none, or there is no daemon.
func (o *renderOptions) daemonCatalog(ctx context.Context, log *slog.Logger) (runner.Option, error) {
	socket := daemonSocket(o.store)
	_, info, err := daemonStoreInfo(ctx, socket, false)
	if err != nil || info.Catalog == nil {
		log.Debug("no Consul catalog from the daemon", "socket", socket, "err", err)
		return nil, nil
	}
	c := info.Catalog.Config()
	if _, err := c.ReadToken(); err != nil {
		log.Warn("the daemon's Consul token file is not readable here; using CONSUL_HTTP_TOKEN", "err", err)
		c.TokenFile = ""
	}
	opt, err := catalogOption(ctx, c, log)
	if err != nil {
		return nil, fmt.Errorf("the catalog of the daemon at %s: %w", socket, err)
	}
	return opt, nil
}

// planEach plans each job (render.Renderer.PlanJob): its change, or the
// error in its result.
func planEach(r *render.Renderer, jobs []render.Job) ([]render.Change, []render.Result) {
	changes, results := make([]render.Change, len(jobs)), make([]render.Result, len(jobs))
	for i, j := range jobs {
		changes[i], results[i].Err = r.PlanJob(j)
	}
	return changes, results
}

// joinResults joins the errors of results.
func joinResults(results []render.Result) error {
	var errs []error
	for _, res := range results {
		errs = append(errs, res.Err)
	}
	return errors.Join(errs...)
}

// show prints the planned changes: each output (--stdout), or each diff
// (--dry-run).
func (o *renderOptions) show(w io.Writer, log *slog.Logger, changes []render.Change, results []render.Result, jobs []render.Job) error {
	if o.stdout {
		return o.print(w, changes, results)
	}
	return o.plan(w, log, changes, results, jobs)
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

// exitChanges is render --dry-run --exit-code's answer "something would
// change".
const exitChanges = 2

// print prints each planned output.
func (o *renderOptions) print(w io.Writer, changes []render.Change, results []render.Result) error {
	for i, c := range changes {
		if results[i].Err != nil {
			continue
		}
		if _, err := w.Write(c.Output); err != nil {
			return err
		}
	}
	if err := joinResults(results); err != nil {
		return exitCodeError{exitFailure, err}
	}
	return nil
}

// plan prints what a render would change (render.Plan): a diff per
// destination.
func (o *renderOptions) plan(w io.Writer, log *slog.Logger, changes []render.Change, results []render.Result, jobs []render.Job) error {
	var ok []render.Change
	for i, c := range changes {
		if results[i].Err != nil {
			continue
		}
		ok = append(ok, c)
		switch {
		case !c.Changed:
			log.Info("unchanged", "template", c.Name, "dest", c.Dest)
		case c.Diff == "":
			log.Info("same content, but mode or owner would change", "template", c.Name, "dest", c.Dest)
		}
		if _, werr := io.WriteString(w, c.Diff); werr != nil {
			return werr
		}
		if o.planning && c.Changed {
			if werr := writeCommands(w, c, jobs); werr != nil {
				return werr
			}
		}
	}
	if err := joinResults(results); err != nil {
		return exitCodeError{exitFailure, err}
	}
	if o.exitCode && render.Pending(ok) {
		return exitCodeError{code: exitChanges}
	}
	return nil
}

// dumpContext prints the data each template receives (explain.Dump), as
// one JSON list.
func (o *renderOptions) dumpContext(w io.Writer, ts []loaded, inputs []dialect.Input) error {
	dumps := make([]explain.Dump, 0, len(ts))
	var errs []error
	for i, t := range ts {
		d, err := explain.NewDump(t.conf.Name, t.tmpl, inputs[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.conf.Origin, err))
			continue
		}
		dumps = append(dumps, d)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(dumps); err != nil {
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return exitCodeError{exitFailure, err}
	}
	return nil
}
