package consul

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/store"
)

// sessionTTL rounds a requested TTL to what a Consul session accepts: whole
// seconds, at least 10s, at most 24h. 0 (no TTL) stays 0.
func sessionTTL(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 0
	}
	return min(max(ttl.Round(time.Second), minTTL), maxTTL)
}

// session returns the store's session for ttl, creating it (and its
// renewer) on first use.
func (s *Store) session(ctx context.Context, ttl time.Duration) (string, error) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if id, ok := s.sessions[ttl]; ok {
		return id, nil
	}
	if s.ctx.Err() != nil {
		return "", fmt.Errorf("consul %s: %w", s.endpoint, store.ErrClosed)
	}
	id, err := s.createSession(ctx, ttl)
	if err != nil {
		return "", err
	}
	s.sessions[ttl] = id
	s.wg.Add(1)
	go s.renew(ttl)
	return id, nil
}

func (s *Store) createSession(ctx context.Context, ttl time.Duration) (string, error) {
	entry := &api.SessionEntry{
		Name:     "berth",
		Behavior: api.SessionBehaviorDelete,
		TTL:      ttl.String(),
		// The smallest lock delay Consul takes (0 means its 15s default),
		// so that re-acquiring a key after a session loss is not blocked.
		LockDelay: time.Millisecond,
	}
	id, _, err := s.client.Session().Create(entry, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return "", s.wrap("create session (TTL "+ttl.String()+")", "", err)
	}
	return id, nil
}

// renew keeps the session for ttl alive until the store is closed,
// renewing it every ttl/2 and replacing it when Consul has lost it.
func (s *Store) renew(ttl time.Duration) {
	defer s.wg.Done()
	interval := ttl / 2
	retry := min(interval, time.Second)
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		}
		s.sessMu.Lock()
		id := s.sessions[ttl]
		s.sessMu.Unlock()

		ctx, cancel := context.WithTimeout(s.ctx, interval)
		entry, _, err := s.client.Session().Renew(id, (&api.WriteOptions{}).WithContext(ctx))
		cancel()
		switch {
		case s.ctx.Err() != nil:
			return
		case err != nil:
			s.logger.Warn("renewing consul session failed; retrying", "session", id, "ttl", ttl, "err", err)
			timer.Reset(retry)
			continue
		case entry == nil:
			if err := s.recoverSession(ttl, id); err != nil {
				s.logger.Error("re-creating lost consul session failed; retrying", "ttl", ttl, "err", err)
				timer.Reset(retry)
				continue
			}
		}
		timer.Reset(interval)
	}
}

// recoverSession replaces the lost session old for ttl with a new one and
// puts the keys the store owns with that TTL again.
func (s *Store) recoverSession(ttl time.Duration, old string) error {
	ctx, cancel := context.WithTimeout(s.ctx, ttl)
	defer cancel()
	s.sessMu.Lock()
	id, err := s.createSession(ctx, ttl)
	if err != nil {
		s.sessMu.Unlock()
		return err
	}
	s.sessions[ttl] = id
	s.sessMu.Unlock()

	s.mu.Lock()
	var keys []string
	var ops api.KVTxnOps
	for k, o := range s.owned {
		if o.ttl == ttl {
			keys = append(keys, k)
			ops = append(ops, &api.KVTxnOp{Verb: api.KVLock, Key: consulKey(k), Value: o.value, Session: id})
		}
	}
	s.mu.Unlock()

	// Re-put in batches; a batch that fails (a key taken over by another
	// session meanwhile) is retried key by key so the others still come back.
	// A key that cannot be re-put is logged: the session itself is fine.
	var errs []error
	for start := 0; start < len(ops); start += maxTxnOps {
		batch := ops[start:min(start+maxTxnOps, len(ops))]
		if err := s.lockAll(ctx, batch); err == nil {
			continue
		}
		for j, op := range batch {
			if err := s.lockAll(ctx, api.KVTxnOps{op}); err != nil {
				errs = append(errs, fmt.Errorf("re-put %q: %w", keys[start+j], err))
			}
		}
	}
	s.logger.Warn("consul session lost (expired or invalidated); created a new one and put its keys again",
		"old_session", old, "session", id, "ttl", ttl, "keys", len(ops), "failed", len(errs))
	if len(errs) > 0 {
		s.logger.Error("some keys of the lost consul session could not be put again", "err", errors.Join(errs...))
	}
	return nil
}

func (s *Store) lockAll(ctx context.Context, ops api.KVTxnOps) error {
	ok, resp, _, err := s.kv.Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	if !ok {
		return s.txnError(nil, nil, resp.Errors)
	}
	return nil
}
