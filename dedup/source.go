package dedup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/backoff"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// opTimeout bounds one store write of the dedup keys.
const opTimeout = 10 * time.Second

var (
	_ runner.Source = (*Source)(nil)
	_ runner.Binder = (*Source)(nil)
)

// mode is what a Source's snapshot holds.
type mode uint8

const (
	modeNone   mode = iota // nothing yet: not synced
	modeData               // the data prefixes (this daemon leads and executes the template)
	modeOutput             // the leader's output record (this daemon follows)
)

// Source is one template identity's dedup source: a runner.Source whose
// snapshot is the data prefixes while this daemon leads and the leader's
// output record while it follows, and the runner.Binder that executes the
// template for the first and writes the record's output for the second.
type Source struct {
	d       *Deduper
	id      string
	conf    config.Template
	base    string // <prefix><id>/
	lockKey string
	outKey  string
	folKeys string          // <base>followers/
	ctl     *watcher.Mirror // the dedup keys: who leads, what it stored
	log     *slog.Logger
	kick    chan struct{}

	mu          sync.Mutex
	changes     watcher.Changes
	snap        watcher.Snapshot
	mode        mode
	followed    string         // modeOutput: the hash of the output the snapshot holds
	followedBy  string         // and the owner of the leader that made it
	followedRev store.Revision // and the data revision it was made from
	dataGens    []uint64       // modeData: the mirrors' generations the snapshot holds
	leading     bool
	stopLead    context.CancelFunc
	leadDone    chan struct{}
	boundLeader bool     // the last Bind executed the template (data, leading)
	pending     *applied // leading: the last output applied here, to store
	err         error
	errAt       time.Time
	failing     time.Time
	bad         string // the last invalid output record reported, by its value's hash
	polled      bool   // following peer to peer: the poller's first poll has ended

	// Run's goroutine only: this daemon's writes the dedup keys' mirror
	// may not show yet, and its poller of the leader.
	lockRev  store.Revision // the revision of the lock this daemon created
	wroteRev store.Revision // of the last output it stored, and its hash
	wrote    string
	regRev   store.Revision // of this daemon's registration as a follower, under folKeys
	polling  string         // the lock record the poller follows ("" none)
	stopPoll func()         // stops it and waits
	later    *time.Timer    // wakes step when a grace runs out
}

// applied is an output the leader applied.
type applied struct {
	out   []byte
	gzip  []byte
	hash  string
	count int
	rev   store.Revision
	at    time.Time
}

func newSource(d *Deduper, id string, conf config.Template) *Source {
	base := d.prefix + id + "/"
	return &Source{
		d: d, id: id, conf: conf, base: base,
		lockKey: base + "leader", outKey: base + "output", folKeys: base + "followers/",
		ctl:     watcher.NewMirror(d.st, base, d.mopts...),
		log:     d.log.With("dedup", id, "template", conf.Name),
		kick:    make(chan struct{}, 1),
		changes: watcher.NewChanges(),
	}
}

// Run implements runner.Source: it follows the dedup keys, takes the lock
// when nobody holds it, leads (mirrors the data, stores what is applied)
// while it holds it, and follows the holder's output otherwise. When ctx
// ends it stops leading and deletes its lock, so another daemon takes over
// at once.
func (s *Source) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.ctl.Run(ctx) })
	notify, cancel := s.ctl.Subscribe()
	defer cancel()
	defer s.resign()
	defer s.unregister()
	defer s.poll(ctx, lockRecord{}) // stops the poller
	defer func() {
		if s.later != nil {
			s.later.Stop()
		}
	}()
	bo := backoff.New(500*time.Millisecond, 5*time.Second)
	var retry <-chan time.Time
	for {
		select {
		case <-notify:
		case <-s.kick:
		case <-retry:
		case <-ctx.Done():
			return
		}
		if err := s.step(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.failed(err)
			d := bo.Next()
			s.log.Warn("dedup: store write failed; retrying", "err", err, "in", d)
			retry = time.After(d)
			continue
		}
		bo.Reset()
		retry = nil
		s.mu.Lock()
		s.err = nil
		s.failing = time.Time{}
		s.mu.Unlock()
	}
}

