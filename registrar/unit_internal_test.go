package registrar

// The fast tier (go test -run Unit): the registrar's logic on a memory
// store and a scripted runtime, no process, no root. The same behaviours
// run against the real Docker Engine and etcd in registrar_test.go.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/runtimetest"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/memstore"
)

// within bounds every wait for something the registrar does on its own:
// generous, as the machine may be loaded; nothing is asserted about how
// soon, only about what and in which order.
const within = 10 * time.Second

// unit is one registrar under test: a scripted runtime, a memory store
// server, the registrar's own client of it and the test's.
type unit struct {
	t    *testing.T
	rt   *runtimetest.Runtime
	srv  *memstore.Server
	st   store.Store     // the registrar's client (possibly wrapped)
	mine *memstore.Store // the registrar's client itself
	view *memstore.Store // the test's client, for assertions
	r    *Registrar
	cfg  Config
	done chan error
	stop context.CancelFunc
}

const (
	unitHost   = "h1"
	unitPrefix = "/unit"
)

func newUnit(t *testing.T, cfg Config) *unit {
	t.Helper()
	srv := memstore.NewServer()
	u := &unit{t: t, rt: runtimetest.New(), srv: srv, view: srv.Open()}
	u.mine = srv.Open()
	u.st = u.mine
	cfg.Host, cfg.Prefix = cmp.Or(cfg.Host, unitHost), unitPrefix
	cfg.TTL = cmp.Or(cfg.TTL, time.Minute)
	cfg.Resync = cmp.Or(cfg.Resync, time.Hour)
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	u.cfg = cfg
	t.Cleanup(func() {
		u.halt()
		u.mine.Close()
		u.view.Close()
		u.rt.Close()
	})
	return u
}

