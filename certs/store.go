package certs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/berthd/berth/internal/backoff"
)

// Store keeps the Set of one certificate directory current. Run watches
// the directory; a change is read once the directory has been quiet for
// the settle time (a file being copied in is not read half-written, and
// one that was is read again at its next change), and at the earliest
// expiry of a certificate it holds (an expired one leaves the set). A
// pair that fails Load is logged once per distinct reason and left out,
// except while it is being replaced: within ReplaceGrace of a write to
// one of its files, the last good certificate of that name stays.
//
// Store has the shape of a runner.Source (Run, Synced, Subscribe) and
// Current gives its content; the daemon adapts it.
type Store struct {
	dir    string
	log    *slog.Logger
	settle time.Duration
	rescan time.Duration
	now    func() time.Time

	synced   chan struct{}
	syncOnce sync.Once
	runMu    sync.Mutex // one Run at a time (a source reopened while the last Run ends)

	mu       sync.Mutex
	set      *Set
	gen      uint64
	problems map[string]string // file name → the reason reported last
	lastErr  error
	lastAt   time.Time
	subs     map[chan struct{}]struct{}
}

// Option configures a Store.
type Option func(*Store)

// WithLogger sets where left-out pairs are reported.
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithSettle sets how long the directory must be quiet before a change
// is read (default 500ms).
func WithSettle(d time.Duration) Option { return func(s *Store) { s.settle = d } }

// WithRescan sets the longest time between two reads of the directory
// without an event (default 1h): the backstop for a missed event.
func WithRescan(d time.Duration) Option { return func(s *Store) { s.rescan = d } }

