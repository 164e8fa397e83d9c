package registrar

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berthd/berth/internal/backoff"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
)

// Defaults of a Config.
const (
	DefaultTTL    = 15 * time.Second
	DefaultResync = time.Minute
	// txnLimit bounds the operations of one transaction, below the
	// smallest backend limit (Consul: 64 by default; etcd: 128). A
	// container's operations are never split across transactions.
	txnLimit = 64
	// writeTimeout bounds one container's transaction.
	writeTimeout = 10 * time.Second
)

// Config configures a Registrar.
type Config struct {
	Host    string        // this host's name in the key schema (default: the hostname)
	Prefix  string        // key prefix (default records.DefaultPrefix)
	TTL     time.Duration // lease of every record (default DefaultTTL)
	Drain   time.Duration // how long a stopped container stays "draining" (0: removed at once)
	Resync  time.Duration // reconcile period (default DefaultResync)
	Version string        // berth's version, for the host record
	// Advertise is this host's address as other hosts reach it (an IP, or
	// ""): an instance whose port is published records it and the host
	// port instead of the container's address (see recordsAt).
	Advertise string
	// Network is the network whose address a container on several is
	// recorded at, unless its label berth.network names another (see
	// NetworkLabel; default: the first by name).
	Network string
	// Sinks are catalogs that get this host's registrations too (see
	// Sink); NoRecords leaves the containers' records out of the store
	// (the host record stays), for a host registered in a catalog only.
	Sinks     []Sink
	NoRecords bool
	Logger    *slog.Logger
}

// Registrar registers one host's containers.
type Registrar struct {
	st  store.Store
	rt  runtime.Runtime
	cfg Config
	log *slog.Logger

	// Owned by Run's goroutine.
	written  map[string]map[string][]byte // container id → keys and values it has in the store
	draining map[string]*drainTimer       // container id → end of its drain
	// terminating: containers sent a stop signal (a kill event) that still
	// run: kept out (draining, then removed) until they exit, restart, or
	// outlive the signal by stopWindow.
	terminating map[string]time.Time
	warned      map[string]bool           // container id → its warnings were logged
	invalid     map[string]int            // container id → metadata values left out of its records
	catalog     map[string][]Registration // container id → what the sinks were last given
	drained     chan drainEnd
	started     time.Time
	synced      chan struct{} // closed after the first reconcile

	// Counts for metrics, written by Run's goroutine.
	registered, drainingN, invalidN atomic.Int64

	// owned is every key this registrar has written and not deleted, with
	// the revision of the write: a key it owns that disappears was removed
	// by someone else, such as the store when a lease was lost. A key
	// leaves owned before the transaction that deletes it, enters it after
	// the one that puts it.
	ownMu sync.Mutex
	owned map[string]store.Revision
	// rewrite asks Run's goroutine to write every record again;
	// rewriteSince is when the pending request was made (0: none).
	rewrite      chan struct{}
	rewriteSince atomic.Int64
	rewriteBO    *backoff.Backoff // owned by Run's goroutine

	now func() time.Time // the clock of the stop window (tests set it)
}

// drainTimer is one drain in progress; its pointer tells a current end of
// drain from a stale one (a drain stopped and started again).
type drainTimer struct{ t *time.Timer }

// drainEnd reports the end of a drain to Run's goroutine.
type drainEnd struct {
	id string
	d  *drainTimer
}

// Synced is closed once the first reconcile has made the store match the
// runtime (records of a previous daemon taken over or removed).
func (r *Registrar) Synced() <-chan struct{} { return r.synced }

// Counts reports how many containers have records in the store or
// registrations in a sink, and how many of those are draining. Safe from
// any goroutine.
func (r *Registrar) Counts() (registered, draining int) {
	return int(r.registered.Load()), int(r.drainingN.Load())
}

// InvalidFields reports how many metadata values of the registered
// containers were left out of their records as invalid (see
// records.Instance.Invalid). Safe from any goroutine.
func (r *Registrar) InvalidFields() int { return int(r.invalidN.Load()) }

// publishCounts refreshes what Counts and InvalidFields report.
func (r *Registrar) publishCounts() {
	n := len(r.written)
	for id := range r.catalog {
		if _, ok := r.written[id]; !ok {
			n++ // registered in a sink only
		}
	}
	r.registered.Store(int64(n))
	r.drainingN.Store(int64(len(r.draining)))
	n = 0
	for id := range r.written {
		n += r.invalid[id]
	}
	r.invalidN.Store(int64(n))
}

