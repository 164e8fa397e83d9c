package consul

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/internal/kvdiff"
)

// Watch streams the changes under prefix after revision after, from
// blocking queries diffed against the previous state. after == 0 watches
// from the call: Watch reads the prefix before it returns, so a write made
// after Watch returns is always seen. after == a revision List or an
// earlier watch response returned (and still remembered) resumes from that
// state; any other revision gets a final store.ErrCompacted unless nothing
// under prefix changed since.
func (s *Store) Watch(ctx context.Context, prefix string, after store.Revision) <-chan store.WatchResponse {
	ch := make(chan store.WatchResponse)
	w := &watcher{s: s, prefix: prefix, ch: ch}
	// The queries end when either the caller's context or the store ends.
	qctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	run := func(f func()) {
		go func() {
			defer close(ch)
			defer cancel()
			defer stop()
			f()
		}()
	}
	if err := cmp.Or(s.checkOpen(), s.checkKey("watch", prefix, true)); err != nil {
		run(func() { w.final(ctx, err) })
		return ch
	}
	// Remembered (a List just returned it, as the mirror does before its
	// watch): the state at after is the baseline, and the first read
	// blocks from after, returning at once if something changed since.
	// That is the loop's state when a fresh read finds nothing changed,
	// without reading the whole prefix once more (at 10,000 keys a second
	// 2.3 MB answer, which berth render paid on every run: issue #14).
	if after > 0 {
		if old, ok := s.history.Lookup(prefix, after); ok {
			run(func() { w.loop(ctx, qctx, old, old, after, after) })
			return ch
		}
	}
	// Else the baseline is a fresh read, which is the state at after when
	// nothing under prefix changed since; else the remembered state at
	// after.
	cur, index, err := w.read(qctx, 0, nil)
	if err != nil {
		run(func() { w.final(ctx, err) })
		return ch
	}
	base := cur
	if after > 0 && index > after {
		old, ok := s.history.Lookup(prefix, after)
		if !ok {
			err := fmt.Errorf("consul %s: watch %q from index %d: %w (the state at that index is no longer remembered)",
				s.endpoint, prefix, after, store.ErrCompacted)
			run(func() { w.final(ctx, err) })
			return ch
		}
		base = old
	}
	run(func() { w.loop(ctx, qctx, base, cur, index, max(index, after)) })
	return ch
}

// loop sends the events from base to cur (read at index), then follows the
// prefix with blocking queries from wait on.
func (w *watcher) loop(ctx, qctx context.Context, base, cur []store.KV, index, wait store.Revision) {
	s := w.s
	last := index // the last index Consul reported, to detect it going backwards
	for {
		if !w.send(ctx, base, cur, index) {
			return
		}
		base = cur
		var err error
		cur, index, err = w.read(qctx, wait, cur)
		if err != nil {
			w.final(ctx, err)
			return
		}
		if index < last {
			w.final(ctx, fmt.Errorf("consul %s: watch %q: index went backwards from %d to %d (agent restarted or snapshot restored): %w",
				s.endpoint, w.prefix, last, index, store.ErrCompacted))
			return
		}
		last = index
		wait = max(wait, index)
	}
}

// final sends the last response, with err, unless ctx ended: a cancelled
// watch closes without an error. A query cut short by Close reports
// store.ErrClosed.
func (w *watcher) final(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	if w.s.ctx.Err() != nil {
		err = fmt.Errorf("consul %s: watch %q: %w", w.s.endpoint, w.prefix, store.ErrClosed)
	}
	select {
	case w.ch <- store.WatchResponse{Err: err}:
	case <-ctx.Done():
	}
}

// watcher is the state of one Watch.
type watcher struct {
	s      *Store
	prefix string
	ch     chan<- store.WatchResponse
}

// read runs one (blocking, when wait > 0) query of the prefix, retrying
// transient errors with backoff for at most the store's WatchRetry.
//
// base is the previous state: the entries of the answer whose key and
// ModifyIndex are unchanged from it keep base's KV, undecoded. After a
// failure base is not trusted (the agent may have been replaced), and every
// entry is decoded.
func (w *watcher) read(ctx context.Context, wait store.Revision, base []store.KV) ([]store.KV, store.Revision, error) {
	s := w.s
	backoff := 100 * time.Millisecond
	var failingSince time.Time
	for {
		// A baseline read (wait 0) is consistent, like List; blocking
		// queries are served by the leader without the extra round.
		q := &api.QueryOptions{WaitIndex: uint64(wait), WaitTime: s.wait, RequireConsistent: wait == 0}
		if !failingSince.IsZero() {
			// After a failure, do not block: an agent that came back with
			// an index below wait (restarted, restored) would hold the
			// query until the wait time instead of revealing that.
			q.WaitIndex = 0
		}
		// A hung agent (accepting, never answering) must not hold the
		// watch forever: bound each query by its wait time (plus Consul's
		// jitter of up to 1/16) and the dial timeout.
		limit := 2 * s.dialTimeout
		if q.WaitIndex > 0 {
			limit += s.wait + s.wait/16
		}
		rctx, cancel := context.WithTimeout(ctx, limit)
		trusted := base
		if !failingSince.IsZero() {
			trusted = nil
		}
		kvs, index, err := s.list(rctx, w.prefix, q, trusted)
		timedOut := rctx.Err() != nil
		cancel()
		if err == nil {
			return kvs, index, nil
		}
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		if timedOut {
			err = fmt.Errorf("no answer within %s: %w", limit, err)
		} else if !isTransient(err) {
			return nil, 0, s.wrap("watch", w.prefix, err)
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if time.Since(failingSince) > s.watchRetry {
			return nil, 0, fmt.Errorf("consul %s: watch %q: gave up after retrying for %s: %w: %w",
				s.endpoint, w.prefix, s.watchRetry, store.ErrUnavailable, err)
		}
		s.logger.Debug("consul watch query failed; retrying", "prefix", w.prefix, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// send delivers the events from base to cur, if any. It reports false when
// ctx ended first.
func (w *watcher) send(ctx context.Context, base, cur []store.KV, index store.Revision) bool {
	events := kvdiff.Diff(base, cur, index)
	if len(events) == 0 {
		return true
	}
	select {
	case w.ch <- store.WatchResponse{Revision: index, Events: events}:
		return true
	case <-ctx.Done():
		return false
	}
}