// start runs the registrar (on u.st) until halt or the end of the test.
func (u *unit) start(opts ...func(*Registrar)) *Registrar {
	u.t.Helper()
	r, err := New(u.st, u.rt, u.cfg)
	if err != nil {
		u.t.Fatal(err)
	}
	for _, o := range opts {
		o(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.r, u.stop, u.done = r, cancel, make(chan error, 1)
	go func() { u.done <- r.Run(ctx) }()
	return r
}

// halt stops the registrar and checks that Run returned nil.
func (u *unit) halt() {
	if u.stop == nil {
		return
	}
	u.stop()
	u.stop = nil
	select {
	case err := <-u.done:
		if err != nil {
			u.t.Errorf("Run: %v", err)
		}
	case <-time.After(within):
		u.t.Error("Run did not return after its context ended")
	}
}

// synced waits for the registrar's first reconcile.
func (u *unit) synced() {
	u.t.Helper()
	select {
	case <-u.r.Synced():
	case <-time.After(within):
		u.t.Fatal("the registrar never synced")
	}
}

func (u *unit) run(name string, mod func(*runtime.Spec)) runtime.Container {
	u.t.Helper()
	s := runtime.Spec{Name: name, Image: "example/" + name + ":1", Labels: map[string]string{labelService: name},
		Publish: []runtime.Port{{Port: 8080, Proto: "tcp"}}}
	if mod != nil {
		mod(&s)
	}
	c, err := u.rt.Run(context.Background(), s)
	if err != nil {
		u.t.Fatal(err)
	}
	return c
}

func (u *unit) key(service string, c runtime.Container) string {
	return records.ServiceKey(unitPrefix, service, unitHost, c.ID)
}

// await waits until cond holds of the store (re-checked on every change
// under the prefix) and fails the test with what after within.
func (u *unit) await(what string, cond func() bool) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	changes := u.view.Watch(ctx, records.Root(unitPrefix), 0) // live changes from now on
	for !cond() {
		select {
		case <-changes:
		case <-time.After(20 * time.Millisecond): // state outside the store (Owns, counts)
		case <-ctx.Done():
			u.t.Fatalf("%s: not within %s", what, within)
		}
	}
}

// instance returns the instance record at key (ok false: none).
func (u *unit) instance(key string) (records.Instance, bool) {
	kv, err := u.view.Get(context.Background(), key)
	if err != nil {
		return records.Instance{}, false
	}
	var in records.Instance
	if err := json.Unmarshal(kv.Value, &in); err != nil {
		u.t.Fatalf("%s: %v", key, err)
	}
	return in, true
}

// awaitInstance waits for the instance record at key to satisfy cond (nil:
// to exist) and returns it.
func (u *unit) awaitInstance(key string, cond func(records.Instance) bool) records.Instance {
	u.t.Helper()
	var in records.Instance
	u.await(key, func() bool {
		var ok bool
		in, ok = u.instance(key)
		return ok && (cond == nil || cond(in))
	})
	return in
}

func (u *unit) awaitGone(key string) {
	u.t.Helper()
	u.await(key+" removed", func() bool { _, ok := u.instance(key); return !ok })
}

// reconciles waits until the registrar has listed the runtime n more
// times: n-1 complete reconciles at least.
func (u *unit) reconciles(n int) {
	u.t.Helper()
	from := u.rt.Calls(runtimetest.OpList)
	u.await("reconciles", func() bool { return u.rt.Calls(runtimetest.OpList) >= from+n })
}

// history records every change under the prefix from now on, in order.
// Its readers first wait for it to catch up with the store.
type history struct {
	t   *testing.T
	srv *memstore.Server

	mu   sync.Mutex
	evs  []store.Event
	at   []time.Time // when each event was seen (not before it happened)
	seen store.Revision
}

func (u *unit) history() *history {
	h := &history{t: u.t, srv: u.srv}
	ctx, cancel := context.WithCancel(context.Background())
	u.t.Cleanup(cancel)
	_, rev, err := u.view.List(ctx, records.Root(unitPrefix))
	if err != nil {
		u.t.Fatal(err)
	}
	h.seen = rev
	ch := u.view.Watch(ctx, records.Root(unitPrefix), rev)
	go func() {
		for resp := range ch {
			h.mu.Lock()
			for _, ev := range resp.Events {
				h.evs = append(h.evs, ev)
				h.at = append(h.at, time.Now())
			}
			h.seen = resp.Revision
			h.mu.Unlock()
		}
	}()
	return h
}

// catchUp waits until the history has seen every change made so far (all
// of them are under the prefix).
func (h *history) catchUp() {
	h.t.Helper()
	rev := h.srv.Revision()
	deadline := time.Now().Add(within)
	for {
		h.mu.Lock()
		seen := h.seen
		h.mu.Unlock()
		if seen >= rev {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the history's watch is at revision %d, the store at %d", seen, rev)
		}
		time.Sleep(time.Millisecond)
	}
}

// of returns the events on key, with when they were seen.
func (h *history) of(key string) ([]store.Event, []time.Time) {
	h.catchUp()
	h.mu.Lock()
	defer h.mu.Unlock()
	var evs []store.Event
	var at []time.Time
	for i, ev := range h.evs {
		if ev.KV.Key == key {
			evs, at = append(evs, ev), append(at, h.at[i])
		}
	}
	return evs, at
}

// records returns the events on container and instance records (not the
// host record).
func (h *history) records() []store.Event {
	var out []store.Event
	for _, ev := range h.all() {
		if !strings.HasPrefix(ev.KV.Key, records.HostsPrefix(unitPrefix)) {
			out = append(out, ev)
		}
	}
	return out
}

func (h *history) all() []store.Event {
	h.catchUp()
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.evs)
}

func states(t *testing.T, evs []store.Event) []string {
	t.Helper()
	var out []string
	for _, ev := range evs {
		if ev.Type == store.EventDelete {
			out = append(out, "deleted")
			continue
		}
		var in records.Instance
		if err := json.Unmarshal(ev.KV.Value, &in); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(in.State))
	}
	return out
}

