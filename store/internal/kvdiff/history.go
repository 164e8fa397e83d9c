package kvdiff

import (
	"bytes"
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
//
// Only the newest snapshot of each prefix is kept whole; an older one is
// kept as the keys that differ from the next newer one, so that n
// snapshots of a large prefix cost one copy plus the changes between them,
// not n copies. Looking one up rebuilds it (O(size + changes)).
// The zero value is not usable; see NewHistory. Safe for concurrent use.
type History struct {
	mu     sync.Mutex
	max    int
	n      int    // snapshots remembered, over every prefix
	seq    uint64 // order of Add calls
	chains map[string]*chain
}

// chain is the remembered snapshots of one prefix.
type chain struct {
	kvs     []store.KV // the newest snapshot, whole
	entries []entry    // oldest first; the last one is kvs
}

type entry struct {
	rev store.Revision
	seq uint64
	// undo turns the next newer snapshot into this one: the keys whose
	// KV differs, sorted by key (nil for the newest).
	undo []change
}

// change is one key of an older snapshot relative to a newer one: its KV
// then, or absent then.
type change struct {
	key     string
	kv      store.KV
	present bool
}

// NewHistory returns a History that keeps up to n snapshots.
func NewHistory(n int) *History {
	return &History{max: max(n, 1), chains: map[string]*chain{}}
}

// Add records kvs, sorted by key, as the content of prefix at rev. The slice
// is retained: the caller must not modify it afterwards.
func (h *History) Add(prefix string, rev store.Revision, kvs []store.KV) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	c := h.chains[prefix]
	if c != nil {
		// A revision recorded again replaces the record; the snapshots of
		// this prefix before it are forgotten with it (a watch from them
		// re-lists), which keeps every kept one exact.
		for i, e := range c.entries {
			if e.rev == rev {
				h.n -= i + 1
				c.entries = c.entries[i+1:]
				break
			}
		}
		if len(c.entries) == 0 {
			c = nil
		}
	}
	if c == nil {
		c = &chain{}
		h.chains[prefix] = c
	} else {
		c.entries[len(c.entries)-1].undo = changes(kvs, c.kvs)
	}
	c.kvs = kvs
	c.entries = append(c.entries, entry{rev: rev, seq: h.seq})
	h.n++
	for h.n > h.max {
		h.evictOldest()
	}
}

// evictOldest forgets the snapshot added first.
func (h *History) evictOldest() {
	var oldest *chain
	var oldPrefix string
	for p, c := range h.chains {
		if oldest == nil || c.entries[0].seq < oldest.entries[0].seq {
			oldest, oldPrefix = c, p
		}
	}
	oldest.entries[0] = entry{}
	oldest.entries = oldest.entries[1:]
	h.n--
	if len(oldest.entries) == 0 {
		delete(h.chains, oldPrefix)
	}
}

// changes returns what turns snapshot cur back into old: the keys whose KV
// differs, with old's KV or absent.
func changes(cur, old []store.KV) []change {
	var out []change
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(old) && old[i].Key < cur[j].Key):
			out = append(out, change{key: old[i].Key, kv: old[i], present: true})
			i++
		case i == len(old) || cur[j].Key < old[i].Key:
			out = append(out, change{key: cur[j].Key})
			j++
		default:
			if old[i].ModRevision != cur[j].ModRevision || !bytes.Equal(old[i].Value, cur[j].Value) {
				out = append(out, change{key: old[i].Key, kv: old[i], present: true})
			}
			i++
			j++
		}
	}
	return out
}

// undo applies u to kvs, returning a new slice.
func undo(kvs []store.KV, u []change) []store.KV {
	out := make([]store.KV, 0, len(kvs)+len(u))
	i := 0
	for _, ch := range u {
		for i < len(kvs) && kvs[i].Key < ch.key {
			out = append(out, kvs[i])
			i++
		}
		if i < len(kvs) && kvs[i].Key == ch.key {
			i++
		}
		if ch.present {
			out = append(out, ch.kv)
		}
	}
	return append(out, kvs[i:]...)
}

// Lookup returns the content of prefix at rev, from a snapshot of prefix or
// of a shorter prefix that contains it, newest first. ok is false when no
// such snapshot is remembered.
func (h *History) Lookup(prefix string, rev store.Revision) (kvs []store.KV, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var (
		best    *chain
		bestP   string
		bestAt  int
		bestSeq uint64
	)
	for p, c := range h.chains {
		if !strings.HasPrefix(prefix, p) {
			continue
		}
		for i, e := range c.entries {
			if e.rev == rev && (best == nil || e.seq > bestSeq) {
				best, bestP, bestAt, bestSeq = c, p, i, e.seq
			}
		}
	}
	if best == nil {
		return nil, false
	}
	kvs = best.kvs
	for i := len(best.entries) - 2; i >= bestAt; i-- {
		kvs = undo(kvs, best.entries[i].undo)
	}
	if bestP == prefix {
		return kvs, true
	}
	return Filter(kvs, prefix), true
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
