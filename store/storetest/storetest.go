package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/store"
)

// Harness describes the backend under test.
type Harness struct {
	// Open returns a store on the backend under test. It may be called
	// several times in one test (a second client, concurrent writers); the
	// suite isolates tests by key prefix, so stores may share one server.
	// The suite closes what Open returns.
	Open func(t *testing.T) store.Store

	// ReadOnly backends are changed through Write instead of Put/Delete.
	ReadOnly bool
	// Write changes a read-only backend's data: puts then deletes.
	Write func(t *testing.T, puts map[string]string, deletes []string)

	// Coalesces is true when Watch may fold several changes of one key
	// between two responses into the last one (Consul, file).
	Coalesces bool

	// Compact makes history before the current revision unavailable; nil
	// when the backend has no such operation.
	Compact func(t *testing.T, s store.Store)

	// Orphan starts an owner process that puts key=value with ttl, and then
	// kills it with SIGKILL so it cannot clean up. nil for read-only stores.
	Orphan func(t *testing.T, key, value string, ttl time.Duration)

	// TTL is the TTL the suite uses; at least the backend's minimum.
	TTL time.Duration

	// MaxValue is the largest value the backend accepts (default 1 MiB).
	MaxValue int
	// OverLimit is a value size the backend refuses (default 2×MaxValue+1).
	OverLimit int
}

// Run runs the conformance suite against h.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is nil")
	}
	if h.ReadOnly && h.Write == nil {
		t.Fatal("storetest: a read-only Harness needs Write")
	}
	if h.MaxValue == 0 {
		h.MaxValue = 1 << 20
	}
	if h.OverLimit == 0 {
		h.OverLimit = 2*h.MaxValue + 1
	}
	s := &suite{h: h}
	tests := []struct {
		name     string
		fn       func(*testing.T, string)
		writable bool // needs Put/Delete/Txn on the store itself
	}{
		{"GetList", s.testGetList, false},
		{"WatchOrdering", s.testWatchOrdering, false},
		{"ListThenWatchMissesNothing", s.testListThenWatch, false},
		{"CancelClosesWatch", s.testCancelClosesWatch, false},
		{"LargeListing", s.testLargeListing, false},
		{"LargeValues", s.testLargeValues, false},
		{"OddKeys", s.testOddKeys, false},
		{"ReadOnlyRefusesWrites", s.testReadOnly, false},
		{"PutGetDelete", s.testPutGetDelete, true},
		{"DeletePrefix", s.testDeletePrefix, true},
		{"TxnAtomic", s.testTxnAtomic, true},
		{"ConcurrentWriters", s.testConcurrentWriters, true},
		{"CreateOnlyOnce", s.testCreate, true},
		{"TTLKeyOutlivesTTLWhileOwnerLives", s.testTTLKept, true},
		{"TTLKeyGoesWithClose", s.testTTLClose, true},
		{"TTLKeyGoesWhenOwnerDies", s.testTTLOrphan, true},
		{"CompactedWatch", s.testCompacted, true},
		{"WatchAfterClose", s.testWatchAfterClose, false},
	}
	for _, tc := range tests {
		if tc.writable && h.ReadOnly {
			continue // not applicable: the backend cannot write
		}
		if tc.name == "ReadOnlyRefusesWrites" && !h.ReadOnly {
			continue
		}
		if tc.name == "TTLKeyGoesWhenOwnerDies" && h.Orphan == nil {
			t.Fatal("storetest: a writable Harness needs Orphan")
		}
		if tc.name == "CompactedWatch" && h.Compact == nil {
			continue // not applicable: no way to compact this backend
		}
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, uniquePrefix(tc.name)) })
	}
}

type suite struct{ h Harness }

// uniquePrefix isolates one test's keys from every other test's.
func uniquePrefix(name string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "/storetest/" + name + "-" + hex.EncodeToString(b) + "/"
}

func (s *suite) open(t *testing.T) store.Store {
	t.Helper()
	st := s.h.Open(t)
	t.Cleanup(func() { st.Close() })
	return st
}