// TestUnitRegisters: the records of a running container, the service name's
// fallback, an ignored container, an invalid VIRTUAL_PORT.
func TestUnitRegisters(t *testing.T) {
	u := newUnit(t, Config{})
	u.start()
	web := u.run("web", func(s *runtime.Spec) {
		s.Env = []string{"VIRTUAL_HOST=web.localhost", "VIRTUAL_PORT=8080", "SERVICE_TAGS=a, b", "UNRELATED=x"}
	})
	plain := u.run("plain", func(s *runtime.Spec) { s.Labels = nil })
	bad := u.run("bad", func(s *runtime.Spec) { s.Env = []string{"VIRTUAL_HOST=bad.localhost", "VIRTUAL_PORT=eighty"} })
	ign := u.run("ignored", func(s *runtime.Spec) { s.Labels["berth.ignore"] = "true" })

	in := u.awaitInstance(u.key("web", web), nil)
	if in.IP != web.IP || in.IP == "" || in.Port != 8080 || in.Host != unitHost || in.State != records.StateRunning ||
		in.Env["VIRTUAL_HOST"] != "web.localhost" || in.Env["UNRELATED"] != "" || strings.Join(in.Tags, ",") != "a,b" {
		t.Errorf("instance record: %+v", in)
	}
	kv, err := u.view.Get(t.Context(), records.ContainerKey(unitPrefix, unitHost, web.ID))
	if err != nil {
		t.Fatal(err)
	}
	var rc records.Container
	if err := json.Unmarshal(kv.Value, &rc); err != nil || rc.IP != web.IP || !rc.State.Running || rc.Env["VIRTUAL_HOST"] != "web.localhost" {
		t.Errorf("container record: %+v %v", rc, err)
	}
	u.awaitInstance(u.key("plain", plain), nil) // the image's base name
	if in := u.awaitInstance(u.key("bad", bad), nil); in.Env["VIRTUAL_HOST"] != "" || in.Port != 8080 {
		t.Errorf("invalid VIRTUAL_PORT: %+v", in)
	}
	if _, ok := u.instance(records.HostKey(unitPrefix, unitHost)); !ok {
		t.Error("no host record")
	}
	kvs, _, err := u.view.List(t.Context(), records.Root(unitPrefix))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if strings.Contains(kv.Key, ign.ID) {
			t.Errorf("ignored container registered: %s", kv.Key)
		}
	}
	u.await("counted", func() bool { n, d := u.r.Counts(); return n == 3 && d == 0 })
}

// TestUnitDrain: a stopped container's records are written again as
// draining, removed no earlier than the drain period after the stop, and
// at once without a drain; a container started again during its drain is
// running again and not removed when the drain would have ended.
func TestUnitDrain(t *testing.T) {
	const drain = 300 * time.Millisecond
	t.Run("stop", func(t *testing.T) {
		u := newUnit(t, Config{Drain: drain})
		u.start()
		c := u.run("web", nil)
		key := u.key("web", c)
		u.awaitInstance(key, nil)
		h := u.history()
		stopped := time.Now()
		if err := u.rt.Stop(t.Context(), c.ID, time.Second); err != nil {
			t.Fatal(err)
		}
		u.awaitGone(key)
		evs, at := h.of(key)
		if got := states(t, evs); !slices.Equal(got, []string{"draining", "deleted"}) {
			t.Fatalf("writes of %s: %q, want draining, deleted", key, got)
		}
		if took := at[1].Sub(stopped); took < drain {
			t.Errorf("removed %s after the stop, before the drain of %s ended", took, drain)
		}
		u.awaitGone(records.ContainerKey(unitPrefix, unitHost, c.ID))
		u.await("uncounted", func() bool { n, d := u.r.Counts(); return n == 0 && d == 0 })
	})
	t.Run("no drain", func(t *testing.T) {
		u := newUnit(t, Config{})
		u.start()
		c := u.run("web", nil)
		key := u.key("web", c)
		u.awaitInstance(key, nil)
		h := u.history()
		if err := u.rt.Stop(t.Context(), c.ID, time.Second); err != nil {
			t.Fatal(err)
		}
		u.awaitGone(key)
		if evs, _ := h.of(key); !slices.Equal(states(t, evs), []string{"deleted"}) {
			t.Errorf("writes of %s: %q, want deleted at once", key, states(t, evs))
		}
	})
	t.Run("restarted while draining", func(t *testing.T) {
		u := newUnit(t, Config{Drain: drain})
		u.start()
		c := u.run("web", nil)
		key := u.key("web", c)
		u.awaitInstance(key, nil)
		if err := u.rt.Stop(t.Context(), c.ID, time.Second); err != nil {
			t.Fatal(err)
		}
		u.awaitInstance(key, func(in records.Instance) bool { return in.State == records.StateDraining })
		h := u.history()
		if err := u.rt.Start(c.ID); err != nil {
			t.Fatal(err)
		}
		u.awaitInstance(key, func(in records.Instance) bool { return in.State == records.StateRunning })
		// Past the old drain's end: the record stays.
		time.Sleep(2 * drain)
		if evs, _ := h.of(key); slices.Contains(states(t, evs), "deleted") {
			t.Errorf("removed when the old drain ended: %q", states(t, evs))
		}
		if _, d := u.r.Counts(); d != 0 {
			t.Errorf("%d draining after the restart", d)
		}
	})
}

