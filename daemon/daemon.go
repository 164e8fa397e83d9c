package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// DefaultStallAfter is how long a failing store or a stalled watch is
// tolerated before /healthz fails.
const DefaultStallAfter = 30 * time.Second

// DefaultSyncWait is how long templates wait for the first registration.
const DefaultSyncWait = 10 * time.Second

// Config configures a Daemon.
type Config struct {
	// Registrar registers the runtime's containers (ignored without a
	// runtime). Its Logger defaults to the daemon's.
	Registrar registrar.Config
	// DefaultWait and MinReloadInterval apply to templates that set none.
	DefaultWait       watcher.Wait
	MinReloadInterval time.Duration
	// Resync is how often every watched prefix is re-listed (0: the
	// watcher's default).
	Resync time.Duration
	// StallAfter is how long the store may fail, or a watch stay unsynced
	// or failing, before Health reports the daemon unhealthy (default
	// DefaultStallAfter).
	StallAfter time.Duration
	// SyncWait bounds how long the templates wait for the registrar's
	// first reconcile before they render anyway (default
	// DefaultSyncWait). Waiting keeps a restarted daemon from rendering the
	// records its predecessor left before they are taken over or removed.
	SyncWait time.Duration
	// Env is the environment templates see (nil: the process's).
	Env map[string]string
	// Commander runs check and reload commands (default: render's).
	Commander render.Commander
	Logger    *slog.Logger
}

// Daemon runs the registrar and the template runner over one store.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	st      *measuredStore
	rt      runtime.Runtime // nil: no runtime, templates only
	reg     *registrar.Registrar
	runner  *runner.Runner
	m       *metrics
	started time.Time

	mu         sync.Mutex
	running    bool
	lastStatus time.Time // the runner last answered Status
}

// New returns a daemon over st and rt; rt may be nil (no containers to
// register: berth up as a sidecar).
func New(st store.Store, rt runtime.Runtime, cfg Config) (*Daemon, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = DefaultStallAfter
	}
	if cfg.SyncWait <= 0 {
		cfg.SyncWait = DefaultSyncWait
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, m: newMetrics()}
	d.st = newMeasuredStore(st, d.m)
	if rt != nil {
		d.rt = countEvents{Runtime: rt, m: d.m}
		rc := cfg.Registrar
		if rc.Logger == nil {
			rc.Logger = cfg.Logger
		}
		reg, err := registrar.New(d.st, d.rt, rc)
		if err != nil {
			return nil, err
		}
		d.reg = reg
		d.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "berth", Name: "containers_registered",
			Help: "Containers of this host with records in the store (draining ones included).",
		}, func() float64 { n, _ := reg.Counts(); return float64(n) }))
		d.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "berth", Name: "containers_draining",
			Help: "Containers of this host whose records are draining.",
		}, func() float64 { _, n := reg.Counts(); return float64(n) }))
	}
	ropts := []render.Option{render.WithLogger(cfg.Logger)}
	if cfg.Commander != nil {
		ropts = append(ropts, render.WithCommander(cfg.Commander))
	}
	var mopts []watcher.MirrorOption
	if cfg.Resync > 0 {
		mopts = append(mopts, watcher.WithResync(cfg.Resync))
	}
	d.runner = runner.New(d.st, render.New(ropts...),
		runner.WithLogger(cfg.Logger),
		runner.WithDefaultWait(cfg.DefaultWait),
		runner.WithMinReloadInterval(cfg.MinReloadInterval),
		runner.WithMirrorOptions(mopts...),
		runner.WithObserver(d.m.observeRender),
		runner.WithEnv(cfg.Env),
	)
	return d, nil
}

// Run registers containers and keeps the templates rendered until ctx
// ends. An error means the daemon could not start or its runtime's event
// stream failed for good; template and store errors are retried and
// reported by Health and the metrics instead.
func (d *Daemon) Run(ctx context.Context, templates []config.Template) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("daemon: Run called twice")
	}
	d.running, d.started = true, time.Now()
	d.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { d.probeStore(ctx) })
	if d.reg != nil {
		wg.Go(func() {
			if err := d.reg.Run(ctx); err != nil {
				errc <- err
			}
		})
		select {
		case <-d.reg.Synced():
		case <-time.After(d.cfg.SyncWait):
			d.log.Warn("containers not registered yet; rendering the templates anyway", "waited", d.cfg.SyncWait)
		case err := <-errc:
			cancel()
			wg.Wait()
			return err
		case <-ctx.Done():
		}
	}
	wg.Go(func() {
		if err := d.runner.Run(ctx, templates); err != nil {
			errc <- fmt.Errorf("templates: %w", err)
		}
	})
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	return err
}

