package consul

import (
	"context"
	"fmt"
	"strings"
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
// renewing it every ttl/2. When Consul has lost it (an outage longer than
// the TTL), renew creates a new one and puts the store's keys with that TTL
// again, retrying those that fail until they are back.
func (s *Store) renew(ttl time.Duration) {
	defer s.wg.Done()
	interval := ttl / 2
	retry := min(interval, time.Second)
	timer := time.NewTimer(interval)
	defer timer.Stop()
	var missing []string // keys to put again under the current session
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
			if id, err = s.replaceSession(ttl); err != nil {
				s.logger.Error("re-creating lost consul session failed; retrying", "ttl", ttl, "err", err)
				timer.Reset(retry)
				continue
			}
			missing = s.ownedKeys(ttl)
			s.logger.Warn("consul session lost (expired or invalidated); created a new one, putting its keys again",
				"session", id, "ttl", ttl, "keys", len(missing))
		}
		if len(missing) > 0 {
			if missing = s.reput(ttl, id, missing); len(missing) > 0 {
				timer.Reset(retry)
				continue
			}
			s.logger.Info("keys of the lost consul session are back", "session", id, "ttl", ttl)
		}
		timer.Reset(interval)
	}
}

// replaceSession creates a new session for ttl in place of the lost one.
func (s *Store) replaceSession(ttl time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(s.ctx, ttl)
	defer cancel()
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	id, err := s.createSession(ctx, ttl)
	if err != nil {
		return "", err
	}
	s.sessions[ttl] = id
	return id, nil
}

// ownedKeys returns the keys the store owns with ttl.
func (s *Store) ownedKeys(ttl time.Duration) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k, o := range s.owned {
		if o.ttl == ttl {
			keys = append(keys, k)
		}
	}
	return keys
}

// reput binds keys to session id again, with the values the store wrote,
// and returns those that failed for a reason that may pass. Only a key
// that is still missing is put (the check and the put are one
// transaction): one written meanwhile, by this store or another, is newer
// and stays. A key no longer owned with ttl is skipped.
func (s *Store) reput(ttl time.Duration, id string, keys []string) []string {
	ctx, cancel := context.WithTimeout(s.ctx, ttl)
	defer cancel()
	var failed []string
	for _, k := range keys {
		s.mu.Lock()
		o, ok := s.owned[k]
		s.mu.Unlock()
		if !ok || o.ttl != ttl {
			continue
		}
		ck := consulKey(k)
		err := s.lockAll(ctx, api.KVTxnOps{
			{Verb: api.KVCheckNotExists, Key: ck},
			{Verb: api.KVLock, Key: ck, Value: o.value, Session: id},
		})
		switch {
		case err == nil:
		case strings.Contains(err.Error(), fmt.Sprintf("key %q exists", ck)):
			s.logger.Info("TTL key was written again while its session was lost; keeping the newer value", "key", k)
		default:
			s.logger.Warn("putting a TTL key again failed; retrying", "key", k, "err", err)
			failed = append(failed, k)
		}
	}
	return failed
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
