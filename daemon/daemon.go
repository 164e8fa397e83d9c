package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berthd/berth/acme"
	"github.com/berthd/berth/catalog"
	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dedup"
	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// DefaultStallAfter is how long a failing or silent store, a stalled watch
// or a lost registration is tolerated before /healthz fails, and a
// template that fails to apply before it reports degraded.
const DefaultStallAfter = 30 * time.Second

// DefaultSyncWait is how long templates wait for the first registration.
const DefaultSyncWait = 10 * time.Second

// Config configures a Daemon.
type Config struct {
	// Registrar registers the runtime's containers (ignored without a
	// runtime). Its Logger defaults to the daemon's.
	Registrar registrar.Config
	// Catalog is the Consul agent native templates' service, services,
	// node and nodes read (package catalog); none unless Enabled.
	Catalog config.Catalog
	// Registry is where the containers are registered: the store's
	// records, the Consul catalog, or both (registry.go).
	Registry config.Registry
	// DefaultWait and MinReloadInterval apply to templates that set none.
	DefaultWait       watcher.Wait
	MinReloadInterval time.Duration
	// Resync is how often every watched prefix is re-listed (0: the
	// watcher's default).
	Resync time.Duration
	// StallAfter is how long the store may fail or leave requests
	// unanswered, a watch stay unsynced or failing, or this host's records
	// stay lost, before Health reports the daemon unhealthy; and how long
	// a template may fail to apply before it reports degraded (default
	// DefaultStallAfter).
	StallAfter time.Duration
	// RegisterHold bounds how long renders are held back while this host's
	// records, removed by the store (a lost lease), are written again
	// (default DefaultRegisterHold).
	RegisterHold time.Duration
	// SyncWait bounds how long the templates wait for the registrar's
	// first reconcile before they render anyway (default
	// DefaultSyncWait). Waiting keeps a restarted daemon from rendering the
	// records its predecessor left before they are taken over or removed.
	SyncWait time.Duration
	// Env is the environment templates see (nil: the process's).
	Env map[string]string
	// CertDir is the certificate directory every template reads as
	// .Certs (certs.go; "": none).
	CertDir string
	// ACME, if set, gets certificates for the records that ask for them
	// (acme.go); its HTTP-01 responder listens on ACMEChallengeListen
	// (default DefaultACMEChallengeListen), named to the templates as
	// BERTH_ACME_CHALLENGE.
	ACME                *acme.Config
	ACMEChallengeListen string
	// DedupListener, if set, is where this daemon's dedup leaders serve
	// their outputs to the followers peer to peer, who reach it at
	// DedupAdvertise (host:port; package dedup, WithPeers). Without it
	// the followers take the outputs from the store.
	DedupListener  net.Listener
	DedupAdvertise string
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
	catalog func(context.Context) error // the catalog sink's Run; nil: none
	catReg  *catalogRegistry            // the catalog sink, for Health and the status page; nil: none (catalogreg.go)
	runner  *runner.Runner
	dedup   *dedup.Deduper // the dedup templates' sources, and the server of their outputs
	m       *metrics
	started time.Time
	status  *statusPage  // the status page's state (status.go)
	certs   *certs.Store // the certificate directory's; nil without one (certs.go)
	acme    *acmeSide    // nil without [acme] (acme.go)

	hold    *holdStore      // the runner's view of the store; nil without a registrar
	deploys *deploy.Service // nil without a runtime
	// stopKeeping ends the deploys' upkeep and waits for it (under mu;
	// nil until Run starts it).
	stopKeeping func()

	mu         sync.Mutex
	running    bool
	lastStatus time.Time            // the runner last answered Status
	failing    map[string]failure   // template → its current run of failed attempts
	seenFailed map[string]time.Time // template → when Health first saw it failing (no attempt observed: it does not parse)
	templates  []config.Template    // the runner's (Run, then each Reload that took)
}