// step acts on the dedup keys as they are now: take a free lock, lead or
// follow, store the leader's output.
func (s *Source) step(ctx context.Context) error {
	select {
	case <-s.ctl.Synced():
	default:
		return nil
	}
	var (
		lock      lockRecord
		held      bool
		stored    *record
		storedK   store.KV
		followers []string // the owners registered as peer-to-peer followers
		self      bool     // this daemon is one of them
	)
	view := s.ctl.Snapshot()
	for _, kv := range view.KVs {
		if owner, ok := strings.CutPrefix(kv.Key, s.folKeys); ok {
			followers = append(followers, owner)
			self = self || owner == s.d.owner
			continue
		}
		switch kv.Key {
		case s.lockKey:
			held = true
			if err := json.Unmarshal(kv.Value, &lock); err != nil {
				lock = lockRecord{Owner: "?"} // held by something that is not a dedup lock: wait it out
			}
		case s.outKey:
			rec, _, err := decode(kv.Value)
			if err != nil {
				s.invalid(kv, err)
				continue
			}
			stored, storedK = &rec, kv
		}
	}
	if !held && view.Revision < s.lockRev {
		held, lock = true, lockRecord{Owner: s.d.owner, Host: s.d.host} // created; not seen yet
	}
	if !held {
		won, err := s.acquire(ctx)
		if err != nil {
			return err
		}
		if won {
			held, lock = true, lockRecord{Owner: s.d.owner, Host: s.d.host}
		}
	}
	leading := held && lock.Owner == s.d.owner
	s.lead(ctx, leading, lock)
	if !leading {
		if !held {
			lock = lockRecord{}
		}
		registered := self || view.Revision < s.regRev // written; not seen yet
		if err := s.peerFollow(ctx, lock, registered); err != nil {
			return err
		}
		if held && stored != nil && stored.Owner == lock.Owner && s.fromStore(lock) {
			s.follow(storedK, *stored)
		}
		return nil
	}
	s.poll(ctx, lockRecord{})
	if self && s.regRev > 0 {
		// A follower that now leads: its registration would count it as
		// a follower that never fetches (the leader leaves itself out of
		// the count, but others reading the keys would not).
		s.unregister()
	}
	if view.Revision < s.wroteRev {
		stored = &record{Owner: s.d.owner, Hash: s.wrote} // stored; not seen yet
	}
	return s.store(ctx, stored, followers)
}

// peerFollow follows lock's leader peer to peer when its record says it
// serves its outputs (registering this daemon as a follower unless it is:
// a registration goes with its lease, as after a partition), and stops
// following the one before.
func (s *Source) peerFollow(ctx context.Context, lock lockRecord, registered bool) error {
	if lock.URL != "" && !registered {
		b, _ := json.Marshal(followerRecord{Owner: s.d.owner, Host: s.d.host, Since: time.Now()})
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		rev, err := s.d.st.Put(cctx, s.folKeys+s.d.owner, b, store.WithTTL(s.d.ttl))
		if err != nil {
			return fmt.Errorf("dedup follower %s: %w", s.folKeys+s.d.owner, err)
		}
		s.regRev = rev
	}
	s.poll(ctx, lock)
	return nil
}

// unregister deletes this daemon's registration as a follower, if it
// wrote one: a daemon that stops or leads is no follower (a stopped one's
// would otherwise stay until its lease ends, the leader storing every
// output meanwhile for a follower that never fetches). Run's goroutine.
func (s *Source) unregister() {
	if s.regRev == 0 {
		return
	}
	s.regRev = 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.d.st.Delete(ctx, s.folKeys+s.d.owner); err != nil && !errors.Is(err, store.ErrClosed) {
		s.log.Warn("dedup: cannot delete this host's registration as a follower; it expires with the lease", "key", s.folKeys+s.d.owner, "err", err)
	}
}