// write puts and deletes keys, through the store or, for read-only
// backends, through the harness.
func (s *suite) write(t *testing.T, st store.Store, puts map[string]string, deletes ...string) {
	t.Helper()
	if s.h.ReadOnly {
		s.h.Write(t, puts, deletes)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(puts)) {
		if _, err := st.Put(t.Context(), k, []byte(puts[k])); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	for _, k := range deletes {
		if _, err := st.Delete(t.Context(), k); err != nil {
			t.Fatalf("delete %q: %v", k, err)
		}
	}
}

// writeMany puts many keys efficiently (transactions of 64, the smallest
// per-transaction limit among the backends).
func (s *suite) writeMany(t *testing.T, st store.Store, puts map[string]string) {
	t.Helper()
	if s.h.ReadOnly {
		s.h.Write(t, puts, nil)
		return
	}
	keys := slices.Sorted(maps.Keys(puts))
	for len(keys) > 0 {
		n := min(len(keys), 64)
		ops := make([]store.Op, n)
		for i, k := range keys[:n] {
			ops[i] = store.Put(k, []byte(puts[k]))
		}
		if _, err := st.Txn(t.Context(), ops...); err != nil {
			t.Fatalf("txn of %d puts: %v", n, err)
		}
		keys = keys[n:]
	}
}

// list returns prefix's keys as a map, checking the listing is sorted.
func list(t *testing.T, st store.Store, prefix string) (map[string]string, store.Revision) {
	t.Helper()
	kvs, rev, err := st.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	m := make(map[string]string, len(kvs))
	for i, kv := range kvs {
		if i > 0 && kvs[i-1].Key >= kv.Key {
			t.Fatalf("list %q not sorted: %q before %q", prefix, kvs[i-1].Key, kv.Key)
		}
		if !strings.HasPrefix(kv.Key, prefix) {
			t.Fatalf("list %q returned %q", prefix, kv.Key)
		}
		if kv.ModRevision > rev {
			t.Fatalf("list %q at revision %d returned %q modified at %d", prefix, rev, kv.Key, kv.ModRevision)
		}
		m[kv.Key] = string(kv.Value)
	}
	return m, rev
}

// mirror applies watch responses to a map until cond holds or the timeout
// passes, failing on a final error or an out-of-order revision.
type mirror struct {
	state   map[string]string
	start   store.Revision // the revision the watch started after
	rev     store.Revision
	events  []store.Event
	lastErr error
}

func newMirror(state map[string]string, rev store.Revision) *mirror {
	if state == nil {
		state = map[string]string{}
	}
	return &mirror{state: state, start: rev, rev: rev}
}

func (m *mirror) apply(t *testing.T, resp store.WatchResponse) {
	t.Helper()
	for _, ev := range resp.Events {
		if ev.KV.ModRevision <= m.start {
			t.Fatalf("watch after revision %d replayed %s %q at revision %d", m.start, ev.Type, ev.KV.Key, ev.KV.ModRevision)
		}
		if n := len(m.events); n > 0 && ev.KV.ModRevision < m.events[n-1].KV.ModRevision {
			t.Fatalf("watch out of order: %s %q at %d after revision %d", ev.Type, ev.KV.Key, ev.KV.ModRevision, m.events[n-1].KV.ModRevision)
		}
		switch ev.Type {
		case store.EventPut:
			m.state[ev.KV.Key] = string(ev.KV.Value)
		case store.EventDelete:
			delete(m.state, ev.KV.Key)
		default:
			t.Fatalf("watch: unknown event type %v", ev.Type)
		}
		m.events = append(m.events, ev)
	}
	if resp.Revision > m.rev {
		m.rev = resp.Revision
	}
}

// until reads ch into m until cond(m) holds; it fails after timeout.
func (m *mirror) until(t *testing.T, ch <-chan store.WatchResponse, timeout time.Duration, cond func(*mirror) bool) {
	m.untilExact(t, ch, timeout, cond, false)
}

// untilExact is until that also checks, for backends that do not coalesce,
// that a response with events says it brings the watcher up to its last
// event (and not further: later events may still be on their way).
func (m *mirror) untilExact(t *testing.T, ch <-chan store.WatchResponse, timeout time.Duration, cond func(*mirror) bool, exact bool) {
	t.Helper()
	deadline := time.After(timeout)
	for !cond(m) {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed early (last error %v); state %v", m.lastErr, m.state)
			}
			if resp.Err != nil {
				m.lastErr = resp.Err
				t.Fatalf("watch ended: %v", resp.Err)
			}
			if n := len(resp.Events); exact && n > 0 && resp.Revision != resp.Events[n-1].KV.ModRevision {
				t.Fatalf("response with events up to revision %d says revision %d", resp.Events[n-1].KV.ModRevision, resp.Revision)
			}
			m.apply(t, resp)
		case <-deadline:
			t.Fatalf("watch: condition not met within %s; mirror has %d keys, %d events", timeout, len(m.state), len(m.events))
		}
	}
}

