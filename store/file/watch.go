package file

import (
	"context"
	"fmt"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/internal/kvdiff"
	"github.com/berthd/berth/store/internal/watchch"
)

// Watch streams the changes under prefix after revision after. Revisions
// count changes of the data since New; after == 0 or the current revision
// watches from now, an older revision is replayed from the last few
// snapshots, or ends with store.ErrCompacted when it is too old. Watch
// re-reads the files before it returns, so no change made after the call
// is missed.
func (s *Store) Watch(ctx context.Context, prefix string, after store.Revision) <-chan store.WatchResponse {
	ch := make(chan store.WatchResponse)
	s.mu.Lock()
	closed := s.closed
	if !closed {
		if _, err := s.reload(); err != nil {
			s.logger.Error("watch: keeping the last good data", "revision", s.rev, "err", err)
		}
	}
	data, rev, changed := s.data, s.rev, s.changed
	s.mu.Unlock()

	var base []store.KV
	var err error
	switch {
	case closed:
		err = fmt.Errorf("file store %s: watch %q: %w", s.path, prefix, store.ErrClosed)
	case after == 0 || after >= rev:
		base = data
	default:
		var ok bool
		if base, ok = s.history.Lookup("", after); !ok {
			err = fmt.Errorf("file store %s: watch %q from revision %d: %w (only the last %d revisions are kept)",
				s.path, prefix, after, store.ErrCompacted, historySize)
		}
	}
	go func() {
		defer close(ch)
		if err != nil {
			final(ctx, ch, err)
			return
		}
		s.follow(ctx, ch, prefix, kvdiff.Filter(base, prefix), kvdiff.Filter(data, prefix), rev, changed)
	}()
	return ch
}

// follow sends the events from base to cur (at rev), then the events of
// every later change, until ctx ends or the store closes.
func (s *Store) follow(ctx context.Context, ch chan<- store.WatchResponse, prefix string, base, cur []store.KV, rev store.Revision, changed <-chan struct{}) {
	for {
		if events := kvdiff.Diff(base, cur, rev); len(events) > 0 {
			if !watchch.Send(ctx, ch, store.WatchResponse{Revision: rev, Events: events}) {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			final(ctx, ch, fmt.Errorf("file store %s: watch %q: %w", s.path, prefix, store.ErrClosed))
			return
		case <-changed:
		}
		s.mu.Lock()
		data, next := s.data, s.rev
		changed = s.changed
		s.mu.Unlock()
		base, cur, rev = cur, kvdiff.Filter(data, prefix), next
	}
}

// final sends a watch's last response unless ctx ended.
func final(ctx context.Context, ch chan<- store.WatchResponse, err error) {
	watchch.Send(ctx, ch, store.WatchResponse{Err: err})
}
