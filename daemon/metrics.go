package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/status"
	"github.com/berthd/berth/store"
)

// metrics are the daemon's Prometheus series, on a registry of its own.
type metrics struct {
	reg *prometheus.Registry

	events        *prometheus.CounterVec   // runtime events by type
	renders       *prometheus.CounterVec   // render attempts by template and outcome
	renderTime    *prometheus.HistogramVec // render cycle duration by template
	reloadFails   *prometheus.CounterVec   // failed check or reload commands by template and command
	storeLatency  *prometheus.HistogramVec // store requests by operation
	storeErrors   *prometheus.CounterVec   // failed store requests by operation
	watchLag      prometheus.Histogram     // from this daemon's write to its watch delivering it
	lastRenderRev *prometheus.GaugeVec     // store revision of each template's last good render
	holds         prometheus.Counter       // renders held back while lost records were written again
	quarantined   *prometheus.GaugeVec     // records quarantined out of each template
	checks        *prometheus.CounterVec   // check commands run by each template's quarantine searches
	reloadCost    *prometheus.HistogramVec // check+reload time of each reload, which paces the next
	pacing        *prometheus.HistogramVec // how long reload pacing held renders back
	genWait       *prometheus.HistogramVec // reloads' wait for the previous proxy generation to exit
}

func newMetrics() *metrics {
	m := &metrics{
		reg:          prometheus.NewRegistry(),
		events:       counter("runtime_events_total", "Container lifecycle events received from the runtime, by type.", "type"),
		renders:      counter("renders_total", "Render attempts by template and outcome (changed, unchanged, refused, failed).", "template", "outcome"),
		renderTime:   histogram("render_duration_seconds", "Duration of the render cycles (execute, compare, write, check, reload) a template was part of.", 0.0005, "template"),
		reloadFails:  counter("command_failures_total", "Failed check and reload commands, by template and command (check, reload).", "template", "command"),
		storeLatency: histogram("store_request_duration_seconds", "Latency of store requests by operation (get, list, put, delete, txn).", 0.0002, "op"),
		storeErrors:  counter("store_request_errors_total", "Failed store requests by operation (not found is not a failure).", "op"),
		watchLag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "berth", Name: "watch_lag_seconds",
			Help:    "Time from a write by this daemon to its store watch delivering the change.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16)}),
		lastRenderRev: gauge("template_revision", "Store revision of each template's last successful render.", "template"),
		quarantined:   gauge("quarantined_records", "Store records left out of a template because their values make its check (or execution) fail; they return when they change and pass.", "template"),
		checks:        counter("quarantine_checks_total", "Check commands run to find the records that make a template fail.", "template"),
		reloadCost:    histogram("reload_cost_seconds", "Time the check and reload commands of each reload took; the next reload of the template waits twice this (at most 1 minute).", 0.001, "template"),
		pacing:        histogram("reload_pacing_seconds", "How long reload pacing held back a render that could reload, by template.", 0.001, "template"),
		genWait:       histogram("reload_generation_wait_seconds", "How long a reload waited for the previous proxy generation to exit (generation_check).", 0.001, "template"),
		holds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "berth", Name: "render_holds_total",
			Help: "Times a watch held back the renders while this host's records, removed by the store (a lost lease), were written again."}),
	}
	m.reg.MustRegister(m.reloadCost, m.pacing, m.genWait, m.holds, m.quarantined, m.checks, m.events, m.renders, m.renderTime, m.reloadFails, m.storeLatency, m.storeErrors, m.watchLag, m.lastRenderRev,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// counter, histogram and gauge declare berth_ series by labels. A
// histogram's buckets double 16 times from the first.
func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "berth", Name: name, Help: help}, labels)
}

func histogram(name, help string, first float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "berth", Name: name, Help: help,
		Buckets: prometheus.ExponentialBuckets(first, 2, 16)}, labels)
}

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "berth", Name: name, Help: help}, labels)
}