func equalState(want map[string]string) func(*mirror) bool {
	return func(m *mirror) bool { return maps.Equal(m.state, want) }
}

const watchTimeout = 20 * time.Second

func (s *suite) testGetList(t *testing.T, p string) {
	st := s.open(t)
	s.write(t, st, map[string]string{p + "b": "2", p + "a": "1", p + "c/d": "3", p + "c/e": "4"})
	got, _ := list(t, st, p)
	want := map[string]string{p + "a": "1", p + "b": "2", p + "c/d": "3", p + "c/e": "4"}
	if !maps.Equal(got, want) {
		t.Fatalf("list = %v, want %v", got, want)
	}
	sub, _ := list(t, st, p+"c/")
	if len(sub) != 2 {
		t.Fatalf("list of sub-prefix = %v, want 2 keys", sub)
	}
	kv, err := st.Get(t.Context(), p+"a")
	if err != nil || string(kv.Value) != "1" || kv.Key != p+"a" || kv.ModRevision == 0 {
		t.Fatalf("get = %+v, %v; want value 1 with a revision", kv, err)
	}
	if _, err := st.Get(t.Context(), p+"missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get of missing key: err = %v, want ErrNotFound", err)
	}
	if empty, _ := list(t, st, p+"nothing-here/"); len(empty) != 0 {
		t.Fatalf("list of empty prefix = %v", empty)
	}
}

func (s *suite) testWatchOrdering(t *testing.T, p string) {
	st := s.open(t)
	_, rev := list(t, st, p)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := st.Watch(ctx, p, rev)
	want := map[string]string{}
	const n = 20
	for i := range n {
		k := fmt.Sprintf("%sk%02d", p, i%7)
		v := fmt.Sprint(i)
		s.write(t, st, map[string]string{k: v})
		want[k] = v
		if i%5 == 4 {
			del := fmt.Sprintf("%sk%02d", p, (i+3)%7)
			if _, ok := want[del]; ok {
				s.write(t, st, nil, del)
				delete(want, del)
			}
		}
	}
	m := newMirror(nil, rev)
	m.untilExact(t, ch, watchTimeout, equalState(want), !s.h.Coalesces)
	if !s.h.Coalesces {
		// Every write is its own revision; none may be folded or reordered.
		for i := 1; i < len(m.events); i++ {
			if m.events[i].KV.ModRevision <= m.events[i-1].KV.ModRevision {
				t.Fatalf("events %d and %d share or reverse revisions: %d, %d", i-1, i, m.events[i-1].KV.ModRevision, m.events[i].KV.ModRevision)
			}
		}
		if puts := countType(m.events, store.EventPut); puts != n {
			t.Fatalf("saw %d put events, want %d", puts, n)
		}
	}
	// No event for keys outside the prefix.
	s.write(t, st, map[string]string{strings.TrimSuffix(p, "/") + "-sibling": "x", p + "last": "y"})
	want[p+"last"] = "y"
	m.until(t, ch, watchTimeout, equalState(want))
	for _, ev := range m.events {
		if !strings.HasPrefix(ev.KV.Key, p) {
			t.Fatalf("watch on %q delivered %q", p, ev.KV.Key)
		}
	}
}

