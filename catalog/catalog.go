package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"

	"github.com/berthd/berth/internal/backoff"
	"github.com/hashicorp/consul/api"
)

// Defaults of a Catalog's blocking queries.
const (
	DefaultWait       = 5 * time.Minute // Consul's own maximum wait (it adds up to wait/16 of jitter)
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = time.Minute

	minQueryInterval = 100 * time.Millisecond
)

// Catalog is the daemon's one reader of the Consul catalog: every
// distinct dependency (Query.String and its stale bound) is one
// blocking-query loop, shared by every View that reads it and stopped
// when the last one lets go. Safe for concurrent use.
type Catalog struct {
	ctx    context.Context
	client *api.Client
	log    *slog.Logger
	wait   time.Duration
	minBO  time.Duration
	maxBO  time.Duration

	mu      sync.Mutex
	watches map[watchKey]*watch
}

// Option configures a Catalog.
type Option func(*Catalog)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *Catalog) { c.log = l } }

// WithWait sets how long one blocking query may wait for a change (the
// wait parameter; 0 keeps DefaultWait).
func WithWait(d time.Duration) Option {
	return func(c *Catalog) {
		if d > 0 {
			c.wait = d
		}
	}
}

// WithBackoff sets the bounds of the jittered retry backoff after a failed
// query.
func WithBackoff(min, max time.Duration) Option {
	return func(c *Catalog) { c.minBO, c.maxBO = min, max }
}

// New returns a catalog reading through client. A query stops when the
// last view reading it lets go (its Run ends) or when ctx ends.
func New(ctx context.Context, client *api.Client, opts ...Option) *Catalog {
	c := &Catalog{
		ctx: ctx, client: client, log: slog.Default(),
		wait: DefaultWait, minBO: DefaultMinBackoff, maxBO: DefaultMaxBackoff,
		watches: map[watchKey]*watch{},
	}
	for _, f := range opts {
		f(c)
	}
	return c
}

// NewClient returns a client of the Consul agent at address
// (http[s]://host:port or host:port) with token; empty ones take
// Consul's environment (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...).
func NewClient(address, token string) (*api.Client, error) { return newClient(address, token, "") }

// newClient is NewClient whose queries without @dc go to datacenter dc
// ("": the agent's).
func newClient(address, token, dc string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if dc != "" {
		cfg.Datacenter = dc
	}
	if address != "" {
		cfg.Address = address
	}
	if token != "" {
		cfg.Token = token
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul catalog at %s: %w", cfg.Address, err)
	}
	return c, nil
}

// Watching returns the canonical strings of the dependencies being
// watched, one per blocking-query loop.
func (c *Catalog) Watching() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.watches))
	for k := range c.watches {
		out = append(out, k.String())
	}
	return out
}

// watchKey identifies one blocking-query loop.
type watchKey struct {
	dep   string
	stale time.Duration
}

func (k watchKey) String() string {
	if k.stale > 0 {
		return k.dep + " (max_stale " + k.stale.String() + ")"
	}
	return k.dep
}

// watch is one dependency's blocking-query loop and its last answer.
// Everything but q, key and cancel is guarded by Catalog.mu.
type watch struct {
	q      Query
	key    watchKey
	cancel context.CancelFunc

	views map[*View]bool
	data  any
	ok    bool // data is an answer (the first arrived)

	lastErr      error
	failingSince time.Time
	// denied says Consul answered without the results the token may not
	// read (consul-template renders such answers too).
	denied error
}

// acquire returns the watch of q for v, starting its loop if it is new.
// The caller holds c.mu.
func (c *Catalog) acquire(q Query, stale time.Duration, v *View) *watch {
	k := watchKey{q.String(), stale}
	w, ok := c.watches[k]
	if !ok {
		ctx, cancel := context.WithCancel(c.ctx)
		w = &watch{q: q, key: k, cancel: cancel, views: map[*View]bool{}}
		c.watches[k] = w
		go c.run(ctx, w)
	}
	w.views[v] = true
	return w
}

// release drops v's use of w, stopping w's loop after the last. The caller
// holds c.mu.
func (c *Catalog) release(w *watch, v *View) {
	delete(w.views, v)
	if len(w.views) == 0 {
		w.cancel()
		delete(c.watches, w.key)
	}
}

// run is one dependency's loop, as consul-template's view: a blocking
// query from the last index; an answer with the same index (the wait
// timed out) or the same content changes nothing; an index that went
// backwards is reset (Consul's documented rule), and so is the index
// after a failed query; an index of 0 is taken as 1; a stale answer
// older than the bound is asked again of the leader; errors are retried
// with a jittered backoff while the last answer stays.
func (c *Catalog) run(ctx context.Context, w *watch) {
	bo := backoff.New(c.minBO, c.maxBO)
	var index uint64
	allowStale := w.key.stale > 0
	for first := true; ; first = false {
		start := time.Now()
		opts := &api.QueryOptions{WaitIndex: index, WaitTime: c.wait, AllowStale: allowStale}
		data, m, err := fetch(ctx, c.client, w.q, opts)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.failed(w, err)
			// The agent may come back with its indexes started over (a
			// restart in dev mode, a restore, another agent behind the
			// address): a query from the old index would block until the
			// new one passes it. Read afresh; an unchanged answer renders
			// nothing.
			index = 0
			d := bo.Next()
			if !backoff.Sleep(ctx, d/2+rand.N(d/2+1)) {
				return
			}
			continue
		}
		bo.Reset()
		if allowStale && time.Duration(m.lastContact) > w.key.stale {
			allowStale = false // too stale: ask the leader
			continue
		}
		allowStale = w.key.stale > 0
		// At most one query per minQueryInterval (consul-template's rate
		// limit): a catalog that changes without pause, or a Consul that
		// answers at once, does not make a busy loop.
		if rest := minQueryInterval - time.Since(start); rest > 0 && !first {
			if !backoff.Sleep(ctx, rest+rand.N(20*time.Millisecond)) {
				return
			}
		}
		switch {
		case m.index == 0:
			m.index = 1
		case m.index < index:
			index = 0 // the index went backwards (a snapshot restore, a new cluster): start over
			continue
		}
		same := m.index == index
		index = m.index
		c.answered(w, data, same, m.filtered)
	}
}

// failed records a failed query; the last answer stays.
func (c *Catalog) failed(w *watch, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.lastErr == nil {
		w.failingSince = time.Now()
		c.log.Warn("catalog query failed; keeping its last answer and retrying", "query", w.key.String(), "err", err)
	}
	w.lastErr = err
}

// answered keeps an answer and tells the views reading w when its content
// changed.
func (c *Catalog) answered(w *watch, data any, sameIndex, filtered bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case filtered && w.denied == nil:
		w.denied = fmt.Errorf("%s: Consul left results out that the token may not read: it needs %s", w.key, w.q.permissions())
		c.log.Warn("catalog query answered without what the token may not read", "query", w.key.String(), "err", w.denied)
	case !filtered:
		w.denied = nil
	}
	if w.lastErr != nil {
		c.log.Info("catalog query answers again", "query", w.key.String(), "failed_for", time.Since(w.failingSince).Round(time.Millisecond))
	}
	w.lastErr, w.failingSince = nil, time.Time{}
	if w.ok && (sameIndex || reflect.DeepEqual(w.data, data)) {
		return
	}
	w.data, w.ok = data, true
	for v := range w.views {
		v.changed()
	}
}