// HostName is the host's name in the key schema: Host, else the system's
// host name.
func (c Config) HostName() (string, error) {
	if c.Host != "" {
		return c.Host, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("registrar: host name: %w", err)
	}
	return h, nil
}

// New returns a registrar of rt's containers into st.
func New(st store.Store, rt runtime.Runtime, cfg Config) (*Registrar, error) {
	h, err := cfg.HostName()
	if err != nil {
		return nil, err
	}
	cfg.Host = h
	if !records.ValidSegment(cfg.Host) {
		return nil, fmt.Errorf("registrar: host name %q cannot be a key segment", cfg.Host)
	}
	if err := records.CheckIP(cfg.Advertise); cfg.Advertise != "" && err != nil {
		return nil, fmt.Errorf("registrar: advertise address %q: %w", cfg.Advertise, err)
	}
	cfg.Prefix = cmp.Or(cfg.Prefix, records.DefaultPrefix)
	cfg.TTL = cmp.Or(cfg.TTL, DefaultTTL)
	cfg.Resync = cmp.Or(cfg.Resync, DefaultResync)
	return &Registrar{
		st: st, rt: rt, cfg: cfg,
		log:         cmp.Or(cfg.Logger, slog.Default()).With("host", cfg.Host),
		written:     map[string]map[string][]byte{},
		draining:    map[string]*drainTimer{},
		terminating: map[string]time.Time{},
		warned:      map[string]bool{},
		invalid:     map[string]int{},
		catalog:     map[string][]Registration{},
		drained:     make(chan drainEnd, 16),
		synced:      make(chan struct{}),
		owned:       map[string]store.Revision{},
		rewrite:     make(chan struct{}, 1),
		rewriteBO:   backoff.New(50*time.Millisecond, 2*time.Second),
		now:         time.Now,
	}, nil
}

// Run registers containers until ctx ends. Store and runtime errors are
// logged and retried (a reconcile fixes what a failed write left); Run
// returns only when ctx ends or the runtime's event stream fails for good.
func (r *Registrar) Run(ctx context.Context) error {
	r.started = time.Now()
	evs, errc := r.rt.Events(ctx) // subscribe before listing: nothing falls between
	bo := backoff.New(100*time.Millisecond, 10*time.Second)
	for {
		// The first reconcile writes every record, changed or not: records
		// left by a previous daemon (a crash, a restart) are bound to its
		// lease, which nobody keeps alive any more; writing them again binds
		// them to ours. Equal values make new revisions but equal snapshots,
		// so templates render the same bytes and nothing reloads.
		err := r.reconcile(ctx, true)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		d := bo.Next()
		r.log.Warn("registration failed; retrying", "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
	r.publishCounts()
	close(r.synced)
	tick := time.NewTicker(r.cfg.Resync)
	defer tick.Stop()
	defer func() {
		for _, d := range r.draining {
			d.t.Stop()
		}
	}()
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				// The stream ended (a runtime drops a subscriber that fell
				// behind, say, while the store was slow): subscribe again
				// and reconcile, so that nothing missed stays wrong.
				err := <-errc
				d := bo.Next()
				r.log.Warn("runtime event stream ended; subscribing again and reconciling", "err", err, "in", d)
				if !backoff.Sleep(ctx, d) {
					return nil
				}
				evs, errc = r.rt.Events(ctx)
				if err := r.reconcile(ctx, false); err != nil && ctx.Err() == nil {
					r.log.Warn("reconcile failed", "err", err)
				}
				continue
			}
			bo.Reset()
			if err := r.handle(ctx, ev); err != nil && ctx.Err() == nil {
				r.log.Warn("registration update failed; the next reconcile repairs it", "container", ev.Container.Name, "event", ev.Type, "err", err)
			}
		case end := <-r.drained:
			if r.draining[end.id] == end.d { // not a drain since stopped and restarted
				delete(r.draining, end.id)
				r.setSinks(end.id, nil)
				if err := r.write(ctx, end.id, nil); err != nil && ctx.Err() == nil {
					r.log.Warn("removing a drained container failed; the next reconcile repairs it", "container", end.id, "err", err)
				}
			}
		case <-tick.C:
			if err := r.reconcile(ctx, false); err != nil && ctx.Err() == nil {
				r.log.Warn("reconcile failed", "err", err)
			}
		case <-r.rewrite:
			r.reregister(ctx)
		case <-ctx.Done():
			return nil
		}
		r.publishCounts()
	}
}

