package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/internal/watchch"
)

// Limits matching etcd's defaults, so that what works here works there.
const (
	// DefaultMaxValue is the largest value a Put accepts (etcd's default
	// request limit, --max-request-bytes, is 1.5 MiB).
	DefaultMaxValue = 3 << 19
	// MaxTxnOps is the most operations one transaction may hold (etcd's
	// default --max-txn-ops).
	MaxTxnOps = 128
)

// Server is the shared in-memory data behind any number of client Stores.
type Server struct {
	maxValue int

	mu        sync.Mutex
	rev       store.Revision // the current revision; 1 on an empty server, as etcd
	compacted store.Revision // history before this revision is gone
	keys      map[string]entry
	log       []store.Event // every change after compacted, in revision order
	leases    map[int64]*lease
	nextLease int64
	watchers  map[*watcher]struct{}
}

// watcher is one Watch: commits append its matching events to pending and
// wake it, so a live watch never loses history to a Compact.
type watcher struct {
	prefix  string
	after   store.Revision // events at or before it are not the watcher's
	pending []store.Event
	wake    chan struct{} // cap 1
}

type entry struct {
	value []byte
	rev   store.Revision
	lease int64 // 0: none
}

type lease struct {
	id    int64
	ttl   time.Duration
	owner *Store      // nil once the owner detached
	timer *time.Timer // set once orphaned
}

// Option configures a Server.
type Option func(*Server)

// WithMaxValue sets the largest value a Put accepts (default
// DefaultMaxValue).
func WithMaxValue(n int) Option { return func(s *Server) { s.maxValue = n } }