// fromStore reports whether a follower of lock takes the stored output:
// always from a leader that does not serve peer to peer, and from one
// that does once its first poll has ended (fetched, refused or failed),
// so that a follower that starts does not write an older stored output
// before the leader's current one. Past that, the stored output is one
// the leader put there for a follower that did not fetch it (this one,
// perhaps, its connection silently dropped), and follow takes it only if
// it is news and not older than what the follower has.
func (s *Source) fromStore(lock lockRecord) bool {
	if lock.URL == "" {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polled && s.polling == pollKey(lock)
}

// pollKey names a lock record's peer: a new record is a new poller.
func pollKey(l lockRecord) string {
	if l.URL == "" {
		return ""
	}
	return l.Owner + " " + l.URL + " " + l.Fingerprint
}

// poll makes the poller follow lock's leader ("" URL: none), stopping
// the one before; Run's goroutine only.
func (s *Source) poll(ctx context.Context, lock lockRecord) {
	key := pollKey(lock)
	if key == s.polling {
		return
	}
	if s.stopPoll != nil {
		s.stopPoll()
		s.stopPoll = nil
	}
	s.mu.Lock()
	s.polling, s.polled = key, false
	s.mu.Unlock()
	if key == "" || ctx.Err() != nil {
		return
	}
	s.log.Info("dedup: following the leader peer to peer", "leader", lock.Host, "url", lock.URL)
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	s.stopPoll = func() { cancel(); <-done }
	go func() {
		defer close(done)
		s.pollPeer(pctx, lock)
	}()
}

// pollPeer long-polls lock's leader for each new output and follows it,
// and tries again with backoff when a poll fails. A failure is logged
// when it repeats (a leader that hands over ends its polls once, and its
// lock's change stops this poller), and so is the leader's return.
func (s *Source) pollPeer(ctx context.Context, lock lockRecord) {
	c, err := newPeerClient(lock.URL, lock.Fingerprint, lock.Secret, s.d.owner)
	if err != nil {
		s.log.Warn("dedup: the leader's lock record does not say how to reach it; taking its output from the store", "leader", lock.Host, "err", err)
		s.polledOnce()
		return
	}
	defer c.close()
	bo := backoff.New(500*time.Millisecond, 10*time.Second)
	fails := 0
	for {
		s.mu.Lock()
		have := ""
		if s.mode == modeOutput && s.followedBy == lock.Owner {
			have = s.followed
		}
		s.mu.Unlock()
		o, out, err := c.fetch(ctx, s.id, have)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			s.take(lock, o, len(out))
		}
		s.polledOnce()
		if err == nil || errors.Is(err, errNotModified) {
			if fails >= 2 {
				s.log.Info("dedup: the leader answers peer to peer again", "leader", lock.Host, "url", lock.URL)
			}
			fails = 0
			bo.Reset()
			continue
		}
		if fails++; fails == 2 {
			s.log.Warn("dedup: cannot take the output from the leader peer to peer; taking it from the store, where the leader puts it for followers that did not fetch it",
				"leader", lock.Host, "url", lock.URL, "err", err)
		}
		if !backoff.Sleep(ctx, bo.Next()) {
			return
		}
	}
}

// polledOnce notes that the current poller's first poll has ended, and
// wakes step to look at the stored output.
func (s *Source) polledOnce() {
	s.mu.Lock()
	was := s.polled
	s.polled = true
	s.mu.Unlock()
	if !was {
		s.wake()
	}
}

// take follows an output fetched from lock's leader, as follow does one
// from the store.
func (s *Source) take(lock lockRecord, o peerOutput, size int) {
	b, err := json.Marshal(record{Owner: lock.Owner, Host: lock.Host, Hash: o.hash, Count: o.count, Revision: o.rev, Gzip: o.gzip})
	if err != nil {
		return
	}
	rec := record{Owner: lock.Owner, Hash: o.hash, Revision: o.rev}
	s.follow(store.KV{Key: s.outKey, Value: b, ModRevision: o.rev}, rec)
	s.log.Debug("dedup: output taken peer to peer", "hash", o.hash[:12], "bytes", size)
}