func countType(evs []store.Event, typ store.EventType) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func (s *suite) testListThenWatch(t *testing.T, p string) {
	st := s.open(t)
	s.write(t, st, map[string]string{p + "before": "1"})
	state, rev := list(t, st, p)
	// Changes between the List and the Watch call must arrive.
	s.write(t, st, map[string]string{p + "between": "2"}, p+"before")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := st.Watch(ctx, p, rev)
	s.write(t, st, map[string]string{p + "after": "3"})
	m := newMirror(state, rev)
	m.until(t, ch, watchTimeout, equalState(map[string]string{p + "between": "2", p + "after": "3"}))

	if s.h.ReadOnly {
		return
	}
	// With a writer running throughout, a List+Watch mirror converges on
	// the final state.
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			k := fmt.Sprintf("%sw/%d", p, i%13)
			if i%3 == 2 {
				st.Delete(t.Context(), k)
			} else {
				st.Put(t.Context(), k, []byte(fmt.Sprint(i)))
			}
		}
	})
	time.Sleep(50 * time.Millisecond)
	state, rev = list(t, st, p+"w/")
	ch2 := st.Watch(ctx, p+"w/", rev)
	time.Sleep(200 * time.Millisecond)
	close(done)
	wg.Wait()
	final, _ := list(t, st, p+"w/")
	m2 := newMirror(state, rev)
	m2.until(t, ch2, watchTimeout, equalState(final))
}

func (s *suite) testCancelClosesWatch(t *testing.T, p string) {
	st := s.open(t)
	ctx, cancel := context.WithCancel(t.Context())
	ch := st.Watch(ctx, p, 0)
	cancel()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return
			}
			if resp.Err != nil {
				t.Fatalf("cancelled watch ended with an error: %v (want the channel closed without one)", resp.Err)
			}
		case <-timeout:
			t.Fatal("watch channel not closed within 10s of cancelling its context")
		}
	}
}

func (s *suite) testLargeListing(t *testing.T, p string) {
	st := s.open(t)
	const n = 10000
	puts := make(map[string]string, n)
	for i := range n {
		puts[fmt.Sprintf("%ssvc%02d/host/%05d", p, i%50, i)] = fmt.Sprintf(`{"id":%d}`, i)
	}
	s.writeMany(t, st, puts)
	start := time.Now()
	got, rev := list(t, st, p)
	t.Logf("listed %d keys in %s at revision %d", len(got), time.Since(start), rev)
	if !maps.Equal(got, puts) {
		t.Fatalf("listing of %d keys returned %d, or different values", n, len(got))
	}
}

func (s *suite) testLargeValues(t *testing.T, p string) {
	st := s.open(t)
	sizes := []int{0, 1, 4 << 10, 100 << 10, s.h.MaxValue}
	puts := map[string]string{}
	for _, n := range sizes {
		v := make([]byte, n)
		for i := range v {
			v[i] = 'a' + byte(i%26)
		}
		puts[fmt.Sprintf("%sv%07d", p, n)] = string(v)
	}
	_, rev := list(t, st, p)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := st.Watch(ctx, p, rev)
	s.write(t, st, puts)
	for k, v := range puts {
		kv, err := st.Get(t.Context(), k)
		if err != nil {
			t.Fatalf("get %d-byte value: %v", len(v), err)
		}
		if !bytes.Equal(kv.Value, []byte(v)) {
			t.Fatalf("get %q: %d bytes back, want %d", k, len(kv.Value), len(v))
		}
	}
	got, _ := list(t, st, p)
	if !maps.Equal(got, puts) {
		t.Fatal("list of large values differs")
	}
	newMirror(nil, rev).until(t, ch, watchTimeout, equalState(puts))
}

func (s *suite) testOddKeys(t *testing.T, p string) {
	st := s.open(t)
	puts := map[string]string{
		p + "with space/and more": "spaces",
		p + "ünïcødé/日本語/ключ":    "unicode",
		p + "punct/a-b_c.d:e@f+g": "punctuation",
		p + "emoji/🚢":             "ship",
	}
	_, rev := list(t, st, p)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := st.Watch(ctx, p, rev)
	s.write(t, st, puts)
	got, _ := list(t, st, p)
	if !maps.Equal(got, puts) {
		t.Fatalf("list = %v, want %v", got, puts)
	}
	for k, v := range puts {
		if kv, err := st.Get(t.Context(), k); err != nil || string(kv.Value) != v {
			t.Fatalf("get %q = %q, %v", k, kv.Value, err)
		}
	}
	newMirror(nil, rev).until(t, ch, watchTimeout, equalState(puts))
}

