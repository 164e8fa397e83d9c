package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/endpoints/haproxy"
	"github.com/berthd/berth/endpoints/nginxlua"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/watcher"
)

// Live endpoints (config live = "nginx-lua" or "haproxy"): the template renders only
// the structure, and the endpoint set its {{endpoints}} call built goes to
// a Sink through a Pusher after every successful render: instances coming
// and going leave the file byte-identical, so the render skips its check
// and reload, and the proxy takes the new servers at once. When the proxy
// refuses a push, the template is rendered with its servers in the file
// (BERTH_LIVE empty) and reloaded, until a push succeeds again.

// live is one template's live endpoint side; a nil *live is a template
// without one (every method is a no-op).
type live struct {
	kind, dir string
	log       *slog.Logger
	pusher    *endpoints.Pusher
	sink      endpoints.Sink

	// The memos of the sets follow builds and of the full sets applied
	// compares the render's with (each on its own goroutine).
	followSets, fullSets endpoints.Builder

	mu       sync.Mutex
	static   bool          // the proxy refused a push: render the servers into the file
	rendered bool          // the last successful render was static
	noSet    bool          // the last successful render did not call endpoints (reported once)
	grouped  bool          // the last render's set was Build over all its instances: push early
	config   endpoints.Set // the last successful live render's set: its Config is what the file holds
}

// liveJob is what a job's render gave the live side.
type liveJob struct {
	set    *endpoints.Set // what the template's {{endpoints}} built, nil if it did not call it
	static bool           // rendered with the servers in the file
}

// startLive prepares t's live side, if it declares one; a template whose
// sink cannot be set up (the Lua module missing) does not load: it is
// reported as not parsing, with the reason.
func (s *state) startLive(ctx context.Context, t *tmplState) {
	if t.conf.Live == "" {
		return
	}
	env := s.r.env
	if env == nil {
		env = environ()
	}
	l, err := newLive(t.conf, env, s.r.log.With("template", t.conf.Name, "live", t.conf.Live), t.deb.Trigger)
	if err != nil {
		t.tmpl, t.parseErr = nil, fmt.Errorf("%s: live = %q: %w", t.conf.Origin, t.conf.Live, err)
		s.r.log.Error("template does not load", "template", t.conf.Name, "err", t.parseErr)
		return
	}
	t.live = l
	s.wg.Go(func() {
		l.pusher.Run(ctx)
		if c, ok := l.sink.(io.Closer); ok {
			c.Close() // the connection a sink keeps between pushes
		}
	})
	s.wg.Go(func() { l.follow(ctx, t) })
}

// follow pushes the set of every new snapshot of t's sources at once,
// while the template's last render showed that its set is exactly
// endpoints.Build over all its instances (the shipped templates'
// {{endpoints .Services}}; and no record is quarantined): instances come
// and go at the speed of a push, not at that of the render loop, which
// may be executing the whole template (tens of milliseconds at a thousand
// hosts) or waiting out the template's quiescence. The render's own set
// follows as usual; the Pusher keeps the newest revision of the two.
func (l *live) follow(ctx context.Context, t *tmplState) {
	var wg sync.WaitGroup
	defer wg.Wait() // after the subscriptions' cancels (deferred later, run first)
	kick := make(chan struct{}, 1)
	for _, src := range t.sources {
		ch, cancel := src.Subscribe()
		defer cancel()
		wg.Go(func() {
			for {
				select {
				case <-ch:
					select {
					case kick <- struct{}{}:
					default:
					}
				case <-ctx.Done():
					return
				}
			}
		})
	}
	for _, src := range t.sources {
		select {
		case <-src.Synced():
		case <-ctx.Done():
			return
		}
	}
	var dec *dialect.Template
	for n := 0; ; n++ {
		select {
		case <-kick:
		case <-ctx.Done():
			return
		}
		l.mu.Lock()
		ok := l.grouped && !l.static
		l.mu.Unlock()
		t.mu.Lock()
		tmpl := t.tmpl
		t.mu.Unlock()
		if !ok || tmpl == nil {
			continue
		}
		if dec == nil || n%decoderBuilds == 0 {
			dec = decoder(t.conf)
		}
		in, gens := snapshot(t.keys, t.sources)
		if set, ok := build(dec, &l.followSets, in, generation(gens)); ok {
			l.pusher.Update(set)
		}
	}
}

// decoderBuilds is how many sets follow builds with one decoder: its memo
// keeps every record it decoded (nothing prunes it), so it is replaced,
// and the records decoded again, that often.
const decoderBuilds = 256

// decoder is a template that only decodes conf's records (Services), for
// follow: its own memo of decoded records, so that a build does not decode
// every record again while the render's execution holds the template's
// memo (at a thousand hosts, 20-40 ms instead of a few).
func decoder(conf config.Template) *dialect.Template {
	opts := conf.Options
	opts.Includes = nil
	dec, err := dialect.ParseString(conf.Name+" (live decoder)", "", opts)
	if err != nil {
		return nil // build then reports nothing: the render's set follows
	}
	return dec
}