// handle applies one container event.
func (r *Registrar) handle(ctx context.Context, ev runtime.Event) error {
	c := ev.Container
	switch ev.Type {
	case runtime.EventKill:
		// A stop signal on its way: start draining now, while the process
		// still serves, so that proxies take it out before it is gone.
		// Other signals (a reload's SIGHUP) change nothing.
		if !ev.Terminating() {
			return nil
		}
		if _, ok := r.terminating[c.ID]; !ok {
			r.terminating[c.ID] = r.now()
		}
		if r.hasRegistrations(c.ID) && r.cfg.Drain > 0 {
			if _, already := r.draining[c.ID]; !already {
				return r.drain(ctx, c)
			}
		}
		return nil
	case runtime.EventStart, runtime.EventDestroy:
		delete(r.terminating, c.ID) // running anew, or gone
	}
	if r.stopping(c) {
		return nil // keep it out until it exits (or outlives its stop signal)
	}
	if ev.Type == runtime.EventDestroy {
		r.stopDrain(c.ID)
		r.setSinks(c.ID, nil)
		return r.write(ctx, c.ID, nil)
	}
	if !c.Running() || ev.Type == runtime.EventStop || ev.Type == runtime.EventDie {
		if r.hasRegistrations(c.ID) && r.cfg.Drain > 0 {
			if _, already := r.draining[c.ID]; already {
				return nil
			}
			return r.drain(ctx, c)
		}
		r.setSinks(c.ID, nil)
		return r.write(ctx, c.ID, nil)
	}
	r.stopDrain(c.ID)
	kvs, regs := r.desired(c, records.StateRunning)
	r.setSinks(c.ID, regs)
	return r.write(ctx, c.ID, kvs)
}

// hasRegistrations reports whether container id has records in the store or
// registrations in a sink.
func (r *Registrar) hasRegistrations(id string) bool {
	_, ok := r.written[id]
	return ok || len(r.catalog[id]) > 0
}

// setSinks gives the sinks container id's registrations (none: remove).
func (r *Registrar) setSinks(id string, regs []Registration) {
	if len(r.cfg.Sinks) == 0 {
		return
	}
	if len(regs) == 0 {
		delete(r.catalog, id)
	} else {
		r.catalog[id] = regs
	}
	for _, s := range r.cfg.Sinks {
		s.Set(id, regs)
	}
}

// desired is the records of a container (none with NoRecords) and its
// registrations for the sinks (none without sinks), logging their
// warnings once.
func (r *Registrar) desired(c runtime.Container, state records.State) (map[string][]byte, []Registration) {
	d := recordsAt(r.cfg.Prefix, r.cfg.Host, r.cfg.Advertise, r.cfg.Network, c, state)
	var regs []Registration
	if len(r.cfg.Sinks) > 0 {
		var warnings []string
		var invalid []records.FieldError
		regs, warnings, invalid = registrationsAt(r.cfg.Advertise, c)
		if len(d.kvs) == 0 {
			// Health-gated: the records' warnings were not computed.
			warnings = append(recordsAt(r.cfg.Prefix, r.cfg.Host, r.cfg.Advertise, r.cfg.Network, withoutHealth(c), state).warnings, warnings...)
		}
		d.warnings = append(d.warnings, warnings...)
		d.invalid = append(d.invalid, invalid...)
	}
	r.invalid[c.ID] = len(d.invalid)
	if len(d.warnings) > 0 && !r.warned[c.ID] {
		r.warned[c.ID] = true
		for _, w := range d.warnings {
			r.log.Warn(w)
		}
	}
	if r.cfg.NoRecords {
		return nil, regs
	}
	return d.kvs, regs
}

// withoutHealth is c as if it had no health check.
func withoutHealth(c runtime.Container) runtime.Container {
	c.Health = runtime.HealthNone
	return c
}

// drain re-writes a stopping container's records as draining and removes
// them when the drain period ends.
func (r *Registrar) drain(ctx context.Context, c runtime.Container) error {
	// The container is no longer running, so recordsFor would give none:
	// take what was written and mark the instances draining.
	kvs := map[string][]byte{}
	for k, v := range r.written[c.ID] {
		key, err := records.ParseKey(r.cfg.Prefix, k)
		if err == nil && key.Kind == records.KindService {
			var in records.Instance
			if json.Unmarshal(v, &in) == nil {
				in.State = records.StateDraining
				v, _ = json.Marshal(in)
			}
		}
		kvs[k] = v
	}
	id := c.ID
	d := &drainTimer{}
	d.t = time.AfterFunc(r.cfg.Drain, func() {
		select {
		case r.drained <- drainEnd{id, d}:
		case <-ctx.Done():
		}
	})
	r.draining[id] = d
	r.log.Info("draining", "container", c.Name, "for", r.cfg.Drain)
	if regs := r.catalog[id]; len(regs) > 0 {
		drain := slices.Clone(regs)
		for i := range drain {
			drain[i].Draining = true
		}
		r.setSinks(id, drain)
	}
	return r.write(ctx, id, kvs)
}

