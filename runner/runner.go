package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// Retry bounds for a template whose render, check or reload failed.
const (
	minRetry = time.Second
	maxRetry = time.Minute
)

// DefaultSettle is how long a template's files must go without writes
// before an edit is re-read, for templates whose configuration sets none.
const DefaultSettle = 200 * time.Millisecond

// Runner renders a set of templates whenever their data or files change.
type Runner struct {
	st       store.Store
	renderer *render.Renderer
	log      *slog.Logger
	mirrorO  []watcher.MirrorOption
	defWait  watcher.Wait
	minIntvl time.Duration
	observe  func(Observation)
	env      map[string]string

	keys       func(config.Template) []string
	open       func(key string) Source
	triggers   func(config.Template) Triggers
	applied    func(context.Context, Applied)
	regenerate <-chan struct{}
	certs      *certs.Store // WithCerts (certs.go)

	updates chan update
	status  chan chan []TemplateStatus
}

// Option configures a Runner.
type Option func(*Runner)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(r *Runner) { r.log = l } }

// WithMirrorOptions passes options to every mirror (resync, backoff).
func WithMirrorOptions(o ...watcher.MirrorOption) Option {
	return func(r *Runner) { r.mirrorO = append(r.mirrorO, o...) }
}

// WithDefaultWait sets the quiescence of templates that have none.
func WithDefaultWait(w watcher.Wait) Option { return func(r *Runner) { r.defWait = w } }

// Observation is one render attempt of one template, as reported to an
// observer (metrics).
type Observation struct {
	Template string
	Revision store.Revision // of the snapshot rendered
	Result   render.Result  // Changed, Reloaded, Err ...
	Took     time.Duration  // the render cycle the template was part of
	// Quarantined are the template's records left out of its output after
	// this attempt, because with them its check fails (see Quarantine).
	Quarantined []QuarantinedKey
	// Checks is the number of check runs this attempt's quarantine search
	// took (0: there was none).
	Checks int
	// FailingSince is when the template started failing to apply; zero
	// when this attempt applied (possibly without quarantined records).
	FailingSince time.Time
	// Paced is how long reload pacing held this attempt back (0: not at
	// all). Result.Cost is the check+reload time it measured, which
	// paces the next one; Result.GenerationWait the wait for the
	// previous proxy generation to exit.
	Paced time.Duration
}

// WithEnv sets the environment templates see (.Env, env); nil, the
// default, is the process environment.
func WithEnv(env map[string]string) Option { return func(r *Runner) { r.env = env } }

// WithObserver calls f after every render attempt, from Run's goroutine;
// f must not block.
func WithObserver(f func(Observation)) Option { return func(r *Runner) { r.observe = f } }

// WithMinReloadInterval sets the reload budget of templates that have
// none: no change is applied sooner than d after the previous one.
func WithMinReloadInterval(d time.Duration) Option { return func(r *Runner) { r.minIntvl = d } }

// New returns a runner reading st (nil when WithSources replaces the
// store) and writing through renderer.
func New(st store.Store, renderer *render.Renderer, opts ...Option) *Runner {
	r := &Runner{
		st: st, renderer: renderer, log: slog.Default(),
		updates: make(chan update),
		status:  make(chan chan []TemplateStatus),
	}
	for _, f := range opts {
		f(r)
	}
	return r
}

type update struct {
	templates []config.Template
	reply     chan error
}

