package memstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/memstore"
	"github.com/berthd/berth/store/storetest"
)

func TestConformance(t *testing.T) {
	srv := memstore.NewServer()
	storetest.Run(t, storetest.Harness{
		Open:    func(*testing.T) store.Store { return srv.Open() },
		Compact: func(*testing.T, store.Store) { srv.Compact() },
		// The owner "dies": it stops renewing without revoking.
		Orphan: func(t *testing.T, key, value string, ttl time.Duration) {
			owner := srv.Open()
			if _, err := owner.Put(t.Context(), key, []byte(value), store.WithTTL(ttl)); err != nil {
				t.Fatal(err)
			}
			owner.Detach()
		},
		TTL:      200 * time.Millisecond,
		MaxValue: 1 << 20,
	})
}

// TestExpire: Expire ends a dead owner's lease at once, in one revision,
// and leaves a live owner's lease alone.
func TestExpire(t *testing.T) {
	srv := memstore.NewServer()
	live, dead, reader := srv.Open(), srv.Open(), srv.Open()
	ctx := t.Context()
	for _, w := range []struct {
		st  *memstore.Store
		key string
	}{{live, "/l/a"}, {dead, "/d/a"}, {dead, "/d/b"}} {
		if _, err := w.st.Put(ctx, w.key, []byte("x"), store.WithTTL(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	_, rev, _ := reader.List(ctx, "/")
	ch := reader.Watch(ctx, "/", rev)
	dead.Detach()
	if _, err := reader.Get(ctx, "/d/a"); err != nil {
		t.Fatalf("a detached owner's key went before its TTL: %v", err)
	}
	srv.Expire()
	resp := <-ch
	if len(resp.Events) != 2 || resp.Events[0].KV.Key != "/d/a" || resp.Events[1].KV.Key != "/d/b" ||
		resp.Events[0].Type != store.EventDelete || resp.Events[0].KV.ModRevision != resp.Events[1].KV.ModRevision {
		t.Fatalf("expiry events = %+v, want two deletes at one revision", resp.Events)
	}
	if _, err := reader.Get(ctx, "/l/a"); err != nil {
		t.Fatalf("a live owner's key went with Expire: %v", err)
	}
	if _, err := dead.Put(ctx, "/d/c", nil); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("put on a detached client: %v, want ErrClosed", err)
	}
}

// TestCompactKeepsLiveWatch: a watch that started before a Compact still
// gets every event, however far behind its reader is.
func TestCompactKeepsLiveWatch(t *testing.T) {
	srv := memstore.NewServer()
	st := srv.Open()
	ctx := t.Context()
	ch := st.Watch(ctx, "/k/", 0)
	for range 3 {
		if _, err := st.Put(ctx, "/k/a", []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	srv.Compact()
	var n int
	for n < 3 {
		resp := <-ch
		if resp.Err != nil {
			t.Fatalf("live watch ended by a compaction: %v", resp.Err)
		}
		n += len(resp.Events)
	}
}

func TestTxnRefusals(t *testing.T) {
	st := memstore.New(memstore.WithMaxValue(4))
	tests := []struct {
		name string
		ops  []store.Op
	}{
		{"value over the limit", []store.Op{store.Put("/a", []byte("12345"))}},
		{"two puts of one key", []store.Op{store.Put("/a", nil), store.Put("/a", nil)}},
		{"put under a deleted prefix", []store.Op{store.Delete("/d/", store.WithPrefix()), store.Put("/d/x", nil)}},
		{"empty key", []store.Op{store.Put("", nil)}},
		{"too many operations", make([]store.Op, memstore.MaxTxnOps+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := st.Server().Revision()
			if _, err := st.Txn(t.Context(), tc.ops...); err == nil {
				t.Fatal("txn succeeded")
			}
			if after := st.Server().Revision(); after != before {
				t.Fatalf("refused txn moved the revision from %d to %d", before, after)
			}
		})
	}
	// Two deletes of one key are fine, as on etcd.
	if _, err := st.Txn(t.Context(), store.Delete("/a"), store.Delete("/", store.WithPrefix())); err != nil {
		t.Fatal(err)
	}
}

// TestWatchFromFutureRevision: a watch after a revision not reached yet
// delivers only what comes after it, as etcd's does.
func TestWatchFromFutureRevision(t *testing.T) {
	st := memstore.New()
	ctx := t.Context()
	rev := st.Server().Revision()
	ch := st.Watch(ctx, "/f/", rev+2)
	for _, v := range []string{"1", "2", "3"} {
		if _, err := st.Put(ctx, "/f/k", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	resp := <-ch
	if len(resp.Events) != 1 || string(resp.Events[0].KV.Value) != "3" || resp.Events[0].KV.ModRevision != rev+3 {
		t.Fatalf("events %+v, want only the put at revision %d", resp.Events, rev+3)
	}
}