// failure is a template's current run of failed render attempts.
type failure struct {
	since time.Time
	err   error
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
	if cfg.RegisterHold <= 0 {
		cfg.RegisterHold = DefaultRegisterHold
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, m: newMetrics(), status: newStatusPage(), failing: map[string]failure{}, seenFailed: map[string]time.Time{}}
	d.st = newMeasuredStore(st, d.m)
	var runnerStore store.Store = d.st
	if rt != nil {
		d.rt = d.withDeploys(rt, countEvents{Runtime: rt, m: d.m})
		rc := cfg.Registrar
		if rc.Logger == nil {
			rc.Logger = cfg.Logger
		}
		var err error
		if d.catalog, err = d.withRegistry(cfg.Registry, &rc, cfg.Logger); err != nil {
			return nil, err
		}
		reg, err := registrar.New(d.st, d.rt, rc)
		if err != nil {
			return nil, err
		}
		d.reg = reg
		d.hold = newHoldStore(d.st, reg, cfg.RegisterHold, d.m.holds, cfg.Logger)
		runnerStore = d.hold
		d.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "berth", Name: "containers_registered",
			Help: "Containers of this host with records in the store or services in a catalog (draining ones included).",
		}, func() float64 { n, _ := reg.Counts(); return float64(n) }))
		d.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "berth", Name: "containers_draining",
			Help: "Containers of this host whose records are draining.",
		}, func() float64 { _, n := reg.Counts(); return float64(n) }))
		d.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "berth", Name: "registrar_invalid_fields",
			Help: "Metadata values of this host's registered containers left out of their records as invalid (each is logged and listed in the record's invalid field).",
		}, func() float64 { return float64(reg.InvalidFields()) }))
	}
	ropts := []render.Option{render.WithLogger(cfg.Logger)}
	if cfg.Commander != nil {
		ropts = append(ropts, render.WithCommander(cfg.Commander))
	}
	env := cfg.Env
	if cfg.ACME != nil {
		var err error
		if env, err = d.newACME(cfg); err != nil {
			return nil, err
		}
	}
	var mopts []watcher.MirrorOption
	if cfg.Resync > 0 {
		mopts = append(mopts, watcher.WithResync(cfg.Resync))
	}
	var extra []runner.Option
	if cfg.CertDir != "" {
		d.certs = d.openCerts(cfg.CertDir)
		extra = append(extra, runner.WithCerts(d.certs))
	}
	var catKeys func(config.Template) []string
	var catOpen func(string) runner.Source
	if cfg.Catalog.Enabled() {
		// The catalog's queries live as long as the templates' views that
		// read them (the runner's sources).
		cat, err := catalog.FromConfig(context.Background(), cfg.Catalog, cfg.Logger)
		if err != nil {
			return nil, err
		}
		catKeys, catOpen = catalog.Keys, cat.Open
	}
	d.runner = runner.New(runnerStore, render.New(ropts...), append([]runner.Option{
		runner.WithLogger(cfg.Logger),
		runner.WithDefaultWait(cfg.DefaultWait),
		runner.WithMinReloadInterval(cfg.MinReloadInterval),
		runner.WithMirrorOptions(mopts...),
		runner.WithObserver(d.observe),
		runner.WithEnv(env),
		d.dedupSources(runnerStore, mopts, catKeys, catOpen),
	}, extra...)...)
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
	d.setTemplates(templates)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { d.probeStore(ctx) })
	if d.catalog != nil {
		wg.Go(func() { _ = d.catalog(ctx) })
	}
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
		if err := d.dedup.Run(ctx); err != nil {
			d.log.Error("dedup: followers take the outputs from the store", "err", err)
		}
	})
	d.keepDeploys(ctx, &wg)
	d.runACME(ctx, &wg)
	d.startStatus(ctx, &wg, templates)
	if d.certs != nil {
		wg.Go(func() { d.followHAProxyCerts(ctx) })
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

// observe records one render attempt: metrics, and the template's run of
// failures for Health.
func (d *Daemon) observe(o runner.Observation) {
	d.m.observeRender(o)
	d.status.renders.Observe(o)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch f, ok := d.failing[o.Template]; {
	case o.Result.Err == nil:
		delete(d.failing, o.Template)
	case ok:
		f.err = o.Result.Err
		d.failing[o.Template] = f
	default:
		d.failing[o.Template] = failure{since: time.Now(), err: o.Result.Err}
	}
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
	d.status.renders.Track(templates)
	if err := d.runner.Update(ctx, templates); err != nil {
		return err
	}
	d.setTemplates(templates)
	return nil
}

// probeStore reads a key every so often, so that an unreachable store
// shows in Health even when nothing else is asking: this host's record
// when the registrar owns one (gone while still owned: the store dropped
// it with a lost lease, and the registrar writes everything again), else
// the prefix itself (present or not, the store has to answer).
func (d *Daemon) probeStore(ctx context.Context) {
	t := time.NewTicker(d.probeEvery())
	defer t.Stop()
	for {
		select {
		case <-t.C:
			key, owned := d.prefix(), false
			if d.reg != nil {
				for k := range d.reg.OwnedUnder(records.HostsPrefix(d.prefix())) {
					key, owned = k, true // one: this host's
				}
			}
			pctx, cancel := context.WithTimeout(ctx, d.cfg.StallAfter/2)
			_, err := d.st.Get(pctx, key)
			cancel()
			if owned && errors.Is(err, store.ErrNotFound) {
				if _, still := d.reg.Owns(key); still {
					d.log.Warn("this host's record is gone from the store (lease lost?); registering again", "key", key)
					d.reg.Reregister()
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// probeEvery is how often the store is probed, and how long a request may
// go unanswered before it counts as failing.
func (d *Daemon) probeEvery() time.Duration { return max(d.cfg.StallAfter/4, 100*time.Millisecond) }

func (d *Daemon) prefix() string {
	if d.cfg.Registrar.Prefix != "" {
		return d.cfg.Registrar.Prefix
	}
	return records.DefaultPrefix
}

// Check is one health check's finding.
type Check struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Degraded bool   `json:"degraded,omitempty"` // working, but not everything is applied
	Detail   string `json:"detail,omitempty"`
}

// Health statuses of a HealthReport.
const (
	StatusOK        = "ok"
	StatusDegraded  = "degraded"  // every check OK, some degraded: /healthz answers 200
	StatusUnhealthy = "unhealthy" // some check not OK: /healthz answers 503
)

// HealthReport is what /healthz answers.
type HealthReport struct {
	Status string  `json:"status"`
	OK     bool    `json:"ok"` // the status is not unhealthy
	Checks []Check `json:"checks"`
}

// Health checks, each within StallAfter, that the store answers reads and
// writes, that this host's records are in the store, that every watch is
// synced and not failing (else unhealthy), and that every template
// applies (else degraded).
func (d *Daemon) Health(ctx context.Context) HealthReport {
	now := time.Now()
	d.mu.Lock()
	started := d.started
	d.mu.Unlock()
	var rep HealthReport
	add := func(c Check) { rep.Checks = append(rep.Checks, c) }

	storeCheck := Check{Name: "store", OK: true}
	for _, tr := range d.st.health(d.probeEvery()) {
		if now.Sub(tr.since) > d.cfg.StallAfter {
			storeCheck.OK = false
			storeCheck.Detail = strings.TrimPrefix(storeCheck.Detail+"; ", "; ") +
				fmt.Sprintf("%s failing for %s: %v", tr.what, now.Sub(tr.since).Round(time.Second), tr.err)
		}
	}
	add(storeCheck)
	if d.reg != nil {
		c := Check{Name: "registration", OK: true}
		if since := d.reg.Reregistering(); !since.IsZero() {
			c.OK = now.Sub(since) <= d.cfg.StallAfter
			c.Detail = fmt.Sprintf("this host's records, removed by the store (lease lost), are being written again for %s", now.Sub(since).Round(time.Second))
		}
		if h := d.hold.held(); !h.IsZero() {
			c.Detail = strings.TrimPrefix(c.Detail+"; ", "; ") + fmt.Sprintf("renders held back for %s until they are", now.Sub(h).Round(time.Second))
		}
		add(c)
	}
	if c, ok := d.catalogCheck(ctx, now); ok {
		add(c)
	}
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
		for _, ts := range sts {
			add(d.templateCheck(ts, now))
		}
	}
	rep.OK, rep.Status = true, StatusOK
	for _, c := range rep.Checks {
		rep.OK = rep.OK && c.OK
		if c.Degraded && rep.Status == StatusOK {
			rep.Status = StatusDegraded
		}
	}
	if !rep.OK {
		rep.Status = StatusUnhealthy
	}
	return rep
}

// templateCheck reports one template: degraded once it has failed to apply
// (render, check, swap, reload, or a guard refused the data) for longer
// than StallAfter; the last good output keeps serving meanwhile.
func (d *Daemon) templateCheck(ts runner.TemplateStatus, now time.Time) Check {
	c := Check{Name: "template " + ts.Name, OK: true}
	d.mu.Lock()
	f, attempted := d.failing[ts.Name]
	if ts.LastError == nil {
		delete(d.seenFailed, ts.Name)
	} else if !attempted {
		// No attempt failed: it does not parse, so none was made.
		if _, ok := d.seenFailed[ts.Name]; !ok {
			d.seenFailed[ts.Name] = now
		}
		f = failure{since: d.seenFailed[ts.Name], err: ts.LastError}
	}
	d.mu.Unlock()
	if !f.since.IsZero() && now.Sub(f.since) > d.cfg.StallAfter {
		c.Degraded = true
		c.Detail = fmt.Sprintf("failing to apply for %s (the last good output stays): %v", now.Sub(f.since).Round(time.Second), f.err)
	}
	// Records quarantined out of the template (their values fail its check)
	// make it degraded at once: everyone else's changes apply, theirs wait.
	if len(ts.Quarantined) > 0 {
		reason, _ := runner.TemplateStatus{Quarantined: ts.Quarantined}.Degraded(now, d.cfg.StallAfter)
		c.Degraded = true
		c.Detail = strings.TrimPrefix(c.Detail+"; "+reason, "; ")
	}
	return c
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
		if !rep.OK { // degraded answers 200: the proxy serves, not everything is applied
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
	return mux
}
