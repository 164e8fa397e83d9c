package catalog

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/watcher"
)

// View is one template's window on the catalog: a runner.Source whose
// snapshots answer the template's catalog functions (dialect.Catalog).
//
// Contract (besides runner.Source's):
//   - The view's dependencies are what the template's last complete
//     execution looked up. A lookup of a dependency the view does not
//     have yet adds it (starting its shared query if no other view reads
//     it); without an answer yet, the lookup reports it pending and the
//     execution fails with dialect.ErrPending: the runner holds the
//     render, and the first answer notifies the view.
//   - Generation changes exactly when the answer of one of the view's
//     dependencies changed (or a dependency joined the view with an
//     answer already in hand); another template's dependencies never
//     wake this one.
//   - Synced is closed at once: there is nothing to list before the
//     template's first execution says what it reads.
//   - Run holds the view's dependencies until ctx ends, then lets go of
//     them.
type View struct {
	c      *Catalog
	name   string
	stale  time.Duration
	synced chan struct{}

	// Guarded by c.mu.
	gen      uint64
	closed   bool // Run is over: lookups start no query
	executed bool // an execution of the template ran to its end: deps is what it reads
	deps     map[watchKey]*watch
	subs     map[chan struct{}]bool
}

// View returns the view named name (the source key it is known by) whose
// queries accept answers up to maxStale old from any server (0: only
// the leader's, consul-template's default).
func (c *Catalog) View(name string, maxStale time.Duration) *View {
	v := &View{c: c, name: name, stale: maxStale, synced: make(chan struct{}), deps: map[watchKey]*watch{}, subs: map[chan struct{}]bool{}}
	close(v.synced)
	return v
}

// Run holds the view's queries until ctx ends.
func (v *View) Run(ctx context.Context) {
	<-ctx.Done()
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	v.closed = true
	for k, w := range v.deps {
		v.c.release(w, v)
		delete(v.deps, k)
	}
}

// Synced is closed from the start.
func (v *View) Synced() <-chan struct{} { return v.synced }

// Subscribe notifies after a change of the view's data.
func (v *View) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	v.c.mu.Lock()
	v.subs[ch] = true
	v.c.mu.Unlock()
	return ch, func() {
		v.c.mu.Lock()
		delete(v.subs, ch)
		v.c.mu.Unlock()
	}
}

// changed bumps the generation and notifies. The caller holds c.mu.
func (v *View) changed() {
	v.gen++
	for ch := range v.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Snapshot returns the answers of the view's dependencies at this moment,
// as the template's catalog (Snapshot.Catalog).
func (v *View) Snapshot() watcher.Snapshot {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	s := &session{v: v, answers: make(map[watchKey]any, len(v.deps)), used: map[watchKey]bool{}}
	for k, w := range v.deps {
		if w.ok {
			s.answers[k] = w.data
		}
	}
	return watcher.Snapshot{Generation: v.gen, Catalog: s}
}

// Health reports the first failing query of the view, else the first
// whose answer Consul filtered by ACLs (not failing: FailingSince stays
// zero).
func (v *View) Health() watcher.Health {
	v.c.mu.Lock()
	defer v.c.mu.Unlock()
	h := watcher.Health{Prefix: v.name, Synced: true}
	for _, k := range sortedKeys(v.deps) {
		if w := v.deps[k]; w.lastErr != nil {
			h.LastError, h.FailingSince = w.lastErr, w.failingSince
			return h
		}
	}
	for _, k := range sortedKeys(v.deps) { // answered, but not everything
		if w := v.deps[k]; w.denied != nil {
			h.LastError = w.denied
			break
		}
	}
	return h
}

func sortedKeys(m map[watchKey]*watch) []watchKey {
	return slices.SortedFunc(maps.Keys(m), func(a, b watchKey) int { return cmp.Compare(a.dep, b.dep) })
}

// session is one snapshot's catalog, as the template's executions read
// it (dialect.Catalog).
type session struct {
	v *View

	mu      sync.Mutex // executions of one snapshot may run at once (quarantine tries)
	answers map[watchKey]any
	used    map[watchKey]bool
}

var _ dialect.Catalog = (*session)(nil)

// Lookup answers one catalog function call.
func (s *session) Lookup(fn string, args []string) (any, bool, error) {
	q, err := Parse(Kind(fn), args...)
	if err != nil {
		return nil, false, err
	}
	k := watchKey{q.String(), s.v.stale}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used[k] = true
	if data, ok := s.answers[k]; ok {
		return data, true, nil
	}
	c := s.v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	w, have := s.v.deps[k]
	if !have && s.v.closed {
		return empty(q.Kind), false, nil
	}
	if !have {
		w = c.acquire(q, s.v.stale, s.v)
		s.v.deps[k] = w
		if w.ok { // another template's query already has the answer
			s.v.changed()
		}
	}
	if w.ok {
		s.answers[k] = w.data // the rest of this execution reads the same
		return w.data, true, nil
	}
	return empty(q.Kind), false, nil
}

// Done lets go of the dependencies the complete execution did not read.
func (s *session) Done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	s.v.executed = true
	for k, w := range s.v.deps {
		if !s.used[k] {
			c.release(w, s.v)
			delete(s.v.deps, k)
		}
	}
}

// Count is the number of entries in the session's answers: instances,
// services, nodes (a node with its services counts one).
func (s *session) Count() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.v.c
	c.mu.Lock()
	known := s.v.executed
	c.mu.Unlock()
	n := 0
	for _, d := range s.answers {
		switch d := d.(type) {
		case []*HealthService:
			n += len(d)
		case []*CatalogSnippet:
			n += len(d)
		case []*NodeInfo:
			n += len(d)
		case *CatalogNode:
			if d != nil && d.Node != nil {
				n++
			}
		}
	}
	return n, known
}

// String names the session's view in errors.
func (s *session) String() string { return fmt.Sprintf("catalog view %s", s.v.name) }