func (s *suite) testReadOnly(t *testing.T, p string) {
	st := s.open(t)
	if _, err := st.Put(t.Context(), p+"x", []byte("1")); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("put on read-only store: err = %v, want ErrReadOnly", err)
	}
	if _, err := st.Delete(t.Context(), p+"x"); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("delete on read-only store: err = %v, want ErrReadOnly", err)
	}
	if _, err := st.Txn(t.Context(), store.Put(p+"x", nil)); !errors.Is(err, store.ErrReadOnly) {
		t.Fatalf("txn on read-only store: err = %v, want ErrReadOnly", err)
	}
}

func (s *suite) testPutGetDelete(t *testing.T, p string) {
	st := s.open(t)
	r1, err := st.Put(t.Context(), p+"k", []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := st.Put(t.Context(), p+"k", []byte("v2"))
	if err != nil {
		t.Fatal(err)
	}
	if r2 <= r1 {
		t.Fatalf("second put's revision %d not after first's %d", r2, r1)
	}
	kv, err := st.Get(t.Context(), p+"k")
	if err != nil || string(kv.Value) != "v2" || kv.ModRevision != r2 {
		t.Fatalf("get = %+v, %v; want v2 at revision %d", kv, err, r2)
	}
	r3, err := st.Delete(t.Context(), p+"k")
	if err != nil || r3 <= r2 {
		t.Fatalf("delete: revision %d, %v (want > %d)", r3, err, r2)
	}
	if _, err := st.Get(t.Context(), p+"k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	if _, err := st.Delete(t.Context(), p+"never-there"); err != nil {
		t.Fatalf("delete of a missing key: %v, want no error", err)
	}
	// A second client sees the first's writes.
	other := s.open(t)
	if _, err := st.Put(t.Context(), p+"shared", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if kv, err := other.Get(t.Context(), p+"shared"); err != nil || string(kv.Value) != "x" {
		t.Fatalf("second client get = %+v, %v", kv, err)
	}
}

func (s *suite) testDeletePrefix(t *testing.T, p string) {
	st := s.open(t)
	s.write(t, st, map[string]string{p + "d/a": "1", p + "d/b/c": "2", p + "keep": "3", p + "dx": "4"})
	if _, err := st.Delete(t.Context(), p+"d/", store.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	got, _ := list(t, st, p)
	if want := map[string]string{p + "keep": "3", p + "dx": "4"}; !maps.Equal(got, want) {
		t.Fatalf("after prefix delete: %v, want %v", got, want)
	}
}

func (s *suite) testTxnAtomic(t *testing.T, p string) {
	st := s.open(t)
	s.write(t, st, map[string]string{p + "old/1": "x", p + "old/2": "y", p + "gone": "z"})
	_, rev := list(t, st, p)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := st.Watch(ctx, p, rev)

	trev, err := st.Txn(t.Context(),
		store.Put(p+"new/a", []byte("1")),
		store.Put(p+"new/b", []byte("2")),
		store.Delete(p+"old/", store.WithPrefix()),
		store.Delete(p+"gone"),
	)
	if err != nil {
		t.Fatalf("txn: %v", err)
	}
	got, lrev := list(t, st, p)
	want := map[string]string{p + "new/a": "1", p + "new/b": "2"}
	if !maps.Equal(got, want) {
		t.Fatalf("after txn: %v, want %v", got, want)
	}
	if lrev < trev {
		t.Fatalf("list revision %d before txn revision %d", lrev, trev)
	}
	m := newMirror(map[string]string{p + "old/1": "x", p + "old/2": "y", p + "gone": "z"}, rev)
	m.until(t, ch, watchTimeout, equalState(want))
	for _, ev := range m.events {
		if ev.KV.ModRevision != trev {
			t.Fatalf("txn event %s %q at revision %d, want all at %d", ev.Type, ev.KV.Key, ev.KV.ModRevision, trev)
		}
	}

	// A transaction that cannot apply as a whole applies nothing: here one
	// value is over the backend's limit.
	tooBig := make([]byte, s.h.OverLimit)
	_, err = st.Txn(t.Context(),
		store.Put(p+"partial/ok", []byte("1")),
		store.Put(p+"partial/too-big", tooBig),
		store.Delete(p+"new/a"),
	)
	if err == nil {
		t.Fatal("txn with an oversized value succeeded")
	}
	got, _ = list(t, st, p)
	if !maps.Equal(got, want) {
		t.Fatalf("failed txn changed the store: %v, want %v", got, want)
	}
}

// testCreate: a create applies only to a missing key; of concurrent
// creates of one key from several clients exactly one wins; a failed
// create applies nothing of its transaction; a TTL create goes with its
// owner, after which the key can be created again.
func (s *suite) testCreate(t *testing.T, p string) {
	st := s.open(t)
	ctx := t.Context()
	if _, err := st.Txn(ctx, store.Create(p+"k", []byte("1"))); err != nil {
		t.Fatalf("create of a missing key: %v", err)
	}
	_, err := st.Txn(ctx, store.Create(p+"k", []byte("2")), store.Put(p+"other", []byte("x")))
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("create of an existing key: err %v, want ErrExists", err)
	}
	if got, _ := list(t, st, p); !maps.Equal(got, map[string]string{p + "k": "1"}) {
		t.Fatalf("after a failed create: %v, want only the first value and no other write", got)
	}
	if _, err := st.Delete(ctx, p+"k"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Txn(ctx, store.Create(p+"k", []byte("3"))); err != nil {
		t.Fatalf("create after a delete: %v", err)
	}

	// Racing creates from separate clients: one winner.
	const racers = 6
	stores := make([]store.Store, racers)
	for i := range stores {
		stores[i] = s.open(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i, c := range stores {
		wg.Go(func() { _, errs[i] = c.Txn(ctx, store.Create(p+"race", []byte(fmt.Sprint(i)), store.WithTTL(s.h.TTL))) })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("creates %d and %d of one key both succeeded", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("racing create %d: %v, want nil or ErrExists", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no racing create succeeded")
	}
	kv, err := st.Get(ctx, p+"race")
	if err != nil || string(kv.Value) != fmt.Sprint(won) {
		t.Fatalf("race key = %q, %v; want the winner's %d", kv.Value, err, won)
	}
	// The winner's TTL key goes with it; then another can create it.
	if err := stores[won].Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, st, p+"race", 3*s.h.TTL+10*time.Second)
	next := (won + 1) % racers
	if _, err := stores[next].Txn(ctx, store.Create(p+"race", []byte("next"), store.WithTTL(s.h.TTL))); err != nil {
		t.Fatalf("create after the holder closed: %v", err)
	}
}

func (s *suite) testConcurrentWriters(t *testing.T, p string) {
	st := s.open(t)
	_, rev := list(t, st, p)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := st.Watch(ctx, p, rev)
	const writers, each = 6, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		ws := s.open(t)
		wg.Go(func() {
			for i := range each {
				k := fmt.Sprintf("%sshared/%d", p, i%10)
				if _, err := ws.Put(ctx, k, []byte(fmt.Sprintf("w%d-%d", w, i))); err != nil {
					errs <- err
					return
				}
				if _, err := ws.Put(ctx, fmt.Sprintf("%sown/%d/%d", p, w, i), []byte("x")); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent put: %v", err)
	}
	final, _ := list(t, st, p)
	if len(final) != 10+writers*each {
		t.Fatalf("after concurrent writes: %d keys, want %d", len(final), 10+writers*each)
	}
	m := newMirror(nil, rev)
	m.until(t, ch, watchTimeout, equalState(final))
	if !s.h.Coalesces {
		if len(m.events) != 2*writers*each {
			t.Fatalf("watch saw %d events for %d writes", len(m.events), 2*writers*each)
		}
		seen := map[store.Revision]bool{}
		for _, ev := range m.events {
			if seen[ev.KV.ModRevision] {
				t.Fatalf("two single-key writes share revision %d", ev.KV.ModRevision)
			}
			seen[ev.KV.ModRevision] = true
		}
	}
}

func (s *suite) testTTLKept(t *testing.T, p string) {
	t.Parallel() // slow by nature: they wait out TTLs
	st := s.open(t)
	if _, err := st.Put(t.Context(), p+"lease", []byte("alive"), store.WithTTL(s.h.TTL)); err != nil {
		t.Fatal(err)
	}
	// Well past the TTL, the key must still be there: the store renews it.
	time.Sleep(2*s.h.TTL + time.Second)
	if kv, err := st.Get(t.Context(), p+"lease"); err != nil || string(kv.Value) != "alive" {
		t.Fatalf("TTL key of a live owner after 2×TTL: %+v, %v", kv, err)
	}
	// Rewriting it without a TTL detaches it from the lease: it outlives
	// the owner's Close.
	if _, err := st.Put(t.Context(), p+"lease", []byte("plain")); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	other := s.open(t)
	time.Sleep(s.h.TTL + time.Second)
	if kv, err := other.Get(t.Context(), p+"lease"); err != nil || string(kv.Value) != "plain" {
		t.Fatalf("key rewritten without a TTL did not outlive its former owner: %+v, %v", kv, err)
	}
}

func (s *suite) testTTLClose(t *testing.T, p string) {
	t.Parallel() // slow by nature: they wait out TTLs
	owner := s.h.Open(t)
	if _, err := owner.Put(t.Context(), p+"owned", []byte("x"), store.WithTTL(s.h.TTL)); err != nil {
		owner.Close()
		t.Fatal(err)
	}
	if err := owner.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// Close revokes: the key goes now, not when its TTL runs out.
	st := s.open(t)
	waitGone(t, st, p+"owned", min(2*time.Second, s.h.TTL/2))
	if _, err := owner.Put(t.Context(), p+"after-close", nil); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("put after close: %v, want ErrClosed", err)
	}
}

func (s *suite) testTTLOrphan(t *testing.T, p string) {
	t.Parallel() // slow by nature: they wait out TTLs
	st := s.open(t)
	_, rev := list(t, st, p)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := st.Watch(ctx, p, rev)
	s.h.Orphan(t, p+"orphan", "owned-by-a-dead-process", s.h.TTL)
	if kv, err := st.Get(t.Context(), p+"orphan"); err != nil || string(kv.Value) != "owned-by-a-dead-process" {
		t.Fatalf("orphan's key before expiry: %+v, %v", kv, err)
	}
	// The owner is dead; the key goes within the TTL (Consul: up to 2×TTL).
	m := newMirror(nil, rev)
	m.until(t, ch, 3*s.h.TTL+15*time.Second, func(m *mirror) bool {
		return countType(m.events, store.EventDelete) > 0
	})
	if _, err := st.Get(t.Context(), p+"orphan"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("orphan's key after its delete event: %v", err)
	}
}

func waitGone(t *testing.T, st store.Store, key string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, err := st.Get(t.Context(), key)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("get %q: %v", key, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q still present after %s", key, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *suite) testCompacted(t *testing.T, p string) {
	st := s.open(t)
	_, rev := list(t, st, p)
	for i := range 5 {
		s.write(t, st, map[string]string{fmt.Sprintf("%sc%d", p, i): "x"})
	}
	s.h.Compact(t, st)
	ch := st.Watch(t.Context(), p, rev)
	timeout := time.After(watchTimeout)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatal("watch from a compacted revision closed without ErrCompacted")
			}
			if resp.Err != nil {
				if !errors.Is(resp.Err, store.ErrCompacted) {
					t.Fatalf("watch from a compacted revision: %v, want ErrCompacted", resp.Err)
				}
				if _, ok := <-ch; ok {
					t.Fatal("watch channel not closed after its final error")
				}
				return
			}
			if len(resp.Events) > 0 {
				t.Fatalf("watch from a compacted revision delivered events: %v", resp.Events)
			}
		case <-timeout:
			t.Fatal("no ErrCompacted from a watch on compacted history")
		}
	}
}

func (s *suite) testWatchAfterClose(t *testing.T, p string) {
	st := s.h.Open(t)
	ch := st.Watch(t.Context(), p, 0)
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed without ErrClosed after the store closed")
			}
			if resp.Err != nil {
				if !errors.Is(resp.Err, store.ErrClosed) {
					t.Fatalf("watch after close: %v, want ErrClosed", resp.Err)
				}
				return
			}
		case <-timeout:
			t.Fatal("watch still open 10s after the store closed")
		}
	}
}
