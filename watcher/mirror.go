package watcher

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/internal/backoff"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

// Defaults of a Mirror.
const (
	DefaultResync     = 5 * time.Minute
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// Mirror is a local copy of every key under one store prefix. Run seeds it
// with List and advances it with Watch from the listed revision; when the
// watch ends (compaction, a broken stream, a closed store) or the resync
// interval passes, it lists again, with backoff on errors. Applying an event
// costs O(1); the sorted snapshot is rebuilt at most once per change, when
// someone asks for it.
//
// A Mirror is safe for concurrent use. Subscribers are notified (without
// blocking) after each change; they then call Snapshot.
type Mirror struct {
	st     store.Store
	prefix string
	log    *slog.Logger
	resync time.Duration
	minBO  time.Duration
	maxBO  time.Duration

	mu      sync.Mutex
	kvs     map[string]store.KV
	rev     store.Revision
	sorted  []store.KV // cache of kvs sorted by key; nil when stale
	changes Changes
	health  Health
}

// Health says how a Mirror is doing, for /healthz and metrics.
type Health struct {
	Prefix       string         // the mirrored prefix
	Synced       bool           // the first full listing succeeded
	Revision     store.Revision // the revision the mirror is current to
	LastSync     time.Time      // the last successful List
	LastEvent    time.Time      // the last watch response
	LastError    error          // the last List or Watch error (nil after a success)
	LastErrorAt  time.Time
	Relists      int // listings after the first
	EventsSeen   int
	FailingSince time.Time // first of the current run of failed listings; zero when healthy
}

// MirrorOption configures a Mirror.
type MirrorOption func(*Mirror)

// WithResync sets how often the mirror re-lists as a backstop against
// anything a watch might have missed (0: never).
func WithResync(d time.Duration) MirrorOption { return func(m *Mirror) { m.resync = d } }

// WithBackoff sets the bounds of the retry backoff after a failed List.
func WithBackoff(min, max time.Duration) MirrorOption {
	return func(m *Mirror) { m.minBO, m.maxBO = min, max }
}

// WithLogger sets the mirror's logger.
func WithLogger(l *slog.Logger) MirrorOption { return func(m *Mirror) { m.log = l } }

// NewMirror returns a mirror of prefix in st; call Run to fill it.
func NewMirror(st store.Store, prefix string, opts ...MirrorOption) *Mirror {
	m := &Mirror{
		st: st, prefix: prefix, log: slog.Default(),
		resync: DefaultResync, minBO: DefaultMinBackoff, maxBO: DefaultMaxBackoff,
		kvs:     map[string]store.KV{},
		changes: NewChanges(),
	}
	for _, f := range opts {
		f(m)
	}
	m.log = m.log.With("prefix", prefix)
	return m
}

// Prefix returns the mirrored prefix.
func (m *Mirror) Prefix() string { return m.prefix }

// Synced is closed once the first full listing is in.
func (m *Mirror) Synced() <-chan struct{} { return m.changes.Synced() }

// Health reports the mirror's state.
func (m *Mirror) Health() Health {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.health
	h.Prefix = m.prefix
	return h
}

// Subscribe returns a channel that receives a value after each change (the
// first full listing counts as one); notifications coalesce, so a slow
// reader sees one for many changes. cancel stops them.
func (m *Mirror) Subscribe() (notify <-chan struct{}, cancel func()) {
	return m.changes.Subscribe(&m.mu)
}

// Snapshot is the content of a source at one moment: a Mirror's keys, or
// a container engine's containers (dockergen.Source).
type Snapshot struct {
	KVs      []store.KV     // sorted by key; shared, must not be modified
	Revision store.Revision // the store revision the content is current to
	// Containers are a container source's containers, as templates see
	// them, sorted by name; nil for a store source. Shared, must not be
	// modified.
	Containers []records.Container
	// Docker describes a container source's engine ($.Docker).
	Docker records.Docker
	// Generation counts the content changes the mirror has seen: two
	// snapshots of one mirror with equal generations have equal content
	// (a revision number alone does not say that: a watch may report a
	// revision before it has delivered every event up to it).
	Generation uint64
	// Certs is a certificate source's valid pairs; nil for the others.
	Certs *certs.Set
	// Catalog answers a catalog source's template functions (package
	// catalog); nil for the others.
	Catalog dialect.Catalog
}

// Snapshot returns the mirrored keys.
func (m *Mirror) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sorted == nil {
		m.sorted = make([]store.KV, 0, len(m.kvs))
		for _, kv := range m.kvs {
			m.sorted = append(m.sorted, kv)
		}
		slices.SortFunc(m.sorted, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	}
	return Snapshot{KVs: m.sorted, Revision: m.rev, Generation: m.changes.Generation()}
}

// Run keeps the mirror current until ctx ends.
func (m *Mirror) Run(ctx context.Context) {
	bo := backoff.New(m.minBO, m.maxBO)
	for ctx.Err() == nil {
		kvs, rev, err := m.st.List(ctx, m.prefix)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.failed(err)
			d := bo.Next()
			m.log.Warn("listing failed; retrying", "err", err, "in", d)
			if !backoff.Sleep(ctx, d) {
				return
			}
			continue
		}
		m.replace(kvs, rev)
		if m.watch(ctx, rev) {
			bo.Reset()
			continue
		}
		// The watch broke before it delivered anything: back off rather
		// than spin between List and Watch.
		if !backoff.Sleep(ctx, bo.Next()) {
			return
		}
	}
}

