package watcher

import (
	"fmt"
	"testing"

	"github.com/berthd/berth/store"
)

// BenchmarkSnapshotAfterChange is the mirror's share of a render at
// 10,000 keys: apply one changed key, then take the sorted snapshot.
func BenchmarkSnapshotAfterChange(b *testing.B) {
	m := NewMirror(nil, "/b/")
	kvs := make([]store.KV, 10000)
	for i := range kvs {
		kvs[i] = store.KV{Key: fmt.Sprintf("/b/svc%03d/h1/%06d", i%100, i), Value: []byte("v"), ModRevision: 1}
	}
	m.replace(kvs, 1)
	m.Snapshot()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		key := kvs[i%len(kvs)].Key
		m.apply(store.WatchResponse{Revision: store.Revision(i + 1), Events: []store.Event{{Type: store.EventPut, KV: store.KV{Key: key, Value: fmt.Appendf(nil, "%d", i), ModRevision: store.Revision(i + 1)}}}})
		m.Snapshot()
	}
}

// TestSnapshotStaysSorted checks the snapshot against the map after a
// mixed sequence of small and large changes.
func TestSnapshotStaysSorted(t *testing.T) {
	m := NewMirror(nil, "/t/")
	m.replace([]store.KV{{Key: "/t/b", Value: []byte("1")}, {Key: "/t/d", Value: []byte("1")}}, 1)
	m.Snapshot()
	steps := []store.WatchResponse{
		{Revision: 2, Events: []store.Event{{Type: store.EventPut, KV: store.KV{Key: "/t/a", Value: []byte("2"), ModRevision: 2}}}},
		{Revision: 3, Events: []store.Event{{Type: store.EventPut, KV: store.KV{Key: "/t/e", Value: []byte("3"), ModRevision: 3}}}},
		{Revision: 4, Events: []store.Event{{Type: store.EventDelete, KV: store.KV{Key: "/t/b", ModRevision: 4}}}},
		{Revision: 5, Events: []store.Event{{Type: store.EventPut, KV: store.KV{Key: "/t/d", Value: []byte("5"), ModRevision: 5}}}},
		{Revision: 6, Events: []store.Event{{Type: store.EventPut, KV: store.KV{Key: "/t/c", Value: []byte("6"), ModRevision: 6}}, {Type: store.EventDelete, KV: store.KV{Key: "/t/a", ModRevision: 6}}}},
		{Revision: 7, Events: []store.Event{{Type: store.EventDelete, KV: store.KV{Key: "/t/zz", ModRevision: 7}}}},
	}
	for _, resp := range steps {
		before := m.Snapshot()
		held := append([]store.KV(nil), before.KVs...)
		m.apply(resp)
		snap := m.Snapshot()
		if len(snap.KVs) != len(m.kvs) {
			t.Fatalf("revision %d: snapshot has %d keys, mirror %d", resp.Revision, len(snap.KVs), len(m.kvs))
		}
		for i, kv := range snap.KVs {
			if i > 0 && snap.KVs[i-1].Key >= kv.Key {
				t.Fatalf("revision %d: snapshot not sorted at %d", resp.Revision, i)
			}
			if got := m.kvs[kv.Key]; string(got.Value) != string(kv.Value) || got.ModRevision != kv.ModRevision {
				t.Fatalf("revision %d: %s is %+v in the snapshot, %+v in the mirror", resp.Revision, kv.Key, kv, got)
			}
		}
		// A snapshot someone holds never changes under them.
		for i := range held {
			if held[i].Key != before.KVs[i].Key || string(held[i].Value) != string(before.KVs[i].Value) {
				t.Fatalf("revision %d: a held snapshot changed at %d", resp.Revision, i)
			}
		}
	}
}