// Containers reports how many containers have records in the store and
// how many of them are draining (0, 0 without a runtime).
func (d *Daemon) Containers() (registered, draining int) {
	if d.reg == nil {
		return 0, 0
	}
	return d.reg.Counts()
}

// Reload replaces the templates (SIGHUP); see runner.Runner.Update.
func (d *Daemon) Reload(ctx context.Context, templates []config.Template) error {
	return d.runner.Update(ctx, templates)
}

// probeStore reads a key every so often (the prefix itself: present or
// not, the store has to answer), so that an unreachable store shows in
// Health even when nothing else is asking.
func (d *Daemon) probeStore(ctx context.Context) {
	key := d.prefix()
	t := time.NewTicker(max(d.cfg.StallAfter/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, d.cfg.StallAfter/2)
			_, _ = d.st.Get(pctx, key)
			cancel()
		case <-ctx.Done():
			return
		}
	}
}

func (d *Daemon) prefix() string {
	if d.cfg.Registrar.Prefix != "" {
		return d.cfg.Registrar.Prefix
	}
	return records.DefaultPrefix
}

// Check is one health check's finding.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// HealthReport is what /healthz answers.
type HealthReport struct {
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Health checks that the store answers and that every watch is synced and
// not failing, each within StallAfter.
func (d *Daemon) Health(ctx context.Context) HealthReport {
	now := time.Now()
	d.mu.Lock()
	started := d.started
	d.mu.Unlock()
	var rep HealthReport
	add := func(c Check) { rep.Checks = append(rep.Checks, c) }

	reads, writes := d.st.health()
	storeCheck := Check{Name: "store", OK: true}
	for _, f := range []struct {
		what string
		failures
	}{{"reads", reads}, {"writes", writes}} {
		if !f.since.IsZero() && now.Sub(f.since) > d.cfg.StallAfter {
			storeCheck.OK = false
			storeCheck.Detail = strings.TrimPrefix(storeCheck.Detail+"; ", "; ") +
				fmt.Sprintf("%s failing for %s: %v", f.what, now.Sub(f.since).Round(time.Second), f.err)
		}
	}
	add(storeCheck)
	// The runner answers between render cycles; one that takes long (a
	// slow check or reload) is not a failure, a runner that stays silent
	// past StallAfter is.
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	sts, serr := d.runner.Status(sctx)
	cancel()
	d.mu.Lock()
	if serr == nil {
		d.lastStatus = now
	}
	lastStatus := d.lastStatus
	d.mu.Unlock()
	if started.IsZero() {
		add(Check{Name: "templates", Detail: "not running"})
	} else if serr != nil {
		if lastStatus.Before(started) {
			lastStatus = started
		}
		silent := now.Sub(lastStatus)
		add(Check{Name: "templates", OK: silent <= d.cfg.StallAfter, Detail: fmt.Sprintf("busy for %s (a render cycle is running)", silent.Round(time.Second))})
	} else {
		seen := map[string]bool{}
		for _, ts := range sts {
			for _, h := range ts.Mirrors {
				if seen[h.Prefix] {
					continue
				}
				seen[h.Prefix] = true
				c := Check{Name: "watch " + h.Prefix, OK: true}
				switch {
				case !h.FailingSince.IsZero() && now.Sub(h.FailingSince) > d.cfg.StallAfter:
					c.OK, c.Detail = false, fmt.Sprintf("failing for %s: %v", now.Sub(h.FailingSince).Round(time.Second), h.LastError)
				case !h.Synced && now.Sub(started) > d.cfg.StallAfter:
					c.OK, c.Detail = false, fmt.Sprintf("not synced %s after start", now.Sub(started).Round(time.Second))
				}
				add(c)
			}
		}
	}
	rep.OK = true
	for _, c := range rep.Checks {
		rep.OK = rep.OK && c.OK
	}
	return rep
}

// Handler serves /metrics (Prometheus) and /healthz (200 or 503 with a
// JSON HealthReport).
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		rep := d.Health(ctx)
		w.Header().Set("Content-Type", "application/json")
		if !rep.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
	return mux
}
