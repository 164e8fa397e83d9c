package dockergen

import (
	"context"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/internal/backoff"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
	"github.com/berthd/berth/watcher"
)

// Source is a Docker Engine's containers as one container filter lets a
// docker-gen template see them: the containers that pass the filter, as
// docker-gen records, and the engine's summary ($.Docker). It implements
// runner.Source: it lists the containers once, then follows the engine's
// events (runtime/docker inspects only the container an event names), and
// its Generation moves only when a record the template sees changed, so an
// event that changes nothing there (a create or a network connect of a
// container the filter leaves out, a signal) does not count as a change.
type Source struct {
	rt     *docker.Runtime
	filter Filter
	self   string // $.Docker.CurrentContainerID
	follow bool
	log    *slog.Logger

	mu      sync.Mutex
	recs    map[string]records.Container // by container ID: those that pass filter
	sorted  []records.Container          // recs sorted by name; nil when stale
	engine  records.Docker               // $.Docker
	changes watcher.Changes
	health  watcher.Health
}

// SourceOption configures a Source.
type SourceOption func(*Source)

// WithoutEvents makes the source list the containers once and not follow
// the engine's events (one-shot mode).
func WithoutEvents() SourceOption { return func(s *Source) { s.follow = false } }

// WithSourceLogger sets the source's logger.
func WithSourceLogger(l *slog.Logger) SourceOption { return func(s *Source) { s.log = l } }

// withSelf sets $.Docker.CurrentContainerID.
func withSelf(id string) SourceOption { return func(s *Source) { s.self = id } }

// NewSource returns the view of rt's containers that filter selects; call
// Run to fill it.
func NewSource(rt *docker.Runtime, filter Filter, opts ...SourceOption) *Source {
	s := &Source{
		rt: rt, filter: filter, follow: true, log: slog.Default(),
		recs:    map[string]records.Container{},
		changes: watcher.NewChanges(),
	}
	for _, f := range opts {
		f(s)
	}
	s.health.Prefix = "docker " + rt.Host()
	return s
}

// Run follows the engine until ctx ends: it subscribes to its events,
// lists the containers (retried with backoff until it succeeds), then
// applies each event. It returns once the event channel is closed (the
// runtime closes it when ctx ends).
func (s *Source) Run(ctx context.Context) {
	var evs <-chan runtime.Event
	if s.follow {
		evs, _ = s.rt.Events(ctx) // subscribe before listing: nothing falls between
	}
	bo := backoff.New(watcher.DefaultMinBackoff, watcher.DefaultMaxBackoff)
	for {
		cs, err := s.rt.List(ctx)
		if err == nil {
			s.replace(ctx, cs)
			break
		}
		if ctx.Err() != nil {
			break
		}
		s.failed(err)
		d := bo.Next()
		s.log.Warn("docker container listing failed; retrying", "host", s.rt.Host(), "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			break
		}
	}
	if evs == nil {
		<-ctx.Done()
		return
	}
	for ev := range evs {
		if ctx.Err() == nil {
			s.apply(ctx, ev)
		}
	}
}

// Synced is closed once the first listing is in.
func (s *Source) Synced() <-chan struct{} { return s.changes.Synced() }

// Subscribe returns a channel that receives a value after each change (the
// first listing counts as one); notifications coalesce. cancel stops them.
func (s *Source) Subscribe() (notify <-chan struct{}, cancel func()) {
	return s.changes.Subscribe(&s.mu)
}

// Snapshot returns the containers the filter selects, sorted by name
// (never nil), and the engine summary.
func (s *Source) Snapshot() watcher.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sorted == nil {
		s.sorted = slices.SortedFunc(maps.Values(s.recs), func(a, b records.Container) int { return strings.Compare(a.Name, b.Name) })
		if s.sorted == nil {
			s.sorted = []records.Container{}
		}
	}
	return watcher.Snapshot{Containers: s.sorted, Docker: s.engine, Generation: s.changes.Generation()}
}

// Health reports the source's state.
func (s *Source) Health() watcher.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health
}

// replace swaps in a full listing.
func (s *Source) replace(ctx context.Context, cs []runtime.Container) {
	next := make(map[string]records.Container, len(cs))
	for _, c := range cs {
		if s.filter.Match(c) {
			next[c.ID] = record(c)
		}
	}
	engine, eerr := s.rt.Engine(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if eerr != nil {
		s.log.Warn("docker engine summary unavailable; $.Docker stays as it was", "err", eerr)
	} else {
		s.engine = summary(engine, s.self)
	}
	changed := !s.changes.IsSynced() || !reflect.DeepEqual(next, s.recs)
	s.recs = next
	now := time.Now()
	s.health.Synced, s.health.LastSync, s.health.LastError, s.health.FailingSince = true, now, nil, time.Time{}
	if changed {
		s.sorted = nil
	}
	s.changes.Listed(changed)
}

// apply applies one event: the container it names enters, changes in or
// leaves the filtered set, or nothing the template sees changed.
func (s *Source) apply(ctx context.Context, ev runtime.Event) {
	s.mu.Lock()
	s.health.LastEvent = time.Now()
	s.health.EventsSeen++
	s.mu.Unlock()
	if ev.Type == runtime.EventKill {
		// A signal changes nothing a template sees (a die event follows
		// if it ends the container).
		return
	}
	c := ev.Container
	var (
		rec  records.Container
		keep = ev.Type != runtime.EventDestroy && s.filter.Match(c)
	)
	if keep {
		rec = record(c)
	}
	s.mu.Lock()
	old, had := s.recs[c.ID]
	changed := had != keep || (keep && !reflect.DeepEqual(old, rec))
	s.mu.Unlock()
	if !changed {
		return
	}
	engine, eerr := s.rt.Engine(ctx) // $.Docker as of this change, as docker-gen asks at each render
	s.mu.Lock()
	defer s.mu.Unlock()
	if eerr == nil {
		s.engine = summary(engine, s.self)
	} else if ctx.Err() == nil {
		s.log.Warn("docker engine summary unavailable; $.Docker stays as it was", "err", eerr)
	}
	if keep {
		s.recs[c.ID] = rec
	} else {
		delete(s.recs, c.ID)
	}
	s.sorted = nil
	s.changes.Changed()
}

func (s *Source) failed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health.Failed(err, time.Now())
}