// WithClock sets the clock expiry is checked against (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns the store of dir (absolute); Run reads and watches it.
func New(dir string, opts ...Option) *Store {
	s := &Store{dir: filepath.Clean(dir), log: slog.Default(), settle: 500 * time.Millisecond, rescan: time.Hour, now: time.Now,
		synced: make(chan struct{}), problems: map[string]string{}, subs: map[chan struct{}]struct{}{}, set: NewSet(filepath.Clean(dir), nil)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Dir is the certificate directory.
func (s *Store) Dir() string { return s.dir }

// Current returns the set and its generation: equal generations, equal sets.
func (s *Store) Current() (*Set, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set, s.gen
}

// Synced is closed after the first read of the directory (successful or
// not: a missing directory is an empty set).
func (s *Store) Synced() <-chan struct{} { return s.synced }

// Subscribe returns a channel that receives a value (coalesced) after
// each change of the set; cancel stops it.
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

// LastError is the last error reading or watching the directory (nil
// after a good read) and when.
func (s *Store) LastError() (err error, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr, s.lastAt
}

// Scan reads the directory now and replaces the set if it changed; it
// returns the earliest expiry among the certificates it holds.
func (s *Store) Scan() time.Time {
	now := s.now()
	entries, err := os.ReadDir(s.dir)
	var certs []Cert
	seen := map[string]bool{}
	var earliest time.Time
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".crt")
		if !ok || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		seen[e.Name()] = true
		c, lerr := Load(s.dir, name, now)
		if lerr != nil {
			if old, until := s.replacing(name, now); old != nil {
				// Half replaced (the new .key next to the old .crt, as
				// ACME and cp write them): the last good pair stays until
				// the other file lands, or the grace ends.
				certs = append(certs, *old)
				if earliest.IsZero() || until.Before(earliest) {
					earliest = until
				}
				continue
			}
			s.report(e.Name(), lerr.Error())
			continue
		}
		s.report(e.Name(), "")
		certs = append(certs, c)
		if earliest.IsZero() || c.NotAfter.Before(earliest) {
			earliest = c.NotAfter
		}
	}
	set := NewSet(s.dir, certs)
	s.mu.Lock()
	defer s.mu.Unlock()
	for f := range s.problems {
		if !seen[f] {
			delete(s.problems, f)
		}
	}
	if err != nil && !os.IsNotExist(err) {
		if s.lastErr == nil {
			s.log.Warn("certificate directory unreadable", "dir", s.dir, "err", err)
		}
		s.lastErr, s.lastAt = err, now
		return earliest // keep the last good set
	}
	s.lastErr, s.lastAt = nil, now
	if !set.equal(s.set) {
		s.set = set
		s.gen++
		s.log.Info("certificates", "dir", s.dir, "valid", set.Len())
		for ch := range s.subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	return earliest
}

// ReplaceGrace is how long a pair that stops loading keeps its last good
// certificate in the set after one of its files was written: a renewal
// replaces two files, one after the other, and the pair in between (the
// new key, the old certificate) does not match.
const ReplaceGrace = 5 * time.Second

// replacing returns the set's certificate of name if a file of its pair
// was written within ReplaceGrace and it is still valid at now, and when
// the grace ends; nil otherwise.
func (s *Store) replacing(name string, now time.Time) (*Cert, time.Time) {
	s.mu.Lock()
	old := s.set.Get(name)
	s.mu.Unlock()
	if old == nil || !now.Before(old.NotAfter) {
		return nil, time.Time{}
	}
	var newest time.Time
	for _, f := range []string{old.CertFile, old.KeyFile} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	until := newest.Add(ReplaceGrace)
	if !time.Now().Before(until) {
		return nil, time.Time{}
	}
	return old, until
}

// report logs the reason file is left out, once per distinct reason, and
// its recovery ("" after a failure).
func (s *Store) report(file, reason string) {
	s.mu.Lock()
	last, had := s.problems[file]
	if reason == "" {
		delete(s.problems, file)
	} else {
		s.problems[file] = reason
	}
	s.mu.Unlock()
	switch {
	case reason != "" && reason != last:
		s.log.Warn("certificate left out", "file", filepath.Join(s.dir, file), "reason", reason)
	case reason == "" && had:
		s.log.Info("certificate usable again", "file", filepath.Join(s.dir, file))
	}
}

// Run reads the directory, then watches it until ctx ends. A directory
// that cannot be watched (missing) is retried with backoff; it is read
// at every retry. A second Run waits for the first to end.
func (s *Store) Run(ctx context.Context) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	bo := backoff.New(time.Second, 30*time.Second)
	for ctx.Err() == nil {
		w, err := fsnotify.NewWatcher()
		if err == nil {
			if err = w.Add(s.dir); err != nil {
				w.Close()
			}
		}
		if err != nil {
			s.Scan()
			s.syncOnce.Do(func() { close(s.synced) })
			s.mu.Lock()
			s.lastErr, s.lastAt = fmt.Errorf("watch %s: %w", s.dir, err), s.now()
			s.mu.Unlock()
			if !backoff.Sleep(ctx, bo.Next()) {
				return
			}
			continue
		}
		bo.Reset()
		s.watch(ctx, w)
		w.Close()
	}
}

// watch follows w until ctx ends or the directory goes away.
func (s *Store) watch(ctx context.Context, w *fsnotify.Watcher) {
	expiry := s.Scan()
	s.syncOnce.Do(func() { close(s.synced) })
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	for {
		wait := s.rescan
		if !expiry.IsZero() {
			wait = min(wait, max(time.Until(expiry)+time.Second, time.Second))
		}
		next := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			next.Stop()
			return
		case ev, ok := <-w.Events:
			next.Stop()
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) == s.dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				s.Scan()
				return // watch it again once it is back
			}
			settle.Reset(s.settle)
		case err, ok := <-w.Errors:
			next.Stop()
			if !ok {
				return
			}
			s.log.Warn("certificate directory watch", "dir", s.dir, "err", err)
			settle.Reset(s.settle)
		case <-settle.C:
			next.Stop()
			expiry = s.Scan()
		case <-next.C:
			expiry = s.Scan()
		}
	}
}
