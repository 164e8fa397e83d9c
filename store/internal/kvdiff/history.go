package kvdiff

import (
	"cmp"
	"slices"
	"strings"
	"sync"

	"github.com/berthd/berth/store"
)

// History remembers the last few snapshots of key ranges, so that a watch
// can resume from a revision a List (or an earlier watch) returned: the
// snapshot at that revision is the baseline the next one is diffed against.
// It is bounded; older snapshots are forgotten, and a watch from them must
// end with store.ErrCompacted. Snapshots are shared, never modified.
// The zero value is not usable; see NewHistory. Safe for concurrent use.
type History struct {
	mu    sync.Mutex
	max   int
	snaps []snapshot // oldest first
}

type snapshot struct {
	prefix string
	rev    store.Revision
	kvs    []store.KV
}

// NewHistory returns a History that keeps up to n snapshots.
func NewHistory(n int) *History {
	return &History{max: max(n, 1)}
}

// Add records kvs, sorted by key, as the content of prefix at rev. The slice
// is retained: the caller must not modify it afterwards.
func (h *History) Add(prefix string, rev store.Revision, kvs []store.KV) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, s := range h.snaps {
		if s.prefix == prefix && s.rev == rev {
			h.snaps = append(h.snaps[:i], h.snaps[i+1:]...)
			break
		}
	}
	if len(h.snaps) == h.max {
		h.snaps[0] = snapshot{}
		h.snaps = h.snaps[1:]
	}
	h.snaps = append(h.snaps, snapshot{prefix: prefix, rev: rev, kvs: kvs})
}

// Lookup returns the content of prefix at rev, from a snapshot of prefix or
// of a shorter prefix that contains it, newest first. ok is false when no
// such snapshot is remembered.
func (h *History) Lookup(prefix string, rev store.Revision) (kvs []store.KV, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.snaps) - 1; i >= 0; i-- {
		s := h.snaps[i]
		if s.rev != rev || !strings.HasPrefix(prefix, s.prefix) {
			continue
		}
		if s.prefix == prefix {
			return s.kvs, true
		}
		return Filter(s.kvs, prefix), true
	}
	return nil, false
}

// Filter returns the KVs of kvs (sorted by key) whose key starts with
// prefix, sharing kvs' backing array.
func Filter(kvs []store.KV, prefix string) []store.KV {
	lo, _ := slices.BinarySearchFunc(kvs, prefix, func(kv store.KV, p string) int { return cmp.Compare(kv.Key, p) })
	hi := lo
	for hi < len(kvs) && strings.HasPrefix(kvs[hi].Key, prefix) {
		hi++
	}
	return kvs[lo:hi:hi]
}