// TestUnitDrainStartsAtStopSignal: the drain starts when the stop signal is
// sent, while the container still serves; a reload signal changes nothing.
func TestUnitDrainStartsAtStopSignal(t *testing.T) {
	u := newUnit(t, Config{Drain: time.Hour})
	u.start()
	c := u.run("web", nil)
	key := u.key("web", c)
	u.awaitInstance(key, nil)
	if err := u.rt.SetBehavior(c.ID, runtimetest.Behavior{IgnoreStop: true}); err != nil {
		t.Fatal(err)
	}
	h := u.history()
	if err := u.rt.Kill(c.ID, "SIGHUP"); err != nil {
		t.Fatal(err)
	}
	if err := u.rt.Kill(c.ID, "SIGTERM"); err != nil { // ignored: it runs on
		t.Fatal(err)
	}
	u.awaitInstance(key, func(in records.Instance) bool { return in.State == records.StateDraining })
	if live, err := u.rt.Inspect(t.Context(), c.ID); err != nil || !live.Running() {
		t.Fatalf("container %v, %v: the test wants it running", live.State, err)
	}
	if evs, _ := h.of(key); !slices.Equal(states(t, evs), []string{"draining"}) {
		t.Errorf("writes of %s: %q, want one: draining (SIGHUP changes nothing)", key, states(t, evs))
	}
}

// fakeClock is the registrar's stop-window clock, moved by the test.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestUnitStopWindow: a container that ignores its stop signal stays out of
// the store, reconcile after reconcile, until it has outlived the signal
// by the drain plus stopWindow (on the registrar's clock); then it is
// registered again.
func TestUnitStopWindow(t *testing.T) {
	const drain = 100 * time.Millisecond
	u := newUnit(t, Config{Drain: drain, Resync: 20 * time.Millisecond})
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	u.start(func(r *Registrar) { r.now = clock.now })
	c := u.run("stubborn", func(s *runtime.Spec) { s.StopSignal = "SIGQUIT" })
	key := u.key("stubborn", c)
	u.awaitInstance(key, nil)
	if err := u.rt.SetBehavior(c.ID, runtimetest.Behavior{IgnoreStop: true}); err != nil {
		t.Fatal(err)
	}
	if err := u.rt.Kill(c.ID, "SIGQUIT"); err != nil {
		t.Fatal(err)
	}
	u.awaitGone(key) // drained (real time), the process still runs
	clock.advance(drain + stopWindow - time.Second)
	u.reconciles(3)
	if _, ok := u.instance(key); ok {
		t.Fatalf("%s registered again within the stop window", key)
	}
	clock.advance(2 * time.Second)
	if in := u.awaitInstance(key, nil); in.State != records.StateRunning {
		t.Errorf("registered again as %q", in.State)
	}
}

