package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/berthd/berth/config"
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

// New returns a runner reading st and writing through renderer.
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

// TemplateStatus is what one template last did.
type TemplateStatus struct {
	Name       string
	Dest       string
	Synced     bool           // every prefix finished its first sync
	Revision   store.Revision // of the last successful render
	LastRender time.Time      // last successful render (changed or not)
	LastChange time.Time      // last time the destination was replaced
	LastError  error          // of the last attempt; nil after a success
	Renders    int            // renders that replaced the destination
	Failures   int            // failed attempts (render, check, write, reload)
	Mirrors    []watcher.Health
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
	ts, err := parseAll(templates)
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mirrors := map[string]*watcher.Mirror{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, t := range ts {
		for _, p := range t.conf.Prefixes {
			if _, ok := mirrors[p]; !ok {
				m := watcher.NewMirror(r.st, p, append([]watcher.MirrorOption{watcher.WithLogger(r.log)}, r.mirrorO...)...)
				mirrors[p] = m
				wg.Go(func() { m.Run(mctx) })
			}
		}
	}
	// One-shot mode does not wait out an outage: the first failed listing
	// of a prefix fails the run.
	for _, m := range mirrors {
		for synced := false; !synced; {
			select {
			case <-m.Synced():
				synced = true
			case <-time.After(20 * time.Millisecond):
				if h := m.Health(); h.LastError != nil && !h.Synced {
					return nil, fmt.Errorf("list %s: %w", m.Prefix(), h.LastError)
				}
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for the first sync of %s: %w", m.Prefix(), ctx.Err())
			}
		}
	}
	jobs := make([]render.Job, len(ts))
	for i, t := range ts {
		in, _ := snapshot(t.conf.Prefixes, mirrors)
		in.Warn, in.Env = r.warner(t.conf.Name), r.env
		jobs[i] = render.Job{Spec: t.conf.Spec, Source: render.Bind(t.tmpl, in)}
	}
	return r.renderer.Cycle(ctx, jobs)
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

func parseAll(templates []config.Template) ([]parsed, error) {
	ps, err := parseEach(templates)
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
// does not parse comes back with its error.
func parseEach(templates []config.Template) ([]parsed, error) {
	if err := config.Validate(templates); err != nil {
		return nil, err
	}
	out := make([]parsed, 0, len(templates))
	for _, c := range templates {
		p := parsed{conf: c}
		if p.tmpl, p.err = dialect.Parse(c.Src, c.Options); p.err != nil {
			p.err = fmt.Errorf("%s: %w", c.Origin, p.err)
		}
		out = append(out, p)
	}
	return out, nil
}

// snapshot merges the mirrors of prefixes into one render input, and
// returns the mirrors' generations: the identity of its content.
func snapshot(prefixes []string, mirrors map[string]*watcher.Mirror) (dialect.Input, []uint64) {
	var (
		parts [][]store.KV
		rev   store.Revision
		gens  = make([]uint64, 0, len(prefixes))
	)
	for _, p := range prefixes {
		s := mirrors[p].Snapshot()
		parts = append(parts, s.KVs)
		rev = max(rev, s.Revision)
		gens = append(gens, s.Generation)
	}
	return dialect.Input{Revision: rev, KVs: render.MergeKVs(parts...)}, gens
}

// Run renders the templates until ctx ends. It returns an error only when
// the set of templates is invalid as configuration (two writing one
// destination) or the file watcher cannot start. A template that does not
// parse is reported (log, Status) and picked up when its file is fixed;
// render, check and reload errors are retried with backoff.
func (r *Runner) Run(ctx context.Context, templates []config.Template) error {
	files, err := watcher.NewFiles(r.log)
	if err != nil {
		return err
	}
	defer files.Close()
	s := &state{
		r: r, files: files,
		mirrors: map[string]*mirrorEntry{},
		tmpls:   map[string]*tmplState{},
		due:     make(chan *tmplState, 64),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer s.wg.Wait()
	defer cancel()
	s.ctx = ctx
	s.wg.Go(func() { files.Run(ctx) })
	if err := s.apply(templates); err != nil {
		return err
	}
	for {
		select {
		case t := <-s.due:
			batch := map[*tmplState]bool{t: true}
			for more := true; more; {
				select {
				case t := <-s.due:
					batch[t] = true
				default:
					more = false
				}
			}
			s.render(batch)
		case u := <-r.updates:
			u.reply <- s.apply(u.templates)
		case reply := <-r.status:
			reply <- s.report()
		case <-ctx.Done():
			for _, t := range s.tmpls {
				t.stop()
			}
			for _, m := range s.mirrors {
				m.cancel()
			}
			return nil
		}
	}
}

// state is Run's state; only Run's goroutine touches it (the per-template
// goroutines only send on due).
type state struct {
	r       *Runner
	ctx     context.Context
	wg      sync.WaitGroup
	files   *watcher.Files
	mirrors map[string]*mirrorEntry
	tmpls   map[string]*tmplState
	due     chan *tmplState
}

type mirrorEntry struct {
	m      *watcher.Mirror
	refs   int
	cancel context.CancelFunc
}

type tmplState struct {
	conf    config.Template
	tmpl    *dialect.Template
	mirrors map[string]*watcher.Mirror
	deb     *watcher.Debouncer
	cancel  context.CancelFunc
	done    chan struct{}

	// Owned by Run's goroutine, except tmpl, which the watch goroutine
	// replaces under mu when a file changes.
	mu          sync.Mutex
	synced      bool
	applied     bool     // the snapshot (appliedData) and template (appliedGen) below were rendered successfully
	appliedData []uint64 // mirror generations of the last successful render
	appliedRev  store.Revision
	tmplGen     int // bumped when the template is re-parsed
	appliedGen  int
	lastRender  time.Time
	lastChange  time.Time
	lastErr     error
	renders     int
	failures    int
	retry       time.Duration
	retryTimer  *time.Timer
	warned      map[string]bool // what the last render reported with {{warn}}
}

// files are the files the template reads: those the parsed template
// names, else (it did not parse) its configured source and includes.
func (t *tmplState) files() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tmpl != nil {
		return t.tmpl.Files()
	}
	return append([]string{t.conf.Src}, t.conf.Options.Includes...)
}

func (t *tmplState) stop() {
	t.cancel()
	<-t.done
	if t.retryTimer != nil {
		t.retryTimer.Stop()
	}
}

// apply makes the running set match templates.
func (s *state) apply(templates []config.Template) error {
	ts, err := parseEach(templates)
	if err != nil {
		return err
	}
	next := map[string]parsed{}
	for _, t := range ts {
		next[t.conf.Name] = t
		if t.err != nil {
			s.r.log.Error("template does not parse; it renders once its file is fixed", "template", t.conf.Name, "err", t.err)
		}
	}
	var retired []*tmplState
	for name, cur := range s.tmpls {
		if n, ok := next[name]; ok && reflect.DeepEqual(n.conf, cur.conf) && n.err == nil && cur.tmpl != nil {
			delete(next, name) // unchanged: keep it as it is
			continue
		}
		retired = append(retired, cur)
		delete(s.tmpls, name)
	}
	// Start the new templates before releasing the old ones' mirrors, so
	// a prefix both use keeps its mirror (and its sync).
	for _, name := range slices.Sorted(maps.Keys(next)) {
		s.start(next[name])
	}
	for _, cur := range retired {
		cur.stop()
		for p := range cur.mirrors {
			s.releaseMirror(p)
		}
	}
	return nil
}

func (s *state) acquireMirror(prefix string) *watcher.Mirror {
	if e, ok := s.mirrors[prefix]; ok {
		e.refs++
		return e.m
	}
	m := watcher.NewMirror(s.r.st, prefix, append([]watcher.MirrorOption{watcher.WithLogger(s.r.log)}, s.r.mirrorO...)...)
	ctx, cancel := context.WithCancel(s.ctx)
	s.mirrors[prefix] = &mirrorEntry{m: m, refs: 1, cancel: cancel}
	s.wg.Go(func() { m.Run(ctx) })
	return m
}

func (s *state) releaseMirror(prefix string) {
	e := s.mirrors[prefix]
	if e.refs--; e.refs == 0 {
		e.cancel()
		delete(s.mirrors, prefix)
	}
}

// start begins watching one template's prefixes and files.
func (s *state) start(p parsed) {
	ctx, cancel := context.WithCancel(s.ctx)
	wait := p.conf.Wait
	if p.conf.Wait.IsZero() {
		wait = s.r.defWait
	}
	t := &tmplState{
		conf: p.conf, tmpl: p.tmpl, lastErr: p.err,
		mirrors: map[string]*watcher.Mirror{},
		deb:     watcher.NewDebouncer(ctx, wait, cmp.Or(p.conf.MinReloadInterval, s.r.minIntvl)),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	for _, pre := range p.conf.Prefixes {
		t.mirrors[pre] = s.acquireMirror(pre)
	}
	s.tmpls[p.conf.Name] = t
	go s.watchTemplate(ctx, t)
}

// watchTemplate is one template's goroutine: it waits for the first sync of
// every prefix, asks for the first render at once, then turns data and file
// changes into debounced render requests.
func (s *state) watchTemplate(ctx context.Context, t *tmplState) {
	defer close(t.done)
	log := s.r.log.With("template", t.conf.Name)
	var wg sync.WaitGroup
	defer wg.Wait()
	// Data changes go straight to the debouncer, which coalesces them.
	for _, m := range t.mirrors {
		ch, cancel := m.Subscribe()
		defer cancel()
		wg.Go(func() {
			for {
				select {
				case <-ch:
					t.deb.Trigger()
				case <-ctx.Done():
					return
				}
			}
		})
	}
	var (
		fileCh      <-chan struct{}
		cancelFiles = func() {}
		watched     []string
	)
	watchFiles := func() {
		files := t.files()
		if slices.Equal(files, watched) {
			return
		}
		ch, cancel, err := s.files.Watch(files)
		if err != nil {
			log.Warn("template files are not watched for changes", "err", err)
			return
		}
		cancelFiles()
		fileCh, cancelFiles, watched = ch, cancel, files
	}
	watchFiles()
	defer func() { cancelFiles() }()
	for _, m := range t.mirrors {
		select {
		case <-m.Synced():
		case <-ctx.Done():
			return
		}
	}
	t.mu.Lock()
	t.synced = true
	t.mu.Unlock()
	if !s.send(ctx, t) { // the first render waits for no quiescence
		return
	}
	for {
		select {
		case <-t.deb.C():
			if !s.send(ctx, t) {
				return
			}
		case <-fileCh:
			s.reparse(t, log)
			watchFiles() // an edit may have added or dropped an include
			t.deb.Trigger()
		case <-ctx.Done():
			return
		}
	}
}

// reparse re-reads a changed template; a broken edit keeps the previous
// version and is reported.
func (s *state) reparse(t *tmplState, log *slog.Logger) {
	nt, err := dialect.Parse(t.conf.Src, t.conf.Options)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if t.tmpl == nil {
			t.lastErr = fmt.Errorf("%s: %w", t.conf.Origin, err)
			log.Error("template still does not parse", "err", err)
			return
		}
		t.lastErr = fmt.Errorf("%s: %w (keeping the previous version)", t.conf.Origin, err)
		log.Error("template edit does not parse; keeping the previous version", "err", err)
		return
	}
	t.tmpl = nt
	t.tmplGen++
	log.Info("template changed on disk; re-rendering")
}

func (s *state) send(ctx context.Context, t *tmplState) bool {
	select {
	case s.due <- t:
		return true
	case <-ctx.Done():
		return false
	}
}

// render runs one cycle over the templates that are due.
func (s *state) render(batch map[*tmplState]bool) {
	var (
		jobs   []render.Job
		owner  []*tmplState
		revs   []store.Revision
		data   [][]uint64
		gens   []int
		warned []map[string]bool
	)
	for t := range batch {
		if s.tmpls[t.conf.Name] != t {
			continue // replaced or removed by an update meanwhile
		}
		in, dataGens := snapshot(t.conf.Prefixes, t.mirrors)
		// {{warn}}: log what the previous render did not already report,
		// so a lasting conflict is not logged at every change.
		cur, prev := map[string]bool{}, t.warned
		log := s.r.warner(t.conf.Name)
		in.Warn, in.Env = func(msg string) {
			if !cur[msg] && !prev[msg] {
				log(msg)
			}
			cur[msg] = true
		}, s.r.env
		t.mu.Lock()
		tmpl, gen := t.tmpl, t.tmplGen
		skip := tmpl == nil || // never parsed: nothing to render until its file is fixed
			t.applied && slices.Equal(t.appliedData, dataGens) && t.appliedGen == gen
		t.mu.Unlock()
		if skip {
			continue // this exact snapshot and template are already applied
		}
		jobs = append(jobs, render.Job{Spec: t.conf.Spec, Source: render.Bind(tmpl, in)})
		owner = append(owner, t)
		revs = append(revs, in.Revision)
		data = append(data, dataGens)
		gens = append(gens, gen)
		warned = append(warned, cur)
	}
	if len(jobs) == 0 {
		return
	}
	start := time.Now()
	// A cycle under way finishes even when Run is asked to stop: killing a
	// reload half-way would roll the file back and leave the proxy to
	// reload again after the restart. Its commands have their own
	// timeouts.
	results, _ := s.r.renderer.Cycle(context.WithoutCancel(s.ctx), jobs)
	now := time.Now()
	for i, res := range results {
		t := owner[i]
		t.warned = warned[i]
		if s.r.observe != nil {
			s.r.observe(Observation{Template: t.conf.Name, Revision: revs[i], Result: res, Took: now.Sub(start)})
		}
		log := s.r.log.With("template", t.conf.Name, "dest", res.Dest, "revision", revs[i])
		t.mu.Lock()
		if res.Err == nil {
			t.applied, t.appliedData, t.appliedRev, t.appliedGen = true, data[i], revs[i], gens[i]
			t.lastRender, t.lastErr, t.retry = now, nil, 0
			if res.Changed { // the render package logs what it wrote
				t.lastChange = now
				t.renders++
				t.deb.Rendered()
			}
			t.mu.Unlock()
			continue
		}
		t.lastErr = res.Err
		t.applied = false
		t.failures++
		if errors.Is(res.Err, render.ErrRefused) {
			// A guard refused this data; new data will trigger a new try.
			t.mu.Unlock()
			log.Warn("render refused; keeping the last good output", "err", res.Err)
			continue
		}
		t.retry = min(max(2*t.retry, minRetry), maxRetry)
		delay := t.retry
		t.mu.Unlock()
		log.Error("render failed; keeping the last good output", "err", res.Err, "retry_in", delay)
		s.scheduleRetry(t, delay)
	}
}

func (s *state) scheduleRetry(t *tmplState, delay time.Duration) {
	if t.retryTimer != nil {
		t.retryTimer.Stop()
	}
	t.retryTimer = time.AfterFunc(delay, func() { t.deb.Trigger() })
}

func (s *state) report() []TemplateStatus {
	out := make([]TemplateStatus, 0, len(s.tmpls))
	for _, name := range slices.Sorted(maps.Keys(s.tmpls)) {
		t := s.tmpls[name]
		t.mu.Lock()
		st := TemplateStatus{
			Name: name, Dest: t.conf.Spec.Dest, Synced: t.synced,
			Revision: t.appliedRev, LastRender: t.lastRender, LastChange: t.lastChange, LastError: t.lastErr,
			Renders: t.renders, Failures: t.failures,
		}
		t.mu.Unlock()
		for _, p := range t.conf.Prefixes {
			st.Mirrors = append(st.Mirrors, t.mirrors[p].Health())
		}
		out = append(out, st)
	}
	return out
}
