package kvdiff_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
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

// TestHistoryMatchesWholeSnapshots adds random snapshots of a few prefixes
// and compares every Lookup with a history that keeps whole copies.
func TestHistoryMatchesWholeSnapshots(t *testing.T) {
	type snap struct {
		prefix string
		rev    store.Revision
		kvs    []store.KV
	}
	prefixes := []string{"/", "/a/", "/b/"}
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 1))
		h := kvdiff.NewHistory(8)
		var model []snap // oldest first, at most 8
		content := map[string]store.KV{}
		rev := store.Revision(1)
		for step := range 120 {
			rev++
			for range 1 + rng.IntN(3) {
				k := fmt.Sprintf("/%c/%d", "ab"[rng.IntN(2)], rng.IntN(12))
				if rng.IntN(3) == 0 {
					delete(content, k)
				} else {
					content[k] = kv(k, fmt.Sprint(rng.IntN(4)), rev)
				}
			}
			p := prefixes[rng.IntN(len(prefixes))]
			kvs := []store.KV{}
			for _, k := range slices.Sorted(maps.Keys(content)) {
				if strings.HasPrefix(k, p) {
					kvs = append(kvs, content[k])
				}
			}
			h.Add(p, rev, kvs)
			if model = append(model, snap{p, rev, kvs}); len(model) > 8 {
				model = model[1:]
			}
			for _, q := range append(prefixes, "/a/1") {
				for r := rev - 10; r <= rev; r++ {
					var want []store.KV
					found := false
					for i := len(model) - 1; i >= 0; i-- {
						if m := model[i]; m.rev == r && strings.HasPrefix(q, m.prefix) {
							want, found = kvdiff.Filter(m.kvs, q), true
							break
						}
					}
					got, ok := h.Lookup(q, r)
					if ok != found || !slices.EqualFunc(got, want, kvEqual) {
						t.Fatalf("seed %d step %d: Lookup(%q, %d) = %v, %v; want %v, %v", seed, step, q, r, got, ok, want, found)
					}
				}
			}
		}
	}
}

// TestHistoryRecordedAgain: a revision recorded again is the newest, and
// the snapshots of its prefix before it are forgotten, never wrong.
func TestHistoryRecordedAgain(t *testing.T) {
	h := kvdiff.NewHistory(8)
	s1 := []store.KV{kv("/a", "1", 1)}
	s2 := []store.KV{kv("/a", "2", 2)}
	s3 := []store.KV{kv("/a", "2", 2), kv("/b", "3", 3)}
	h.Add("/", 1, s1)
	h.Add("/", 2, s2)
	h.Add("/", 3, s3)
	h.Add("/", 2, s2)
	if got, ok := h.Lookup("/", 2); !ok || !slices.EqualFunc(got, s2, kvEqual) {
		t.Errorf("Lookup(2) = %v, %v", got, ok)
	}
	if got, ok := h.Lookup("/", 3); !ok || !slices.EqualFunc(got, s3, kvEqual) {
		t.Errorf("Lookup(3) = %v, %v", got, ok)
	}
	if got, ok := h.Lookup("/", 1); ok {
		t.Errorf("Lookup(1) = %v, still remembered", got)
	}
}

func kvEqual(a, b store.KV) bool {
	return a.Key == b.Key && a.ModRevision == b.ModRevision && string(a.Value) == string(b.Value)
}