// liveSettle is the least quiescence of a live template's renders. Its
// instances reach the proxy through follow's push at once; the render
// after them (byte-identical to the last but for a structural change)
// waits until the burst of record writes a container start or stop makes
// is over, so that it runs once per burst, and after the push rather than
// beside it (at a thousand hosts a render is tens of milliseconds of CPU).
const liveSettle = 50 * time.Millisecond

// liveWait is the quiescence of conf's renders: w, at least liveSettle for
// a live template.
func liveWait(conf config.Template, w watcher.Wait) watcher.Wait {
	if conf.Live == "" || w.Min >= liveSettle {
		return w
	}
	w.Min = liveSettle
	if w.Max < w.Min {
		w.Max = 4 * w.Min
	}
	return w
}

// newLive makes the sink of conf.Live and its pusher (the caller runs
// it); rerender asks for a render (the mode changed). env is what the
// template sees (BERTH_NGINX_MODULES: where nginx's modules are).
func newLive(conf config.Template, env map[string]string, log *slog.Logger, rerender func()) (*live, error) {
	var sink endpoints.Sink
	switch conf.Live {
	case "nginx-lua":
		if err := nginxlua.CheckModule(env["BERTH_NGINX_MODULES"]); err != nil {
			return nil, err
		}
		s, err := nginxlua.New(conf.LiveDir, nginxlua.WithLogger(log))
		if err != nil {
			return nil, err
		}
		sink = s
	case "haproxy":
		s, err := haproxy.New(conf.LiveDir, haproxy.WithLogger(log), haproxy.WithConfigFile(conf.Spec.Dest))
		if err != nil {
			return nil, err
		}
		sink = s
	default:
		return nil, fmt.Errorf("no endpoint sink for %q", conf.Live)
	}
	l := &live{kind: conf.Live, dir: conf.LiveDir, log: log, sink: sink}
	l.pusher = endpoints.NewPusher(sink, endpoints.WithPushLogger(log),
		endpoints.OnRefused(func(error) { l.setStatic(true, rerender) }),
		endpoints.OnApplied(func(endpoints.Set) { l.setStatic(false, rerender) }))
	return l, nil
}

func (l *live) setStatic(static bool, rerender func()) {
	l.mu.Lock()
	changed := l.static != static
	l.static = static
	l.mu.Unlock()
	if changed {
		if static {
			l.log.Warn("rendering the servers into the file and reloading until the proxy takes pushes again")
		} else {
			l.log.Info("the proxy takes pushes again; rendering the structure only")
		}
		rerender()
	}
}

// bind sets up a job's input: the environment the template sees
// (BERTH_LIVE, BERTH_LIVE_DIR) and where its endpoint set goes.
func (l *live) bind(j *job) {
	if l == nil {
		return
	}
	l.mu.Lock()
	j.live.static = l.static
	config := l.config
	l.mu.Unlock()
	env := maps.Clone(j.in.Env)
	if env == nil {
		env = environ()
	}
	env["BERTH_LIVE"], env["BERTH_LIVE_DIR"] = l.kind, l.dir
	if j.live.static {
		env["BERTH_LIVE"] = ""
	}
	j.in.Env = env
	j.in.Endpoints = func(s endpoints.Set) { j.live.set = &s }
	j.in.EndpointOptions = []endpoints.Option{endpoints.AtGeneration(generation(j.data))}
	if !j.live.static {
		// The file keeps the servers of the last live render while the
		// structure stays: byte-identical, no reload.
		j.in.EndpointOptions = append(j.in.EndpointOptions, endpoints.WithConfigServers(config))
	}
}

// generation is the generation of a set built from a snapshot of sources
// at gens: their sum, which grows with every change of any of them.
func generation(gens []uint64) uint64 {
	var g uint64
	for _, x := range gens {
		g += x
	}
	return g
}

// stale reports whether the mode changed since the last successful
// render, which must then render again although its data did not change.
func (l *live) stale() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.static != l.rendered
}

// applied hands a successful render's endpoint set to the pusher.
func (l *live) applied(j *job) {
	if l == nil {
		return
	}
	full, ok := build(j.tmpl, &l.fullSets, j.in, generation(j.data))
	l.mu.Lock()
	l.rendered = j.live.static
	if j.live.set != nil {
		l.config = *j.live.set
	}
	report := j.live.set == nil && !l.noSet
	l.noSet = j.live.set == nil
	l.grouped = ok && j.live.set != nil && j.live.set.Equal(full) && len(j.t.quarantine) == 0
	l.mu.Unlock()
	if report {
		l.log.Error("live template does not call {{endpoints .Services}}: no endpoints are pushed")
	}
	if j.live.set != nil {
		l.pusher.Update(*j.live.set)
	}
}

// build is endpoints.Build over every instance of in, as tmpl decodes it,
// through b's memo.
func build(tmpl *dialect.Template, b *endpoints.Builder, in dialect.Input, gen uint64) (endpoints.Set, bool) {
	if tmpl == nil {
		return endpoints.Set{}, false
	}
	services, err := tmpl.Services(in)
	if err != nil {
		return endpoints.Set{}, false
	}
	set, _ := b.Build(endpoints.Instances(services), endpoints.AtRevision(in.Revision), endpoints.AtGeneration(gen))
	return set, true
}

// environ is the process environment as a map (Input.Env nil means it).
func environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}