// Update replaces the set of templates (configuration reload). Unchanged
// templates keep their state, mirrors still in use keep watching; new
// templates render once their prefixes are synced.
func (r *Runner) Update(ctx context.Context, templates []config.Template) error {
	reply := make(chan error, 1)
	select {
	case r.updates <- update{templates, reply}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status reports every template's state.
func (r *Runner) Status(ctx context.Context) ([]TemplateStatus, error) {
	reply := make(chan []TemplateStatus, 1)
	select {
	case r.status <- reply:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case s := <-reply:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Once waits until every prefix the templates read has synced, renders all
// of them in one cycle, and returns the results (one-shot mode).
func (r *Runner) Once(ctx context.Context, templates []config.Template) ([]render.Result, error) {
	return r.once(ctx, templates, r.renderer.Cycle, true)
}

// OnceWith is Once with cycle in place of the renderer's Cycle (berth
// render --stdout and --dry-run preview the jobs instead): cycle gets one
// job per template, in order, and returns one result per job; it is
// called again, with new snapshots, while one of them is held for catalog
// data (dialect.ErrPending). Nothing is reported applied.
func (r *Runner) OnceWith(ctx context.Context, templates []config.Template, cycle func(context.Context, []render.Job) ([]render.Result, error)) ([]render.Result, error) {
	return r.once(ctx, templates, cycle, false)
}

func (r *Runner) once(ctx context.Context, templates []config.Template, cycle func(context.Context, []render.Job) ([]render.Result, error), apply bool) ([]render.Result, error) {
	ts, err := parseAll(templates, true)
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sources := map[string]Source{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, t := range ts {
		for _, k := range r.sourceKeys(t.conf) {
			if _, ok := sources[k]; !ok {
				src := r.openSource(k)
				sources[k] = src
				wg.Go(func() { src.Run(mctx) })
			}
		}
	}
	// One-shot mode does not wait out an outage: the first failed listing
	// of a source fails the run.
	for _, src := range sources {
		for synced := false; !synced; {
			select {
			case <-src.Synced():
				synced = true
			case <-time.After(20 * time.Millisecond):
				if h := src.Health(); h.LastError != nil && !h.Synced {
					return nil, fmt.Errorf("list %s: %w", h.Prefix, h.LastError)
				}
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for the first sync of %s: %w", src.Health().Prefix, ctx.Err())
			}
		}
	}
	// A render held for catalog data (dialect.ErrPending) is tried again
	// once a source notifies.
	notify := make(chan struct{}, 1)
	for _, src := range sources {
		ch, unsub := src.Subscribe()
		defer unsub()
		wg.Go(func() {
			for {
				select {
				case <-ch:
					select {
					case notify <- struct{}{}:
					default:
					}
				case <-mctx.Done():
					return
				}
			}
		})
	}
	var results []render.Result
	for {
		jobs := make([]render.Job, len(ts))
		for i, t := range ts {
			in, _ := snapshot(r.sourceKeys(t.conf), sources)
			in.Warn, in.Env = r.warner(t.conf.Name), r.env
			jobs[i] = render.Job{Spec: t.conf.Spec, Source: bind(r.binderOf(r.sourceKeys(t.conf), sources), t.tmpl, in)}
		}
		results, err = cycle(ctx, jobs)
		if !slices.ContainsFunc(results, func(res render.Result) bool { return errors.Is(res.Err, dialect.ErrPending) }) {
			break
		}
		if err := waitHeld(ctx, notify, sources); err != nil {
			return results, err
		}
	}
	if r.applied != nil && apply {
		for i, res := range results {
			if res.Err == nil {
				r.applied(ctx, Applied{Template: ts[i].conf, Result: res})
			}
		}
	}
	return results, err
}

// waitHeld waits, for a render held for catalog data, until a source
// notifies. As the first sync, it does not wait out an outage: a source
// whose query fails fails the run.
func waitHeld(ctx context.Context, notify <-chan struct{}, sources map[string]Source) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-notify:
			return nil
		case <-tick.C:
			for _, src := range sources {
				if h := src.Health(); h.LastError != nil && !h.FailingSince.IsZero() {
					return fmt.Errorf("waiting for catalog data: %s: %w", h.Prefix, h.LastError)
				}
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for catalog data: %w", ctx.Err())
		}
	}
}

// warner logs what template name reports with {{warn}}.
func (r *Runner) warner(name string) func(string) {
	return func(msg string) { r.log.Warn(msg, "template", name) }
}

// parsed is a template configuration with its parsed template.
type parsed struct {
	conf config.Template
	tmpl *dialect.Template // nil when it does not parse
	err  error
}

func parseAll(templates []config.Template, once bool) ([]parsed, error) {
	ps, err := parseEach(templates, once)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.err)
	}
	return ps, errors.Join(errs...)
}

// parseEach validates templates as a set and parses each; a template that
// does not parse comes back with its error. once: each is executed once
// (dialect.Options.Once), not kept rendering.
func parseEach(templates []config.Template, once bool) ([]parsed, error) {
	if err := config.Validate(templates); err != nil {
		return nil, err
	}
	out := make([]parsed, 0, len(templates))
	for _, c := range templates {
		p := parsed{conf: c}
		opts := c.Options
		opts.Once = once
		if p.tmpl, p.err = dialect.Parse(c.Src, opts); p.err != nil {
			p.err = fmt.Errorf("%s: %w", c.Origin, p.err)
		}
		out = append(out, p)
	}
	return out, nil
}

// snapshot merges the sources keys name into one render input, and
// returns their generations: the identity of its content.
func snapshot(keys []string, sources map[string]Source) (dialect.Input, []uint64) {
	var (
		in    dialect.Input
		parts [][]store.KV
		gens  = make([]uint64, 0, len(keys))
	)
	for _, k := range keys {
		s := sources[k].Snapshot()
		parts = append(parts, s.KVs)
		in.Revision = max(in.Revision, s.Revision)
		if s.Containers != nil {
			if in.Containers == nil {
				in.Containers = make([]records.Container, 0, len(s.Containers))
			}
			in.Containers = append(in.Containers, s.Containers...)
			in.Docker = s.Docker
		}
		if s.Certs != nil {
			in.Certs = s.Certs
		}
		if s.Catalog != nil {
			in.Catalog = s.Catalog
		}
		gens = append(gens, s.Generation)
	}
	in.KVs = render.MergeKVs(parts...)
	return in, gens
}