func (s *Source) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// acquire creates the lock, bound to this daemon's lease; false when
// another created it first.
func (s *Source) acquire(ctx context.Context) (bool, error) {
	l := lockRecord{Owner: s.d.owner, Host: s.d.host, Since: time.Now()}
	if p := s.d.peer; p != nil {
		l.URL, l.Fingerprint, l.Secret = p.url, p.id.fingerprint, p.id.secret
	}
	b, _ := json.Marshal(l)
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rev, err := s.d.st.Txn(cctx, store.Create(s.lockKey, b, store.WithTTL(s.d.ttl)))
	if err != nil {
		if errors.Is(err, store.ErrExists) {
			return false, nil
		}
		return false, fmt.Errorf("dedup lock %s: %w", s.lockKey, err)
	}
	s.lockRev = rev
	return true, nil
}

// store writes the output applied here, unless the key holds it already
// from this daemon (no write loop) or, serving peer to peer, every
// registered follower has fetched it (within the grace: after it, it is
// stored for those that have not); an output another wrote (a stale
// leader's) is written over.
func (s *Source) store(ctx context.Context, stored *record, followers []string) error {
	s.mu.Lock()
	p := s.pending
	s.mu.Unlock()
	if p == nil || (stored != nil && stored.Owner == s.d.owner && stored.Hash == p.hash) {
		return nil
	}
	if s.d.peer != nil {
		missing := 0
		for _, f := range followers {
			if f != s.d.owner && s.d.peer.srv.fetchedBy(s.id, f) != p.hash {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if wait := time.Until(p.at.Add(s.d.grace)); wait > 0 {
			if s.later == nil {
				s.later = time.AfterFunc(wait, s.wake)
			} else {
				s.later.Reset(wait)
			}
			return nil
		}
		s.log.Debug("dedup: storing the output for followers that did not fetch it", "followers", missing)
	}
	b, err := json.Marshal(record{Owner: s.d.owner, Host: s.d.host, Hash: p.hash, Count: p.count, Revision: p.rev, Gzip: p.gzip})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rev, err := s.d.st.Put(cctx, s.outKey, b)
	if err != nil {
		return fmt.Errorf("dedup output %s: %w", s.outKey, err)
	}
	s.wroteRev, s.wrote = rev, p.hash
	s.log.Debug("dedup: output stored", "hash", p.hash[:12], "bytes", len(p.out))
	return nil
}

// lead starts or stops leading.
func (s *Source) lead(ctx context.Context, leading bool, lock lockRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if leading == s.leading {
		return
	}
	s.leading = leading
	if !leading {
		s.stopLead()
		s.pending, s.dataGens = nil, nil
		if s.d.peer != nil {
			s.d.peer.srv.drop(s.id)
		}
		s.log.Info("dedup: following", "leader", lock.Host, "owner", lock.Owner)
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	s.stopLead, s.leadDone = cancel, done
	s.log.Info("dedup: leading; this host renders the template for every host")
	go func() {
		defer close(done)
		s.mirrorData(lctx)
	}()
}

// mirrorData is the leader's: it mirrors the data prefixes (listing them
// now, so a change made during the handover is in the first render) and
// makes them the snapshot whenever they change.
func (s *Source) mirrorData(ctx context.Context) {
	ms := make([]*watcher.Mirror, len(s.conf.Prefixes))
	changed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, p := range s.conf.Prefixes {
		ms[i] = watcher.NewMirror(s.d.st, p, s.d.mopts...)
		ch, cancel := ms[i].Subscribe()
		defer cancel()
		wg.Go(func() { ms[i].Run(ctx) })
		wg.Go(func() {
			for {
				select {
				case <-ch:
					select {
					case changed <- struct{}{}:
					default:
					}
				case <-ctx.Done():
					return
				}
			}
		})
	}
	for {
		select {
		case <-changed:
			s.data(ctx, ms)
		case <-ctx.Done():
			return
		}
	}
}

// data makes the mirrors' content the snapshot, once all are synced.
func (s *Source) data(ctx context.Context, ms []*watcher.Mirror) {
	snaps := make([]watcher.Snapshot, len(ms))
	gens := make([]uint64, len(ms))
	for i, m := range ms {
		select {
		case <-m.Synced():
		default:
			return
		}
		snaps[i] = m.Snapshot()
		gens[i] = snaps[i].Generation
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil || (s.mode == modeData && slices.Equal(gens, s.dataGens)) {
		return
	}
	parts := make([][]store.KV, len(snaps))
	var rev store.Revision
	for i, sn := range snaps {
		parts[i] = sn.KVs
		rev = max(rev, sn.Revision)
	}
	kvs := without(render.MergeKVs(parts...), s.d.prefix)
	if s.mode == modeData && sameKVs(kvs, s.snap.KVs) {
		s.dataGens = gens // only dedup keys changed: no news for the template
		return
	}
	s.mode, s.dataGens, s.followed, s.followedBy, s.followedRev = modeData, gens, "", "", 0
	s.set(watcher.Snapshot{KVs: kvs, Revision: rev})
}

// without is kvs (sorted by key) without the keys under prefix, in a new
// slice when there are any: the leader's output is never its input.
func without(kvs []store.KV, prefix string) []store.KV {
	i, _ := slices.BinarySearchFunc(kvs, prefix, func(kv store.KV, p string) int { return strings.Compare(kv.Key, p) })
	j := i
	for j < len(kvs) && strings.HasPrefix(kvs[j].Key, prefix) {
		j++
	}
	if i == j {
		return kvs
	}
	return slices.Concat(kvs[:i], kvs[j:])
}

// sameKVs reports whether two listings hold the same keys at the same
// revisions.
func sameKVs(a, b []store.KV) bool {
	return slices.EqualFunc(a, b, func(x, y store.KV) bool { return x.Key == y.Key && x.ModRevision == y.ModRevision })
}

// follow makes the leader's output record (from the store or the
// leader) the snapshot, unless it holds that output already (an output
// whose hash a follower has is no news) or a newer one of the same
// leader: an output the leader stored for slower followers may arrive
// after a newer one was fetched peer to peer.
func (s *Source) follow(kv store.KV, rec record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leading || (s.mode == modeOutput && s.followed == rec.Hash) {
		return
	}
	if s.mode == modeOutput && s.followedBy == rec.Owner && rec.Revision < s.followedRev {
		return
	}
	s.mode, s.followed, s.followedBy, s.followedRev, s.dataGens = modeOutput, rec.Hash, rec.Owner, rec.Revision, nil
	s.set(watcher.Snapshot{KVs: []store.KV{kv}, Revision: kv.ModRevision})
}

// set replaces the snapshot and notifies; s.mu is held.
func (s *Source) set(sn watcher.Snapshot) {
	if s.changes.IsSynced() {
		s.changes.Changed()
	} else {
		s.changes.Listed(true)
	}
	sn.Generation = s.changes.Generation()
	s.snap = sn
}

// resign stops leading and deletes the lock if it is still this
// daemon's: the next leader need not wait for the lease to run out.
func (s *Source) resign() {
	s.mu.Lock()
	leading, done := s.leading, s.leadDone
	if leading {
		s.stopLead()
		s.leading = false
	}
	s.mu.Unlock()
	if !leading {
		return
	}
	if s.d.peer != nil {
		s.d.peer.srv.drop(s.id)
	}
	<-done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var l lockRecord
	if kv, err := s.d.st.Get(ctx, s.lockKey); err == nil && json.Unmarshal(kv.Value, &l) == nil && l.Owner == s.d.owner {
		if _, err := s.d.st.Delete(ctx, s.lockKey); err != nil && !errors.Is(err, store.ErrClosed) {
			s.log.Warn("dedup: cannot release the lock; it expires with the lease", "key", s.lockKey, "err", err)
		}
	}
}

func (s *Source) failed(err error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err, s.errAt = err, now
	if s.failing.IsZero() {
		s.failing = now
	}
}

// invalid reports an output record that does not decode, once per value.
func (s *Source) invalid(kv store.KV, err error) {
	h := hashOf(kv.Value)
	s.mu.Lock()
	seen := s.bad == h
	s.bad = h
	s.mu.Unlock()
	if !seen {
		s.log.Error("dedup: the stored output is invalid; ignoring it", "key", kv.Key, "revision", kv.ModRevision, "err", err)
	}
}

// Synced implements runner.Source: closed once there is data (leading)
// or an output of the current leader (following).
func (s *Source) Synced() <-chan struct{} { return s.changes.Synced() }

// Subscribe implements runner.Source.
func (s *Source) Subscribe() (<-chan struct{}, func()) { return s.changes.Subscribe(&s.mu) }

// Snapshot implements runner.Source.
func (s *Source) Snapshot() watcher.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// Health implements runner.Source: the health of the dedup keys' mirror,
// with this source's own store errors.
func (s *Source) Health() watcher.Health {
	h := s.ctl.Health()
	s.mu.Lock()
	defer s.mu.Unlock()
	h.Synced = s.changes.IsSynced()
	if s.err != nil {
		h.LastError, h.LastErrorAt, h.FailingSince = s.err, s.errAt, s.failing
	}
	return h
}

// Leading reports whether this daemon leads the template now.
func (s *Source) Leading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leading
}

// Bind implements runner.Binder: a snapshot of the leader's output record
// renders that output (after checking its hash); a snapshot of the data
// executes the template, while this daemon leads.
func (s *Source) Bind(t *dialect.Template, in dialect.Input) render.Source {
	if id, err := Identity(s.conf); err != nil || id != s.id {
		return failed{fmt.Errorf("dedup: template %q changed on disk since its dedup identity was made; reload berth (SIGHUP) or restart it to render it under its new identity (the last good output stays)", s.conf.Name)}
	}
	if len(in.KVs) == 1 && in.KVs[0].Key == s.outKey {
		rec, out, err := decode(in.KVs[0].Value)
		if err != nil {
			return failed{fmt.Errorf("dedup output %s: %w", s.outKey, err)}
		}
		s.mu.Lock()
		s.boundLeader = false
		s.mu.Unlock()
		return fixed{out: out, count: rec.Count}
	}
	s.mu.Lock()
	leading := s.leading
	s.boundLeader = leading
	s.mu.Unlock()
	if !leading {
		return failed{fmt.Errorf("dedup: %s has no output of the leader to write", s.base)}
	}
	return render.Bind(t, in)
}

// Applied implements runner.Binder: what the leader applied (the file as
// it is now) is stored for the followers.
func (s *Source) Applied(_ config.Template, res render.Result) {
	s.mu.Lock()
	ok, rev := s.leading && s.boundLeader, s.snap.Revision
	s.mu.Unlock()
	if !ok || res.Dest == "" {
		return
	}
	out, err := os.ReadFile(res.Dest)
	if err != nil {
		s.log.Warn("dedup: cannot read the output to share it", "dest", res.Dest, "err", err)
		return
	}
	gz, err := zip(out)
	if err != nil {
		s.log.Warn("dedup: cannot compress the output to share it", "dest", res.Dest, "err", err)
		return
	}
	p := &applied{out: out, gzip: gz, hash: hashOf(out), count: res.Count, rev: rev, at: time.Now()}
	s.mu.Lock()
	if s.leading {
		s.pending = p
		if s.d.peer != nil {
			s.d.peer.srv.set(s.id, peerOutput{hash: p.hash, count: p.count, rev: p.rev, gzip: p.gzip})
		}
	}
	s.mu.Unlock()
	s.wake()
}