// TestUnitHealthGated: a container with a health check is published only
// while healthy, and every write of its record says so.
func TestUnitHealthGated(t *testing.T) {
	u := newUnit(t, Config{})
	u.start()
	u.synced()
	h := u.history()
	c := u.run("slow", func(s *runtime.Spec) { s.Health = &runtime.HealthCheck{Cmd: []string{"true"}} })
	key := u.key("slow", c)
	if err := u.rt.SetHealth(c.ID, runtime.HealthHealthy); err != nil {
		t.Fatal(err)
	}
	u.awaitInstance(key, nil)
	if err := u.rt.SetHealth(c.ID, runtime.HealthUnhealthy); err != nil {
		t.Fatal(err)
	}
	u.awaitGone(key)
	evs, _ := h.of(key)
	if len(evs) != 2 || evs[1].Type != store.EventDelete {
		t.Fatalf("writes of %s: %q, want a put, then the delete", key, states(t, evs))
	}
	var in records.Instance
	if err := json.Unmarshal(evs[0].KV.Value, &in); err != nil || in.Health != records.HealthHealthy {
		t.Errorf("published with health %q (%v)", in.Health, err)
	}
}

// TestUnitReconcile: the first reconcile removes this host's records that
// match no container and leaves other hosts' alone; a resync puts back a
// record deleted behind the registrar's back and writes nothing when
// nothing changed; a container's operations are never split between
// transactions, and no transaction is larger than txnLimit.
func TestUnitReconcile(t *testing.T) {
	u := newUnit(t, Config{Resync: 20 * time.Millisecond})
	ghost := records.ServiceKey(unitPrefix, "ghost", unitHost, strings.Repeat("d", 64))
	other := records.ServiceKey(unitPrefix, "ghost", "another-host", strings.Repeat("e", 64))
	for _, k := range []string{ghost, other} {
		if _, err := u.view.Put(t.Context(), k, []byte(`{"id":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	var cs []runtime.Container
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z"} {
		cs = append(cs, u.run("svc-"+name, func(s *runtime.Spec) {
			s.Env = []string{"SERVICE_8080_NAME=alt-" + name} // three records each
		}))
	}
	h := u.history()
	u.start()
	u.synced()
	if _, ok := u.instance(ghost); ok {
		t.Errorf("%s (this host, no container) survived the first reconcile", ghost)
	}
	if _, ok := u.instance(other); !ok {
		t.Errorf("%s (another host's) was removed", other)
	}
	// Group what the first reconcile wrote by revision (one per transaction).
	byRev := map[store.Revision][]store.Event{}
	for _, ev := range h.all() {
		byRev[ev.KV.ModRevision] = append(byRev[ev.KV.ModRevision], ev)
	}
	if len(byRev) < 2 {
		t.Errorf("%d containers of 3 records in %d transaction(s): want them split", len(cs), len(byRev))
	}
	revOf := map[string]store.Revision{}
	for rev, evs := range byRev {
		if len(evs) > txnLimit {
			t.Errorf("transaction at %d: %d operations, over %d", rev, len(evs), txnLimit)
		}
		for _, ev := range evs {
			k, err := records.ParseKey(unitPrefix, ev.KV.Key)
			if err != nil || k.ID == "" {
				continue
			}
			if r, ok := revOf[k.ID]; ok && r != rev {
				t.Errorf("container %.12s written in two transactions (%d, %d)", k.ID, r, rev)
			}
			revOf[k.ID] = rev
		}
	}
	for _, c := range cs {
		if _, ok := revOf[c.ID]; !ok {
			t.Errorf("container %s not written by the first reconcile", c.Name)
		}
	}

	// Nothing changes: resyncs write no record (the host record is put
	// again each time).
	h = u.history()
	u.reconciles(3)
	if evs := h.records(); len(evs) != 0 {
		t.Errorf("idle reconciles wrote %d record events: %v", len(evs), evs)
	}
	// Deleted behind its back: back at the next resync, alone.
	key := u.key("svc-a", cs[0])
	h = u.history()
	deleted, err := u.view.Delete(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	u.await("the repair", func() bool {
		kv, err := u.view.Get(t.Context(), key)
		return err == nil && kv.ModRevision > deleted
	})
	u.reconciles(2)
	if evs := h.records(); len(evs) != 2 || evs[0].KV.Key != key || evs[1].KV.Key != key || evs[1].Type != store.EventPut {
		t.Errorf("record events %v; want the delete of %s, then its put alone", evs, key)
	}
	// A change the events did not carry (Update emits one; the registrar
	// writes it at once, or at the latest at the next resync).
	if err := u.rt.Update(cs[1].ID, func(c *runtime.Container) { c.Env = append(c.Env, "SERVICE_TAGS=new") }); err != nil {
		t.Fatal(err)
	}
	u.awaitInstance(u.key("svc-b", cs[1]), func(in records.Instance) bool { return slices.Equal(in.Tags, []string{"new"}) })
}

// TestUnitEventStreamEnds: when the runtime's event stream ends (a lost
// engine connection), the registrar subscribes again and reconciles, so
// that a container started meanwhile is registered and one removed
// meanwhile is not left behind.
func TestUnitEventStreamEnds(t *testing.T) {
	u := newUnit(t, Config{})
	u.start()
	gone := u.run("gone", nil)
	u.awaitInstance(u.key("gone", gone), nil)
	subscribed := u.rt.Calls(runtimetest.OpEvents)
	u.rt.Fail(runtimetest.OpEvents, errors.New("engine unreachable"))
	u.rt.EndEvents(errors.New("connection reset"))
	u.await("resubscribing", func() bool { return u.rt.Calls(runtimetest.OpEvents) > subscribed })
	// Unseen: the stream is down.
	late := u.run("late", nil)
	if err := u.rt.Remove(t.Context(), gone.ID, runtime.Force()); err != nil {
		t.Fatal(err)
	}
	u.rt.Fail(runtimetest.OpEvents, nil)
	u.awaitInstance(u.key("late", late), nil)
	u.awaitGone(u.key("gone", gone))
}

// TestUnitRetriesAtStart: a runtime that cannot be listed at start holds
// back Synced; the registrar retries and syncs once it can.
func TestUnitRetriesAtStart(t *testing.T) {
	u := newUnit(t, Config{})
	c := u.run("web", nil)
	u.rt.Fail(runtimetest.OpList, errors.New("engine starting"))
	u.start()
	u.await("a retry", func() bool { return u.rt.Calls(runtimetest.OpList) >= 2 })
	select {
	case <-u.r.Synced():
		t.Fatal("synced although the runtime could not be listed")
	default:
	}
	u.rt.Fail(runtimetest.OpList, nil)
	u.synced()
	u.awaitInstance(u.key("web", c), nil)
}

// flaky is a store whose writes fail while failing is set: the fault of a
// store that is unreachable for a while.
type flaky struct {
	store.Store
	failing atomic.Bool
	txns    atomic.Int64
}

func (f *flaky) Txn(ctx context.Context, ops ...store.Op) (store.Revision, error) {
	f.txns.Add(1)
	if f.failing.Load() {
		return 0, errors.New("flaky: store unreachable")
	}
	return f.Store.Txn(ctx, ops...)
}

// TestUnitLeaseLost: the registrar owns what it wrote (the daemon tells a
// lost lease from its own deletes by it); Reregister writes back records
// the store dropped behind its back, retrying while the store fails, and
// reports itself pending until done; a record it removes itself is no
// longer owned.
func TestUnitLeaseLost(t *testing.T) {
	u := newUnit(t, Config{})
	f := &flaky{Store: u.mine}
	u.st = f
	r := u.start()
	c := u.run("owned", nil)
	key := u.key("owned", c)
	u.awaitInstance(key, nil)
	kv, err := u.view.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	u.await("owned", func() bool { _, ok := r.Owns(key); return ok })
	if rev, _ := r.Owns(key); rev != kv.ModRevision {
		t.Errorf("Owns(%s) at %d; written at %d", key, rev, kv.ModRevision)
	}
	if _, ok := r.OwnedUnder(records.ServicesPrefix(unitPrefix))[key]; !ok {
		t.Errorf("OwnedUnder lacks %s", key)
	}
	if _, ok := r.Owns(records.HostKey(unitPrefix, unitHost)); !ok {
		t.Error("the host record is not owned")
	}

	// The store drops every record (a revoked lease) and cannot be written
	// for a while: Reregister is pending, retried, and then done.
	if _, err := u.view.Delete(t.Context(), records.Root(unitPrefix), store.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	f.failing.Store(true)
	tried := f.txns.Load()
	r.Reregister()
	if r.Reregistering().IsZero() {
		t.Error("Reregistering reports nothing pending right after Reregister")
	}
	u.await("two failed attempts", func() bool { return f.txns.Load() >= tried+2 })
	if r.Reregistering().IsZero() {
		t.Error("Reregistering cleared while the store refuses every write")
	}
	if _, ok := r.Owns(key); !ok {
		t.Error("a record the store dropped is no longer owned")
	}
	f.failing.Store(false)
	u.awaitInstance(key, nil)
	u.await("re-registration done", func() bool { return r.Reregistering().IsZero() })
	if _, ok := u.instance(records.HostKey(unitPrefix, unitHost)); !ok {
		t.Error("the host record was not written again")
	}

	// Its own delete: no longer owned.
	if err := u.rt.Stop(t.Context(), c.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	u.awaitGone(key)
	u.await("disowned", func() bool { _, ok := r.Owns(key); return !ok })
}

// TestUnitRestartTakesOver: a registrar that dies without cleaning up
// leaves its records to its lease; a new one, started before the TTL runs
// out, binds them to its own lease (they outlive the old one). Without a
// successor they expire with the lease and the container runs on.
func TestUnitRestartTakesOver(t *testing.T) {
	u := newUnit(t, Config{})
	u.start()
	c := u.run("survivor", nil)
	key := u.key("survivor", c)
	u.awaitInstance(key, nil)
	u.halt()
	if err := u.mine.Detach(); err != nil { // a crash: nothing revoked
		t.Fatal(err)
	}
	before, err := u.view.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	u.mine = u.srv.Open()
	u.st = u.mine
	u.start()
	u.synced()
	if kv, err := u.view.Get(t.Context(), key); err != nil || kv.ModRevision <= before.ModRevision {
		t.Fatalf("%s not rewritten by the new registrar: %+v %v", key, kv, err)
	}
	u.srv.Expire() // the dead registrar's lease runs out
	if _, ok := u.instance(key); !ok {
		t.Fatalf("%s expired with the dead registrar's lease", key)
	}

	// The successor dies too, and none follows.
	u.halt()
	if err := u.mine.Detach(); err != nil {
		t.Fatal(err)
	}
	u.srv.Expire()
	for _, k := range []string{key, records.HostKey(unitPrefix, unitHost), records.ContainerKey(unitPrefix, unitHost, c.ID)} {
		if _, err := u.view.Get(t.Context(), k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after the lease expired: %v", k, err)
		}
	}
	if live, err := u.rt.Inspect(t.Context(), c.ID); err != nil || !live.Running() {
		t.Errorf("container after the registrar's death: %v %v", live.State, err)
	}
}

// TestUnitInvalidFieldsReported: hostile metadata in a container's
// environment and labels: each bad value is left out of both records and
// reported on the instance record, the good ones stay, no key escapes the
// schema, the registrar counts what it left out, and a good container
// started afterwards is registered as usual.
func TestUnitInvalidFieldsReported(t *testing.T) {
	u := newUnit(t, Config{})
	u.start()
	bad := u.run("hostile", func(s *runtime.Spec) {
		s.Image = "berth-test-whoami:1"
		s.Labels[labelService] = HostileService
		s.Env = HostileEnv()
	})
	in := u.awaitInstance(u.key("berth-test-whoami", bad), nil)
	kv, err := u.view.Get(t.Context(), records.ContainerKey(unitPrefix, unitHost, bad.ID))
	if err != nil {
		t.Fatal(err)
	}
	var rc records.Container
	if err := json.Unmarshal(kv.Value, &rc); err != nil {
		t.Fatal(err)
	}
	want := CheckHostile(t, in, rc, bad.IP)
	u.await("counted", func() bool { return u.r.InvalidFields() == want })

	late := u.run("late", func(s *runtime.Spec) { s.Env = []string{"VIRTUAL_HOST=late.localhost"} })
	if in := u.awaitInstance(u.key("late", late), nil); in.Env["VIRTUAL_HOST"] != "late.localhost" || len(in.Invalid) != 0 {
		t.Errorf("good container: %+v", in)
	}
	kvs, _, err := u.view.List(t.Context(), records.Root(unitPrefix))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		k, err := records.ParseKey(unitPrefix, kv.Key)
		if err != nil || strings.Contains(kv.Key, "evil") || (k.Kind == records.KindService && records.CheckService(k.Service) != nil) {
			t.Errorf("key %q outside the schema (%v)", kv.Key, err)
		}
	}
	// Gone with its container: no longer counted.
	if err := u.rt.Remove(t.Context(), bad.ID, runtime.Force()); err != nil {
		t.Fatal(err)
	}
	u.await("uncounted", func() bool { return u.r.InvalidFields() == 0 })
}

// HostileService and HostileEnv are a hostile container's berth.service
// label and environment (the Docker test, hostile_test.go, runs them too).
const HostileService = "../../hosts/evil"

func HostileEnv() []string {
	return []string{
		"VIRTUAL_HOST=good.localhost,bad;host,a.localhost good.localhost,x.localhost\n}\nserver {",
		"VIRTUAL_PATH=/x;include /etc/shadow",
		"VIRTUAL_PROTO=http;",
		"SERVICE_NAME=a}b",
		"SERVICE_8080_NAME=../../hosts/evil",
		"SERVICE_TAGS=ok," + strings.Repeat("t", 100<<10),
	}
}

// CheckHostile checks the records of the hostile container (port 8080,
// address ip): every bad value reported on the instance record, in order,
// and left out of both records; the good ones kept. It returns how many
// values were reported.
func CheckHostile(t *testing.T, in records.Instance, rc records.Container, ip string) int {
	t.Helper()
	var fields []string
	for _, fe := range in.Invalid {
		fields = append(fields, fe.Field)
		if fe.Reason == "" || len(fe.Value) > records.MaxReportedValue+20 {
			t.Errorf("report %+v", fe)
		}
	}
	want := []string{"VIRTUAL_HOST", "VIRTUAL_HOST", "VIRTUAL_HOST", "VIRTUAL_PATH", "VIRTUAL_PROTO", "SERVICE_8080_NAME", "SERVICE_TAGS", "label berth.service", "SERVICE_NAME"}
	if !slices.Equal(fields, want) {
		t.Errorf("reported %q, want %q", fields, want)
	}
	if in.Env["VIRTUAL_HOST"] != "good.localhost" || hasAnyKey(in.Env, "VIRTUAL_PATH", "VIRTUAL_PROTO", "SERVICE_NAME", "SERVICE_8080_NAME") ||
		in.Labels[labelService] != "" || strings.Join(in.Tags, ",") != "ok" || in.Port != 8080 || in.IP != ip {
		t.Errorf("instance record: %+v", in)
	}
	if rc.Env["VIRTUAL_HOST"] != "good.localhost" || hasAnyKey(rc.Env, "VIRTUAL_PATH", "VIRTUAL_PROTO", "SERVICE_8080_NAME") || rc.Labels[labelService] != "" {
		t.Errorf("container record (docker-gen's view) keeps a bad value: env %q labels %q", rc.Env, rc.Labels)
	}
	return len(want)
}

func hasAnyKey(m map[string]string, keys ...string) bool {
	return slices.ContainsFunc(keys, func(k string) bool { return hasKey(m, k) })
}