func (r *Registrar) stopDrain(id string) {
	if d, ok := r.draining[id]; ok {
		d.t.Stop()
		delete(r.draining, id)
	}
}

// stopWindow is how long a container that was sent a stop signal and
// still runs is kept out of the store; past it, it is registered again
// (it ignored the signal and serves on).
const stopWindow = time.Minute

// stopping reports whether c, running, was sent a stop signal recently
// enough to stay out of the store. Past the window it forgets the signal
// and says so.
func (r *Registrar) stopping(c runtime.Container) bool {
	at, ok := r.terminating[c.ID]
	if !ok || !c.Running() {
		return false
	}
	if r.now().Sub(at) < r.cfg.Drain+stopWindow {
		return true
	}
	delete(r.terminating, c.ID)
	r.log.Warn("container still runs long after its stop signal; registering it again", "container", c.Name, "signalled", at.Format(time.RFC3339))
	return false
}

// write makes one container's records in the store equal want (nil: none),
// in one transaction, and remembers them.
func (r *Registrar) write(ctx context.Context, id string, want map[string][]byte) error {
	ops := diffOps(r.written[id], want, r.cfg.TTL, false)
	if len(ops) == 0 {
		return nil
	}
	// Bounded, so that a stalled store cannot hold up the events behind
	// this one for long (a runtime drops a subscriber that falls behind).
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := r.txn(wctx, ops); err != nil {
		return err
	}
	if len(want) == 0 {
		delete(r.written, id)
		if len(r.catalog[id]) == 0 {
			delete(r.warned, id)
			delete(r.invalid, id)
		}
	} else {
		r.written[id] = want
	}
	return nil
}

// txn applies ops in one transaction, keeping owned current: the keys it
// deletes are disowned before it runs (so that its own deletes are never
// taken for a lost lease), the keys it puts owned once it committed.
func (r *Registrar) txn(ctx context.Context, ops []store.Op) error {
	r.ownMu.Lock()
	for _, op := range ops {
		if op.Type == store.OpDelete {
			delete(r.owned, op.Key)
		}
	}
	r.ownMu.Unlock()
	rev, err := r.st.Txn(ctx, ops...)
	if err != nil {
		return err
	}
	r.ownMu.Lock()
	defer r.ownMu.Unlock()
	for _, op := range ops {
		if op.Type == store.OpPut {
			r.owned[op.Key] = rev
		}
	}
	return nil
}

// Owns reports whether key is one of this registrar's records in the store,
// and the revision it was written at. Safe from any goroutine.
func (r *Registrar) Owns(key string) (store.Revision, bool) {
	r.ownMu.Lock()
	defer r.ownMu.Unlock()
	rev, ok := r.owned[key]
	return rev, ok
}

// OwnedUnder returns the keys under prefix that are this registrar's
// records, with the revisions they were written at. Safe from any
// goroutine.
func (r *Registrar) OwnedUnder(prefix string) map[string]store.Revision {
	r.ownMu.Lock()
	defer r.ownMu.Unlock()
	out := map[string]store.Revision{}
	for k, rev := range r.owned {
		if strings.HasPrefix(k, prefix) {
			out[k] = rev
		}
	}
	return out
}

// Reregister asks for every record of this host to be written again at
// once, on the store's current lease: records the store removed behind
// the registrar's back (a lease lost while the store was unreachable) come
// back in one transaction per txnLimit operations, retried until they are
// written. It does not wait; Reregistering reports the request until it
// is done. Safe from any goroutine.
func (r *Registrar) Reregister() {
	r.rewriteSince.CompareAndSwap(0, time.Now().UnixNano())
	select {
	case r.rewrite <- struct{}{}:
	default: // one is pending already
	}
}