// healthyWatch is how long a watch must last, if it delivers nothing, to
// count as having worked.
const healthyWatch = 5 * time.Second

// watch follows the prefix from rev until the watch ends, ctx ends, or the
// resync interval passes. It reports whether the watch worked: it delivered
// a response, lasted healthyWatch, or ended for the resync.
func (m *Mirror) watch(ctx context.Context, rev store.Revision) (worked bool) {
	started := time.Now()
	defer func() { worked = worked || time.Since(started) >= healthyWatch }()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var resync <-chan time.Time
	if m.resync > 0 {
		t := time.NewTimer(m.resync)
		defer t.Stop()
		resync = t.C
	}
	ch := m.st.Watch(wctx, m.prefix, rev)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return worked
			}
			if resp.Err != nil {
				if errors.Is(resp.Err, store.ErrCompacted) {
					m.log.Info("watch history compacted; re-listing", "err", resp.Err)
					return true // a compaction is news, not a broken watch
				}
				m.failed(resp.Err)
				m.log.Warn("watch ended; re-listing", "err", resp.Err)
				return worked
			}
			worked = true
			m.apply(resp)
		case <-resync:
			m.log.Debug("periodic resync")
			return true
		case <-ctx.Done():
			return true
		}
	}
}

// replace swaps in a full listing, notifying subscribers if anything
// differs from what the mirror held (or on the first listing).
func (m *Mirror) replace(kvs []store.KV, rev store.Revision) {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := !m.changes.IsSynced() || len(kvs) != len(m.kvs)
	next := make(map[string]store.KV, len(kvs))
	for _, kv := range kvs {
		next[kv.Key] = kv
		if !changed {
			old, ok := m.kvs[kv.Key]
			changed = !ok || !bytes.Equal(old.Value, kv.Value)
		}
	}
	now := time.Now()
	if m.changes.IsSynced() {
		m.health.Relists++
		if changed {
			m.log.Info("re-listing found changes the watch had not delivered", "keys", len(kvs), "revision", rev)
		}
	}
	m.kvs = next
	m.rev = rev
	m.health.Synced, m.health.Revision, m.health.LastSync = true, rev, now
	m.health.LastError, m.health.FailingSince = nil, time.Time{}
	if changed {
		m.sorted = nil
	}
	m.changes.Listed(changed)
}

// patchLimit is how many events a response may carry for apply to patch
// the sorted snapshot in place of rebuilding it: each patch copies the
// snapshot (O(n), no sort), cheaper than a rebuild for a few changes.
const patchLimit = 8

// apply applies one watch response.
func (m *Mirror) apply(resp store.WatchResponse) {
	m.mu.Lock()
	defer m.mu.Unlock()
	patch := m.sorted != nil && len(resp.Events) <= patchLimit
	changed, touched := false, false
	for _, ev := range resp.Events {
		switch ev.Type {
		case store.EventPut:
			old, ok := m.kvs[ev.KV.Key]
			m.kvs[ev.KV.Key] = ev.KV
			// Same bytes: no render needed, but the snapshot's ModRevision
			// must be the new one.
			changed = changed || !ok || !bytes.Equal(old.Value, ev.KV.Value)
			touched = true
			if patch {
				m.sorted = patched(m.sorted, ev)
			}
		case store.EventDelete:
			if _, ok := m.kvs[ev.KV.Key]; ok {
				delete(m.kvs, ev.KV.Key)
				changed, touched = true, true
				if patch {
					m.sorted = patched(m.sorted, ev)
				}
			}
		}
		m.rev = max(m.rev, ev.KV.ModRevision)
	}
	m.rev = max(m.rev, resp.Revision)
	m.health.Revision, m.health.LastEvent = m.rev, time.Now()
	m.health.EventsSeen += len(resp.Events)
	if touched && !patch {
		m.sorted = nil
	}
	if changed {
		m.changes.Changed()
	}
}

// patched returns a copy of the sorted snapshot with one event applied;
// the snapshot itself is shared with readers and never modified.
func patched(sorted []store.KV, ev store.Event) []store.KV {
	i, found := slices.BinarySearchFunc(sorted, ev.KV.Key, func(kv store.KV, key string) int { return strings.Compare(kv.Key, key) })
	switch {
	case ev.Type == store.EventPut && found:
		next := slices.Clone(sorted)
		next[i] = ev.KV
		return next
	case ev.Type == store.EventPut:
		next := make([]store.KV, len(sorted)+1)
		copy(next, sorted[:i])
		next[i] = ev.KV
		copy(next[i+1:], sorted[i:])
		return next
	case found: // a delete
		next := make([]store.KV, len(sorted)-1)
		copy(next, sorted[:i])
		copy(next[i:], sorted[i+1:])
		return next
	}
	return sorted
}

func (m *Mirror) failed(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.health.Failed(err, time.Now())
}