// observeRender records one render attempt.
func (m *metrics) observeRender(o runner.Observation) {
	m.renders.WithLabelValues(o.Template, status.Outcome(o.Result)).Inc()
	m.renderTime.WithLabelValues(o.Template).Observe(o.Took.Seconds())
	var ce *render.CommandError
	if errors.As(o.Result.Err, &ce) {
		m.reloadFails.WithLabelValues(o.Template, ce.What).Inc()
	}
	if o.Result.Err == nil {
		m.lastRenderRev.WithLabelValues(o.Template).Set(float64(o.Revision))
	}
	m.quarantined.WithLabelValues(o.Template).Set(float64(len(o.Quarantined)))
	if o.Checks > 0 {
		m.checks.WithLabelValues(o.Template).Add(float64(o.Checks))
	}
	if o.Result.Reloaded {
		m.reloadCost.WithLabelValues(o.Template).Observe(o.Result.Cost.Seconds())
		m.genWait.WithLabelValues(o.Template).Observe(o.Result.GenerationWait.Seconds())
	}
	if o.Paced > 0 {
		m.pacing.WithLabelValues(o.Template).Observe(o.Paced.Seconds())
	}
}

// countEvents wraps a runtime so that its events are counted on their way
// to the registrar.
type countEvents struct {
	runtime.Runtime
	m *metrics
}

func (c countEvents) Events(ctx context.Context) (<-chan runtime.Event, <-chan error) {
	in, errc := c.Runtime.Events(ctx)
	out := make(chan runtime.Event)
	go func() {
		defer close(out)
		for ev := range in {
			c.m.events.WithLabelValues(string(ev.Type)).Inc()
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errc
}

// lagWindow bounds the revisions remembered for watch-lag measurement.
const lagWindow = 4096

// measuredStore times every request to a store, remembers when each of its
// own writes committed, and times how long the watches took to deliver
// them. It also tracks whether the store is failing, for the health check.
type measuredStore struct {
	store.Store
	m *metrics

	mu      sync.Mutex
	written map[store.Revision]time.Time // revision → commit time of our writes
	order   []store.Revision             // ring of the keys of written
	next    int
	// Reads and writes are tracked apart: a store that answers reads but
	// refuses writes (etcd out of space) is failing too.
	reads, writes requests
	nextReq       uint64
}

// requests is the state of one kind of request (reads or writes).
type requests struct {
	lastOK   time.Time            // when the last success came back
	badStart time.Time            // start of the first failed request since lastOK; zero: none
	err      error                // the last failure
	inflight map[uint64]time.Time // start of each request still waiting for its answer
}

// troubleSince is when this kind of request started to fail, as far as
// can be told at now (zero: it does not fail). A request fails when it
// returns an error or has had no answer for slow; the trouble is taken to
// have started when the store last answered, but no earlier than slow
// before the first failing request started (writes can be rare; the
// store's probe reads every slow).
func (r *requests) troubleSince(now time.Time, slow time.Duration) (time.Time, error) {
	start, err := r.badStart, r.err
	for _, s := range r.inflight {
		if now.Sub(s) > slow && (start.IsZero() || s.Before(start)) {
			start, err = s, fmt.Errorf("no answer for %s", now.Sub(s).Round(time.Second))
		}
	}
	if start.IsZero() {
		return time.Time{}, nil
	}
	since := start.Add(-slow)
	if r.lastOK.After(since) {
		since = r.lastOK
	}
	return since, err
}

func newMeasuredStore(st store.Store, m *metrics) *measuredStore {
	return &measuredStore{Store: st, m: m, written: make(map[store.Revision]time.Time, lagWindow), order: make([]store.Revision, lagWindow),
		reads: requests{inflight: map[uint64]time.Time{}}, writes: requests{inflight: map[uint64]time.Time{}}}
}

func (s *measuredStore) kind(op string) *requests {
	if op == "get" || op == "list" {
		return &s.reads
	}
	return &s.writes
}

// begin records the start of one request; pass what it returns to done.
func (s *measuredStore) begin(op string) (uint64, time.Time) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextReq++
	s.kind(op).inflight[s.nextReq] = now
	return s.nextReq, now
}

// done records the outcome of request id, which started at start.
func (s *measuredStore) done(op string, id uint64, start time.Time, err error) {
	now := time.Now()
	s.m.storeLatency.WithLabelValues(op).Observe(now.Sub(start).Seconds())
	failed := err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, context.Canceled)
	if failed {
		s.m.storeErrors.WithLabelValues(op).Inc()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.kind(op)
	delete(r.inflight, id)
	switch {
	case !failed:
		r.lastOK, r.badStart, r.err = now, time.Time{}, nil
	case r.badStart.IsZero() || start.Before(r.badStart):
		r.badStart, r.err = start, err
	default:
		r.err = err
	}
}

// wrote remembers that this daemon's write committed at rev.
func (s *measuredStore) wrote(rev store.Revision) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.written, s.order[s.next])
	s.order[s.next] = rev
	s.next = (s.next + 1) % lagWindow
	s.written[rev] = now
}