// NewServer returns an empty server at revision 1.
func NewServer(opts ...Option) *Server {
	s := &Server{
		maxValue: DefaultMaxValue,
		rev:      1,
		keys:     make(map[string]entry),
		leases:   make(map[int64]*lease),
		watchers: make(map[*watcher]struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// New returns a client on a server of its own: the one-line fixture.
func New(opts ...Option) *Store { return NewServer(opts...).Open() }

// Open returns a new client of the server, with leases of its own.
func (s *Server) Open() *Store {
	return &Store{srv: s, leases: make(map[time.Duration]int64), closed: make(chan struct{})}
}

// Revision returns the server's current revision.
func (s *Server) Revision() store.Revision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// Compact drops the history before the current revision, as etcd's compact
// does: a Watch from an earlier revision then ends with ErrCompacted.
func (s *Server) Compact() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compacted = s.rev
	i, _ := slices.BinarySearchFunc(s.log, s.rev, func(e store.Event, r store.Revision) int { return int(e.KV.ModRevision - r) })
	s.log = slices.Clone(s.log[i:])
}

// Expire ends now, as if their TTL had run out, the leases of every client
// that detached (a dead owner), deleting their keys. Leases of open clients
// are kept alive and stay.
func (s *Server) Expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.leases {
		if l.owner == nil {
			s.revokeLocked(l)
		}
	}
}

// revokeLocked deletes l's keys at one revision, as etcd's lease revoke.
func (s *Server) revokeLocked(l *lease) {
	if l.timer != nil {
		l.timer.Stop()
	}
	delete(s.leases, l.id)
	var evs []store.Event
	for _, k := range slices.Sorted(mapKeys(s.keys)) {
		if s.keys[k].lease == l.id {
			evs = append(evs, store.Event{Type: store.EventDelete, KV: store.KV{Key: k}})
		}
	}
	s.commitLocked(evs, nil)
}

// commitLocked applies evs at the next revision (none: no new revision)
// and wakes the watchers. leaseOf gives the lease of each put (by index).
func (s *Server) commitLocked(evs []store.Event, leaseOf []int64) store.Revision {
	if len(evs) == 0 {
		return s.rev
	}
	s.rev++
	for i := range evs {
		evs[i].KV.ModRevision = s.rev
		k := evs[i].KV.Key
		switch evs[i].Type {
		case store.EventPut:
			s.keys[k] = entry{value: evs[i].KV.Value, rev: s.rev, lease: leaseOf[i]}
		case store.EventDelete:
			delete(s.keys, k)
		}
	}
	s.log = append(s.log, evs...)
	for w := range s.watchers {
		n := len(w.pending)
		for _, ev := range evs {
			if ev.KV.ModRevision > w.after && strings.HasPrefix(ev.KV.Key, w.prefix) {
				w.pending = append(w.pending, ev)
			}
		}
		if len(w.pending) > n {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
	return s.rev
}

func mapKeys(m map[string]entry) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Store is one client of a Server. It implements store.Store and
// store.Detacher.
type Store struct {
	srv *Server

	// guarded by srv.mu
	leases   map[time.Duration]int64 // this client's lease per TTL
	isClosed bool
	closed   chan struct{} // closed by Close/Detach
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Detacher = (*Store)(nil)
)

// Server returns the server this client talks to.
func (c *Store) Server() *Server { return c.srv }

// begin locks the server for one call, failing on a closed client or an
// ended context.
func (c *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.srv.mu.Lock()
	if c.isClosed {
		c.srv.mu.Unlock()
		return store.ErrClosed
	}
	return nil
}

// Get implements store.Store.
func (c *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := c.begin(ctx); err != nil {
		return store.KV{}, fmt.Errorf("memstore: get %q: %w", key, err)
	}
	defer c.srv.mu.Unlock()
	e, ok := c.srv.keys[key]
	if !ok {
		return store.KV{}, fmt.Errorf("memstore: get %q: %w", key, store.ErrNotFound)
	}
	return store.KV{Key: key, Value: slices.Clone(e.value), ModRevision: e.rev}, nil
}

// List implements store.Store.
func (c *Store) List(ctx context.Context, prefix string) ([]store.KV, store.Revision, error) {
	if err := c.begin(ctx); err != nil {
		return nil, 0, fmt.Errorf("memstore: list %q: %w", prefix, err)
	}
	defer c.srv.mu.Unlock()
	var kvs []store.KV
	for k, e := range c.srv.keys {
		if strings.HasPrefix(k, prefix) {
			kvs = append(kvs, store.KV{Key: k, Value: slices.Clone(e.value), ModRevision: e.rev})
		}
	}
	slices.SortFunc(kvs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	return kvs, c.srv.rev, nil
}

// Put implements store.Store.
func (c *Store) Put(ctx context.Context, key string, value []byte, opts ...store.PutOption) (store.Revision, error) {
	return c.Txn(ctx, store.Put(key, value, opts...))
}

// Delete implements store.Store.
func (c *Store) Delete(ctx context.Context, key string, opts ...store.DeleteOption) (store.Revision, error) {
	return c.Txn(ctx, store.Delete(key, opts...))
}

// Txn implements store.Store. As etcd, it refuses more than MaxTxnOps
// operations and two operations on one key.
func (c *Store) Txn(ctx context.Context, ops ...store.Op) (store.Revision, error) {
	if err := c.validate(ops); err != nil {
		return 0, err
	}
	if err := c.begin(ctx); err != nil {
		return 0, fmt.Errorf("memstore: txn: %w", err)
	}
	defer c.srv.mu.Unlock()
	s := c.srv
	for _, op := range ops {
		if _, ok := s.keys[op.Key]; ok && op.Type == store.OpPut && op.Create {
			return 0, fmt.Errorf("memstore: create %q: %w", op.Key, store.ErrExists)
		}
	}
	// validate refused puts overlapping other operations; seen drops a key
	// that two deletes match.
	var (
		evs     []store.Event
		leaseOf []int64
		seen    = map[string]bool{}
	)
	for _, op := range ops {
		switch op.Type {
		case store.OpPut:
			var id int64
			if op.TTL > 0 {
				id = c.leaseLocked(op.TTL)
			}
			evs = append(evs, store.Event{Type: store.EventPut, KV: store.KV{Key: op.Key, Value: slices.Clone(op.Value)}})
			leaseOf = append(leaseOf, id)
			seen[op.Key] = true
		case store.OpDelete:
			matched := []string{op.Key}
			if op.Prefix {
				matched = slices.Sorted(mapKeys(s.keys))
			}
			for _, k := range matched {
				if _, ok := s.keys[k]; ok && strings.HasPrefix(k, op.Key) && !seen[k] {
					evs = append(evs, store.Event{Type: store.EventDelete, KV: store.KV{Key: k}})
					leaseOf = append(leaseOf, 0)
					seen[k] = true
				}
			}
		}
	}
	return s.commitLocked(evs, leaseOf), nil
}

// validate checks a transaction before it touches anything.
func (c *Store) validate(ops []store.Op) error {
	if len(ops) > MaxTxnOps {
		return fmt.Errorf("memstore: txn of %d operations: more than %d", len(ops), MaxTxnOps)
	}
	for i, op := range ops {
		if op.Key == "" && !(op.Type == store.OpDelete && op.Prefix) {
			return fmt.Errorf("memstore: txn operation %d: empty key", i)
		}
		switch op.Type {
		case store.OpPut:
			if len(op.Value) > c.srv.maxValue {
				return fmt.Errorf("memstore: put %q: value of %d bytes is over the limit of %d", op.Key, len(op.Value), c.srv.maxValue)
			}
		case store.OpDelete:
		default:
			return fmt.Errorf("memstore: txn operation %d on %q: unknown type %d", i, op.Key, op.Type)
		}
		for j, other := range ops[:i] {
			if overlaps(op, other) {
				return fmt.Errorf("memstore: txn operations %d and %d both change %q", j, i, op.Key)
			}
		}
	}
	return nil
}

// overlaps reports whether two operations, one of them a put, change a
// common key (etcd refuses such a transaction; overlapping deletes are
// fine).
func overlaps(a, b store.Op) bool {
	if a.Type != store.OpPut && b.Type != store.OpPut {
		return false
	}
	covers := func(d, k store.Op) bool {
		return d.Type == store.OpDelete && d.Prefix && strings.HasPrefix(k.Key, d.Key)
	}
	return a.Key == b.Key || covers(a, b) || covers(b, a)
}

// leaseLocked returns this client's lease for ttl, granting it on first use.
func (c *Store) leaseLocked(ttl time.Duration) int64 {
	if id, ok := c.leases[ttl]; ok {
		return id
	}
	s := c.srv
	s.nextLease++
	l := &lease{id: s.nextLease, ttl: ttl, owner: c}
	s.leases[l.id] = l
	c.leases[ttl] = l.id
	return l.id
}

// Watch implements store.Store.
func (c *Store) Watch(ctx context.Context, prefix string, after store.Revision) <-chan store.WatchResponse {
	out := make(chan store.WatchResponse, 1)
	first, w := c.startWatch(prefix, after)
	go func() {
		defer close(out)
		send := func(r store.WatchResponse) bool { return watchch.Send(ctx, out, r) }
		if w == nil {
			send(first)
			return
		}
		defer c.stopWatch(w)
		for {
			select {
			case <-w.wake:
			case <-c.closed:
				send(store.WatchResponse{Err: fmt.Errorf("memstore: watch %q: %w", prefix, store.ErrClosed)})
				return
			case <-ctx.Done():
				return
			}
			c.srv.mu.Lock()
			evs := w.pending
			w.pending = nil
			c.srv.mu.Unlock()
			for i := range evs {
				evs[i].KV.Value = slices.Clone(evs[i].KV.Value) // the server keeps the original
			}
			if len(evs) > 0 && !send(store.WatchResponse{Revision: evs[len(evs)-1].KV.ModRevision, Events: evs}) {
				return
			}
		}
	}()
	return out
}

// startWatch registers a watcher whose pending events are the history
// after after. It returns a nil watcher and the final response when the
// watch cannot start.
func (c *Store) startWatch(prefix string, after store.Revision) (store.WatchResponse, *watcher) {
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.isClosed {
		return store.WatchResponse{Err: fmt.Errorf("memstore: watch %q: %w", prefix, store.ErrClosed)}, nil
	}
	if after > 0 && after+1 < s.compacted {
		return store.WatchResponse{Revision: s.compacted, Err: fmt.Errorf("memstore: watch %q from revision %d: compacted at %d: %w", prefix, after+1, s.compacted, store.ErrCompacted)}, nil
	}
	w := &watcher{prefix: prefix, after: after, wake: make(chan struct{}, 1)}
	if after > 0 {
		i, _ := slices.BinarySearchFunc(s.log, after+1, func(e store.Event, r store.Revision) int { return int(e.KV.ModRevision - r) })
		for _, ev := range s.log[i:] {
			if strings.HasPrefix(ev.KV.Key, prefix) {
				w.pending = append(w.pending, ev)
			}
		}
		if len(w.pending) > 0 {
			w.wake <- struct{}{}
		}
	}
	s.watchers[w] = struct{}{}
	return store.WatchResponse{}, w
}

func (c *Store) stopWatch(w *watcher) {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	delete(c.srv.watchers, w)
}

// Close implements store.Store: it revokes this client's leases, so their
// keys go now.
func (c *Store) Close() error { return c.close(true) }

// Detach implements store.Detacher: it closes the client like a killed
// process, leaving its leases to expire after their TTL (or at
// Server.Expire).
func (c *Store) Detach() error { return c.close(false) }

func (c *Store) close(revoke bool) error {
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.isClosed {
		return nil
	}
	c.isClosed = true
	close(c.closed)
	for _, id := range c.leases {
		l, ok := s.leases[id]
		if !ok {
			continue
		}
		if revoke {
			s.revokeLocked(l)
			continue
		}
		l.owner = nil
		l.timer = time.AfterFunc(l.ttl, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.leases[l.id] == l {
				s.revokeLocked(l)
			}
		})
	}
	return nil
}
