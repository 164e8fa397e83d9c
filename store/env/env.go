package env

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/internal/watchch"
)

// revision is the only revision an environment store has.
const revision store.Revision = 1

// Store is a read-only store.Store on a fixed environment. Create it with
// New.
type Store struct {
	vars map[string]string // variable name → value

	mu     sync.Mutex
	closed bool
	done   chan struct{} // closed by Close
}

var _ store.Store = (*Store)(nil)

// New returns a store on environ, a list of "NAME=value" entries as
// os.Environ returns them. Entries without "=" are ignored; of repeated
// names the first counts, as with os.Getenv.
func New(environ []string) *Store {
	vars := make(map[string]string, len(environ))
	for _, e := range environ {
		name, value, ok := strings.Cut(e, "=")
		if !ok || name == "" {
			continue
		}
		if _, dup := vars[name]; !dup {
			vars[name] = value
		}
	}
	return &Store{vars: vars, done: make(chan struct{})}
}

// VarName returns the environment variable that holds key:
// "/app/db/port" → "APP_DB_PORT".
func VarName(key string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(key, "/"), "/", "_"))
}

// Key returns the key an environment variable lists as:
// "APP_DB_PORT" → "/app/db/port".
func Key(name string) string {
	return "/" + strings.ReplaceAll(strings.ToLower(name), "_", "/")
}

func (s *Store) checkOpen(op, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("env store: %s %q: %w", op, key, store.ErrClosed)
	}
	return nil
}

// Get returns the variable VarName(key).
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.checkOpen("get", key); err != nil {
		return store.KV{}, err
	}
	v, ok := s.vars[VarName(key)]
	if !ok {
		return store.KV{}, fmt.Errorf("env store: get %q (variable %s): %w", key, VarName(key), store.ErrNotFound)
	}
	return store.KV{Key: key, Value: []byte(v), ModRevision: revision}, nil
}

// List returns, sorted by key, the variables whose names start with
// VarName(prefix) and whose keys start with prefix. Where two variables
// map to one key (APP_X and app_x), the one named VarName(key) wins, else
// the first by name.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, store.Revision, error) {
	if err := s.checkOpen("list", prefix); err != nil {
		return nil, 0, err
	}
	from := VarName(prefix)
	chosen := make(map[string]string) // key → variable name
	for name := range s.vars {
		key := Key(name)
		if !strings.HasPrefix(name, from) || !strings.HasPrefix(key, prefix) {
			continue
		}
		if prev, ok := chosen[key]; ok && (prev == VarName(key) || (name != VarName(key) && prev < name)) {
			continue
		}
		chosen[key] = name
	}
	kvs := make([]store.KV, 0, len(chosen))
	for key, name := range chosen {
		kvs = append(kvs, store.KV{Key: key, Value: []byte(s.vars[name]), ModRevision: revision})
	}
	slices.SortFunc(kvs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	return kvs, revision, nil
}

// Put fails: the environment is read-only.
func (s *Store) Put(ctx context.Context, key string, value []byte, opts ...store.PutOption) (store.Revision, error) {
	return 0, readOnly("put", key)
}

// Delete fails: the environment is read-only.
func (s *Store) Delete(ctx context.Context, key string, opts ...store.DeleteOption) (store.Revision, error) {
	return 0, readOnly("delete", key)
}

// Txn fails: the environment is read-only.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (store.Revision, error) {
	key := ""
	if len(ops) > 0 {
		key = ops[0].Key
	}
	return 0, readOnly("txn", key)
}

func readOnly(op, key string) error {
	return fmt.Errorf("env store: %s %q: %w", op, key, store.ErrReadOnly)
}

// Watch delivers no events: the environment of a process does not change.
// The channel closes when ctx ends, or after a final store.ErrClosed
// response when the store is closed.
func (s *Store) Watch(ctx context.Context, prefix string, after store.Revision) <-chan store.WatchResponse {
	ch := make(chan store.WatchResponse)
	go func() {
		defer close(ch)
		select {
		case <-ctx.Done():
		case <-s.done:
			watchch.Send(ctx, ch, store.WatchResponse{Err: fmt.Errorf("env store: watch %q: %w", prefix, store.ErrClosed)})
		}
	}()
	return ch
}

// Close ends the store's watches; later calls fail with store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	return nil
}