// trouble is since when one kind of request has been failing.
type trouble struct {
	what  string // "reads" or "writes"
	since time.Time
	err   error
}

// health reports since when reads and writes have been failing, or
// stalling for longer than slow (zero: healthy).
func (s *measuredStore) health(slow time.Duration) []trouble {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []trouble
	for _, k := range []struct {
		what string
		r    *requests
	}{{"reads", &s.reads}, {"writes", &s.writes}} {
		if since, err := k.r.troubleSince(now, slow); !since.IsZero() {
			out = append(out, trouble{k.what, since, err})
		}
	}
	return out
}

func (s *measuredStore) Get(ctx context.Context, key string) (store.KV, error) {
	id, start := s.begin("get")
	kv, err := s.Store.Get(ctx, key)
	s.done("get", id, start, err)
	return kv, err
}

func (s *measuredStore) List(ctx context.Context, prefix string) ([]store.KV, store.Revision, error) {
	id, start := s.begin("list")
	kvs, rev, err := s.Store.List(ctx, prefix)
	s.done("list", id, start, err)
	return kvs, rev, err
}

func (s *measuredStore) Put(ctx context.Context, key string, val []byte, opts ...store.PutOption) (store.Revision, error) {
	id, start := s.begin("put")
	rev, err := s.Store.Put(ctx, key, val, opts...)
	s.done("put", id, start, err)
	if err == nil {
		s.wrote(rev)
	}
	return rev, err
}

func (s *measuredStore) Delete(ctx context.Context, key string, opts ...store.DeleteOption) (store.Revision, error) {
	id, start := s.begin("delete")
	rev, err := s.Store.Delete(ctx, key, opts...)
	s.done("delete", id, start, err)
	if err == nil {
		s.wrote(rev)
	}
	return rev, err
}

func (s *measuredStore) Txn(ctx context.Context, ops ...store.Op) (store.Revision, error) {
	id, start := s.begin("txn")
	rev, err := s.Store.Txn(ctx, ops...)
	s.done("txn", id, start, err)
	if err == nil {
		s.wrote(rev)
	}
	return rev, err
}

// Watch passes the watch through, observing the lag of every revision
// this daemon wrote.
func (s *measuredStore) Watch(ctx context.Context, prefix string, after store.Revision) <-chan store.WatchResponse {
	in := s.Store.Watch(ctx, prefix, after)
	out := make(chan store.WatchResponse)
	go func() {
		defer close(out)
		for resp := range in {
			s.observeLag(resp)
			select {
			case out <- resp:
			case <-ctx.Done():
				// Drain so that the backend's goroutine can finish.
				for range in {
				}
				return
			}
		}
	}()
	return out
}

func (s *measuredStore) observeLag(resp store.WatchResponse) {
	now := time.Now()
	var last store.Revision
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range resp.Events {
		rev := ev.KV.ModRevision
		if rev == last {
			continue // one transaction, many keys: one observation
		}
		last = rev
		if t, ok := s.written[rev]; ok {
			s.m.watchLag.Observe(now.Sub(t).Seconds())
		}
	}
}
