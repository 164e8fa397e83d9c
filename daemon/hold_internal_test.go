package daemon

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/store/memstore"
)

// owned is an owner whose records the test writes itself, standing in for
// the registrar (TestStoreStallLeaseLost runs the real one).
type owned struct {
	mu          sync.Mutex
	keys        map[string]store.Revision
	reregisters int
}

func (o *owned) Owns(key string) (store.Revision, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	rev, ok := o.keys[key]
	return rev, ok
}

func (o *owned) OwnedUnder(prefix string) map[string]store.Revision {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]store.Revision{}
	for k, r := range o.keys {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			out[k] = r
		}
	}
	return out
}

func (o *owned) Reregister() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reregisters++
}

func (o *owned) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reregisters
}

func (o *owned) own(key string, rev store.Revision) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if rev == 0 {
		delete(o.keys, key)
		return
	}
	o.keys[key] = rev
}

// TestUnitHold drives the hold over a memory store: which removals hold a
// watch back, what releases it, and that the held responses arrive as one.
func TestUnitHold(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	testHold(t, st)
}

// TestHold runs the same over a real etcd server.
func TestHold(t *testing.T) {
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	testHold(t, st)
}

func testHold(t *testing.T, st store.Store) {
	const p = "/hold/"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	put := func(key string) store.Revision {
		t.Helper()
		rev, err := st.Put(t.Context(), key, []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	del := func(key string) {
		t.Helper()
		if _, err := st.Delete(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
	// next returns the next response within d (ok false: none came).
	next := func(ch <-chan store.WatchResponse, d time.Duration) (store.WatchResponse, bool) {
		select {
		case r := <-ch:
			return r, true
		case <-time.After(d):
			return store.WatchResponse{}, false
		}
	}
	setup := func(t *testing.T, max time.Duration) (*owned, *holdStore, <-chan store.WatchResponse, string) {
		key := p + t.Name()
		o := &owned{keys: map[string]store.Revision{}}
		o.own(key, put(key))
		h := newHoldStore(st, o, max, prometheus.NewCounter(prometheus.CounterOpts{Name: "holds"}), quiet)
		ctx, cancel := context.WithCancel(t.Context())
		t.Cleanup(cancel)
		_, rev, err := st.List(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		return o, h, h.Watch(ctx, p, rev), key
	}

	t.Run("a delete it did not make is held until the record is back", func(t *testing.T) {
		o, h, ch, key := setup(t, time.Minute)
		del(key)
		if r, ok := next(ch, 500*time.Millisecond); ok {
			t.Fatalf("the removal went through: %+v", r)
		}
		if h.held().IsZero() || o.count() != 1 {
			t.Errorf("held since %v, re-registrations %d", h.held(), o.count())
		}
		other := p + "other"
		put(other) // someone else's change meanwhile: held with it
		o.own(key, put(key))
		r, ok := next(ch, 5*time.Second)
		if !ok {
			t.Fatal("not released when the record came back")
		}
		var types []store.EventType
		for _, ev := range r.Events {
			types = append(types, ev.Type)
		}
		if len(r.Events) != 3 || r.Events[0].Type != store.EventDelete || r.Events[2].Type != store.EventPut || r.Events[2].KV.Key != key {
			t.Errorf("released as %d events %v, want delete, put other, put again in one response", len(r.Events), types)
		}
		if !h.held().IsZero() {
			t.Error("still held after the release")
		}
	})

	t.Run("its own delete passes", func(t *testing.T) {
		o, _, ch, key := setup(t, time.Minute)
		o.own(key, 0) // the registrar disowns before it deletes
		del(key)
		if r, ok := next(ch, 5*time.Second); !ok || len(r.Events) != 1 || r.Events[0].Type != store.EventDelete {
			t.Errorf("own delete: %+v %v", r, ok)
		}
	})

	t.Run("released once the record is no longer owned", func(t *testing.T) {
		o, _, ch, key := setup(t, time.Minute)
		del(key)
		if _, ok := next(ch, 300*time.Millisecond); ok {
			t.Fatal("the removal went through")
		}
		o.own(key, 0) // its container went meanwhile
		if _, ok := next(ch, 5*time.Second); !ok {
			t.Error("not released after the record was disowned")
		}
	})

	t.Run("released after max", func(t *testing.T) {
		_, _, ch, key := setup(t, 500*time.Millisecond)
		del(key)
		if _, ok := next(ch, 5*time.Second); !ok {
			t.Error("not released after max")
		}
	})

	t.Run("a listing without an owned record waits for it", func(t *testing.T) {
		o, h, _, key := setup(t, time.Minute)
		del(key)
		go func() {
			time.Sleep(300 * time.Millisecond)
			put(key)
		}()
		kvs, _, err := h.List(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, kv := range kvs {
			found = found || kv.Key == key
		}
		if !found || o.count() == 0 {
			t.Errorf("listing %v (re-registrations %d): the owned record missing", kvs, o.count())
		}
	})
}
