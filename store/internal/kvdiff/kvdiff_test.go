package kvdiff_test

import (
	"reflect"
	"testing"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/internal/kvdiff"
)

func kv(key, value string, rev store.Revision) store.KV {
	return store.KV{Key: key, Value: []byte(value), ModRevision: rev}
}

func put(key, value string, rev store.Revision) store.Event {
	return store.Event{Type: store.EventPut, KV: kv(key, value, rev)}
}

func del(key string, rev store.Revision) store.Event {
	return store.Event{Type: store.EventDelete, KV: store.KV{Key: key, ModRevision: rev}}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name     string
		old, cur []store.KV
		deleted  store.Revision
		want     []store.Event
	}{
		{name: "both empty", deleted: 5},
		{name: "equal", old: []store.KV{kv("/a", "1", 2), kv("/b", "2", 3)}, cur: []store.KV{kv("/a", "1", 2), kv("/b", "2", 3)}, deleted: 9},
		{
			name: "all new", cur: []store.KV{kv("/a", "1", 4), kv("/b", "2", 3)}, deleted: 9,
			want: []store.Event{put("/b", "2", 3), put("/a", "1", 4)},
		},
		{
			name: "all deleted", old: []store.KV{kv("/a", "1", 4), kv("/b", "2", 3)}, deleted: 9,
			want: []store.Event{del("/a", 9), del("/b", 9)},
		},
		{
			name: "modrevision changed, same value (rewrite)",
			old:  []store.KV{kv("/a", "1", 2)}, cur: []store.KV{kv("/a", "1", 7)}, deleted: 7,
			want: []store.Event{put("/a", "1", 7)},
		},
		{
			name: "value changed, same revision (file re-read)",
			old:  []store.KV{kv("/a", "1", 1)}, cur: []store.KV{kv("/a", "2", 1)}, deleted: 1,
			want: []store.Event{put("/a", "2", 1)},
		},
		{
			name:    "mixed, sorted by revision then key",
			old:     []store.KV{kv("/a", "1", 1), kv("/c", "3", 1), kv("/d", "4", 2), kv("/f", "6", 2)},
			cur:     []store.KV{kv("/a", "1", 1), kv("/b", "2", 8), kv("/d", "x", 6), kv("/e", "5", 6), kv("/g", "7", 7)},
			deleted: 8,
			want: []store.Event{
				put("/d", "x", 6), put("/e", "5", 6), put("/g", "7", 7),
				put("/b", "2", 8), del("/c", 8), del("/f", 8),
			},
		},
		{
			name:    "unicode and spaces sort bytewise",
			old:     []store.KV{kv("/k ü", "1", 1)},
			cur:     []store.KV{kv("/k z", "1", 3), kv("/k ü", "1", 1)},
			deleted: 3,
			want:    []store.Event{put("/k z", "1", 3)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := kvdiff.Diff(tt.old, tt.cur, tt.deleted)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Diff =\n  %v\nwant\n  %v", got, tt.want)
			}
		})
	}
}

func TestHistory(t *testing.T) {
	h := kvdiff.NewHistory(2)
	all := []store.KV{kv("/a/1", "x", 1), kv("/a/2", "y", 2), kv("/b/1", "z", 3)}
	h.Add("/", 3, all)
	h.Add("/a/", 2, all[:2])

	tests := []struct {
		name   string
		prefix string
		rev    store.Revision
		want   []store.KV
		ok     bool
	}{
		{name: "exact", prefix: "/a/", rev: 2, want: all[:2], ok: true},
		{name: "filtered from a shorter prefix", prefix: "/b/", rev: 3, want: all[2:], ok: true},
		{name: "filtered to nothing", prefix: "/c/", rev: 3, want: []store.KV{}, ok: true},
		{name: "unknown revision", prefix: "/a/", rev: 1},
		{name: "longer prefix does not contain a shorter one", prefix: "/", rev: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := h.Lookup(tt.prefix, tt.rev)
			if ok != tt.ok || (ok && !reflect.DeepEqual(got, tt.want)) {
				t.Errorf("Lookup(%q, %d) = %v, %v; want %v, %v", tt.prefix, tt.rev, got, ok, tt.want, tt.ok)
			}
		})
	}

	// A third snapshot evicts the oldest.
	h.Add("/b/", 4, all[2:])
	if _, ok := h.Lookup("/", 3); ok {
		t.Error("snapshot at revision 3 still remembered after eviction")
	}
	if _, ok := h.Lookup("/a/", 2); !ok {
		t.Error("snapshot at revision 2 forgotten too early")
	}
}
