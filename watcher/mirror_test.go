package watcher_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/watcher"
)

func embedded(t *testing.T) *etcd.Store {
	t.Helper()
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func snapshotMap(m *watcher.Mirror) map[string]string {
	snap := m.Snapshot()
	out := make(map[string]string, len(snap.KVs))
	for _, kv := range snap.KVs {
		out[kv.Key] = string(kv.Value)
	}
	return out
}

func storeMap(t *testing.T, st store.Store, prefix string) map[string]string {
	t.Helper()
	kvs, _, err := st.List(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = string(kv.Value)
	}
	return out
}

// converge waits until the mirror holds what the store holds.
func converge(t *testing.T, m *watcher.Mirror, st store.Store, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		want := storeMap(t, st, m.Prefix())
		if maps.Equal(snapshotMap(m), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirror did not converge within %s: mirror %d keys, store %d keys", within, len(snapshotMap(m)), len(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runMirror(t *testing.T, st store.Store, prefix string, opts ...watcher.MirrorOption) *watcher.Mirror {
	t.Helper()
	m := watcher.NewMirror(st, prefix, append([]watcher.MirrorOption{watcher.WithBackoff(20*time.Millisecond, 500*time.Millisecond)}, opts...)...)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-m.Synced():
	case <-time.After(20 * time.Second):
		t.Fatal("mirror not synced within 20s")
	}
	return m
}

func TestMirrorFollowsChanges(t *testing.T) {
	st := embedded(t)
	ctx := t.Context()
	st.Put(ctx, "/svc/a", []byte("1"))
	st.Put(ctx, "/other", []byte("x"))
	m := runMirror(t, st, "/svc/")
	notify, cancel := m.Subscribe()
	defer cancel()
	<-notify // the initial state
	if got := snapshotMap(m); !maps.Equal(got, map[string]string{"/svc/a": "1"}) {
		t.Fatalf("initial snapshot %v", got)
	}
	st.Put(ctx, "/svc/b", []byte("2"))
	st.Delete(ctx, "/svc/a")
	converge(t, m, st, 10*time.Second)
	select {
	case <-notify:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification after changes")
	}
	// Re-putting identical bytes is not a change: no notification, same
	// generation, but the new ModRevision shows.
	before := m.Snapshot()
	rev, _ := st.Put(ctx, "/svc/b", []byte("2"))
	deadline := time.Now().Add(10 * time.Second)
	for m.Health().Revision < rev && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-notify:
		t.Fatal("notified for a put of identical bytes")
	default:
	}
	after := m.Snapshot()
	if after.Generation != before.Generation || after.KVs[0].ModRevision != rev {
		t.Fatalf("identical put: generation %d→%d, mod revision %d (want %d)", before.Generation, after.Generation, after.KVs[0].ModRevision, rev)
	}
}

func TestMirrorRelistsAfterCompaction(t *testing.T) {
	st := embedded(t)
	ctx := t.Context()
	m := runMirror(t, st, "/c/", watcher.WithResync(0))
	for i := range 50 {
		st.Put(ctx, fmt.Sprintf("/c/%d", i), []byte("v"))
	}
	converge(t, m, st, 10*time.Second)
	// Compact everything, then change more keys: the watch keeps working or,
	// if it fell behind the compaction, the mirror re-lists; either way it
	// converges.
	resp, _ := st.Client().Get(ctx, "/", clientv3.WithCountOnly())
	if _, err := st.Client().Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		st.Delete(ctx, fmt.Sprintf("/c/%d", i))
	}
	st.Put(ctx, "/c/after", []byte("compaction"))
	converge(t, m, st, 10*time.Second)
}

// TestMirrorSurvivesStoreRestart kills the etcd process under a running
// mirror, changes data while it is back, and expects convergence.
func TestMirrorSurvivesStoreRestart(t *testing.T) {
	cluster := testenv.StartEtcd(t, 1)
	st, err := etcd.New(t.Context(), etcd.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	st.Put(ctx, "/r/a", []byte("1"))
	m := runMirror(t, st, "/r/", watcher.WithResync(0))
	cluster.Members[0].Kill()
	time.Sleep(500 * time.Millisecond)
	if err := cluster.Members[0].Start(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	st.Put(ctx, "/r/b", []byte("2"))
	st.Delete(ctx, "/r/a")
	converge(t, m, st, 30*time.Second)
	if h := m.Health(); !h.Synced {
		t.Fatalf("health after recovery: %+v", h)
	}
}

func BenchmarkMirrorApplyAt10k(b *testing.B) {
	st, err := etcd.Embedded(b.Context(), etcd.EmbeddedConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ops := make([]store.Op, 0, 1000)
	for i := range 10000 {
		ops = append(ops, store.Put(fmt.Sprintf("/bench/svc/%05d", i), []byte(`{"ip":"10.0.0.1","port":80}`)))
		if len(ops) == cap(ops) {
			st.Txn(b.Context(), ops...)
			ops = ops[:0]
		}
	}
	m := watcher.NewMirror(st, "/bench/")
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	go m.Run(ctx)
	<-m.Synced()
	notify, stop := m.Subscribe()
	defer stop()
	<-notify
	b.ResetTimer()
	for i := range b.N {
		st.Put(ctx, fmt.Sprintf("/bench/svc/%05d", i%10000), []byte(fmt.Sprint(i)))
		<-notify
	}
}