// Reregistering returns since when a requested re-registration has been
// pending (zero: none). Safe from any goroutine.
func (r *Registrar) Reregistering() time.Time {
	if ns := r.rewriteSince.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// reregister writes every record again. On failure it asks again after a
// backoff, so that Run's goroutine goes on handling events meanwhile.
func (r *Registrar) reregister(ctx context.Context) {
	err := r.reconcile(ctx, true)
	if err == nil {
		r.rewriteBO.Reset()
		if since := r.Reregistering(); !since.IsZero() {
			r.rewriteSince.Store(0)
			r.log.Info("records written again after the store lost them", "took", time.Since(since).Round(time.Millisecond), "containers", len(r.written))
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	d := r.rewriteBO.Next()
	r.log.Warn("re-registration failed; retrying", "err", err, "in", d)
	time.AfterFunc(d, func() {
		select {
		case r.rewrite <- struct{}{}:
		default:
		}
	})
}

// diffOps turns have into want: puts of what is new or changed (of all of
// want when rewrite is set), deletes of what is gone.
func diffOps(have, want map[string][]byte, ttl time.Duration, rewrite bool) []store.Op {
	var ops []store.Op
	for _, k := range sortedKeys(want) {
		if old, ok := have[k]; rewrite || !ok || !bytes.Equal(old, want[k]) {
			ops = append(ops, store.Put(k, want[k], store.WithTTL(ttl)))
		}
	}
	for _, k := range sortedKeys(have) {
		if _, ok := want[k]; !ok {
			ops = append(ops, store.Delete(k))
		}
	}
	return ops
}

// reconcile makes the store hold exactly the records of this host's
// containers: it lists the runtime and this host's keys, writes what is
// missing or different (everything, with rewrite) and deletes what matches
// no container.
func (r *Registrar) reconcile(ctx context.Context, rewrite bool) error {
	cs, err := r.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	want := map[string]map[string][]byte{} // container id → records
	catalog := map[string][]Registration{} // container id → registrations
	for _, c := range cs {
		if _, ok := r.draining[c.ID]; ok && (!c.Running() || r.stopping(c)) {
			want[c.ID] = r.written[c.ID] // keep draining records until the drain ends
			if regs := r.catalog[c.ID]; len(regs) > 0 {
				catalog[c.ID] = regs
			}
			continue
		}
		if r.stopping(c) {
			continue // drained already: out until it exits
		}
		r.stopDrain(c.ID)
		kvs, regs := r.desired(c, records.StateRunning)
		if len(kvs) > 0 {
			want[c.ID] = kvs
		}
		if len(regs) > 0 {
			catalog[c.ID] = regs
		}
	}
	if len(r.cfg.Sinks) > 0 {
		r.catalog = catalog
		for _, s := range r.cfg.Sinks {
			s.Replace(catalog)
		}
	}
	for id := range r.terminating {
		if !slices.ContainsFunc(cs, func(c runtime.Container) bool { return c.ID == id }) {
			delete(r.terminating, id)
		}
	}
	have, err := r.hostKeys(ctx)
	if err != nil {
		return err
	}
	// Group the operations by container so that none is split.
	ids := map[string]bool{}
	for id := range want {
		ids[id] = true
	}
	for id := range have {
		ids[id] = true
	}
	var batch []store.Op
	var batchIDs []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.txn(ctx, batch); err != nil {
			return err
		}
		for _, id := range batchIDs {
			if len(want[id]) == 0 {
				delete(r.written, id)
			} else {
				r.written[id] = want[id]
			}
		}
		batch, batchIDs = nil, nil
		return nil
	}
	host := records.Host{Name: r.cfg.Host, Version: r.cfg.Version, StartedAt: r.started}
	hb, _ := json.Marshal(host)
	batch = append(batch, store.Put(records.HostKey(r.cfg.Prefix, r.cfg.Host), hb, store.WithTTL(r.cfg.TTL)))
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		ops := diffOps(have[id], want[id], r.cfg.TTL, rewrite)
		if len(ops) == 0 {
			r.written[id] = want[id]
			if len(want[id]) == 0 {
				delete(r.written, id)
			}
			continue
		}
		if len(batch)+len(ops) > txnLimit {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, ops...)
		batchIDs = append(batchIDs, id)
	}
	return flush()
}

// hostKeys lists this host's records in the store, by container id.
func (r *Registrar) hostKeys(ctx context.Context) (map[string]map[string][]byte, error) {
	have := map[string]map[string][]byte{}
	for _, prefix := range []string{records.ServicesPrefix(r.cfg.Prefix), records.ContainerKey(r.cfg.Prefix, r.cfg.Host, "")} {
		kvs, _, err := r.st.List(ctx, prefix)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, kv := range kvs {
			k, err := records.ParseKey(r.cfg.Prefix, kv.Key)
			if err != nil || k.Host != r.cfg.Host || (k.Kind != records.KindService && k.Kind != records.KindContainer) {
				continue
			}
			if have[k.ID] == nil {
				have[k.ID] = map[string][]byte{}
			}
			have[k.ID][kv.Key] = kv.Value
		}
	}
	return have, nil
}
