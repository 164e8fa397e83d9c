package etcd

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthd/berth/store"
)

// regrantBatch bounds how many keys one transaction re-writes after a lease
// was lost (etcd's default --max-txn-ops is 128).
const regrantBatch = 100

// leaseKeeper owns the store's leases: one per TTL (in whole seconds), kept
// alive in the background. It remembers which keys were written with each
// lease, so that when a lease is lost — the cluster was unreachable for
// longer than the TTL — it grants a new one and writes those keys again.
type leaseKeeper struct {
	cli    *clientv3.Client
	log    *slog.Logger
	closed <-chan struct{}

	// gate orders writes against re-grants: Txn holds it for reading from
	// choosing a lease to recording its keys; regrant holds it for writing
	// while it grants a new lease and writes the keys again.
	gate sync.RWMutex

	mu     sync.Mutex
	leases map[int64]*ownedLease // by TTL seconds
	wg     sync.WaitGroup
}

type ownedLease struct {
	ttl   int64
	id    clientv3.LeaseID
	ready chan struct{}     // closed once id is granted (or failed)
	err   error             // the grant error, if it failed
	keys  map[string][]byte // keys written with this lease
}

func newLeaseKeeper(cli *clientv3.Client, log *slog.Logger, closed <-chan struct{}) *leaseKeeper {
	return &leaseKeeper{cli: cli, log: log, closed: closed, leases: make(map[int64]*ownedLease)}
}

func ttlSeconds(ttl time.Duration) int64 {
	s := int64((ttl + time.Second - 1) / time.Second)
	return max(s, 1)
}

// lease returns the lease for ttl, granting it (and starting its keepalive)
// on first use.
func (k *leaseKeeper) lease(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, error) {
	secs := ttlSeconds(ttl)
	k.mu.Lock()
	l, ok := k.leases[secs]
	if !ok {
		l = &ownedLease{ttl: secs, ready: make(chan struct{}), keys: make(map[string][]byte)}
		k.leases[secs] = l
		k.mu.Unlock()
		resp, err := k.cli.Grant(ctx, secs)
		k.mu.Lock()
		if err != nil {
			l.err = err
			delete(k.leases, secs)
		} else {
			l.id = resp.ID
			k.wg.Add(1)
			go k.keepAlive(l)
		}
		close(l.ready)
		k.mu.Unlock()
		return l.id, err
	}
	k.mu.Unlock()
	select {
	case <-l.ready:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.err != nil {
		return 0, l.err
	}
	return l.id, nil
}

// keepAlive renews l until the store closes. When the keepalive stream ends
// while the store is open, the lease is gone: grant a new one and write the
// lease's keys again, retrying with backoff until it works.
func (k *leaseKeeper) keepAlive(l *ownedLease) {
	defer k.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-k.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := 100 * time.Millisecond
	for {
		k.mu.Lock()
		id := l.id
		k.mu.Unlock()
		ch, err := k.cli.KeepAlive(ctx, id)
		if err == nil {
			// Drain the renewals; the channel closes when the lease is lost.
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		k.log.Warn("etcd lease lost; granting a new one and re-writing its keys", "lease", int64(id), "ttl_s", l.ttl)
		for {
			n, err := k.regrant(ctx, l)
			if err == nil {
				k.log.Info("etcd lease re-established", "lease", int64(l.id), "keys", n)
				backoff = 100 * time.Millisecond
				break
			}
			k.log.Warn("etcd lease re-grant failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// regrant grants a new lease for l and writes l's keys with it.
func (k *leaseKeeper) regrant(ctx context.Context, l *ownedLease) (int, error) {
	k.gate.Lock()
	defer k.gate.Unlock()
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := k.cli.Grant(gctx, l.ttl)
	if err != nil {
		return 0, err
	}
	k.mu.Lock()
	l.id = resp.ID
	ops := make([]clientv3.Op, 0, len(l.keys))
	for key, val := range l.keys {
		ops = append(ops, clientv3.OpPut(key, string(val), clientv3.WithLease(resp.ID)))
	}
	k.mu.Unlock()
	for len(ops) > 0 {
		n := min(len(ops), regrantBatch)
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := k.cli.Txn(tctx).Then(ops[:n]...).Commit()
		cancel()
		if err != nil {
			return 0, err
		}
		ops = ops[n:]
	}
	return len(l.keys), nil
}

// track records the keys a successful transaction bound to (or released
// from) the store's leases.
func (k *leaseKeeper) track(ops []store.Op) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, op := range ops {
		switch {
		case op.Type == store.OpPut && op.TTL > 0 && !op.Create:
			secs := ttlSeconds(op.TTL)
			for s, l := range k.leases {
				if s != secs {
					delete(l.keys, op.Key)
				}
			}
			if l, ok := k.leases[secs]; ok {
				l.keys[op.Key] = op.Value
			}
		case op.Type == store.OpPut: // a create (a lock) is not written again: it goes with a lost lease
			for _, l := range k.leases {
				delete(l.keys, op.Key)
			}
		case op.Type == store.OpDelete:
			for _, l := range k.leases {
				for key := range l.keys {
					if key == op.Key || (op.Prefix && strings.HasPrefix(key, op.Key)) {
						delete(l.keys, key)
					}
				}
			}
		}
	}
}

// isLeaseNotFound reports whether a write failed because its lease was
// revoked or expired between lease() and the write.
func isLeaseNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound)
}

// stop waits for the keepalive loops to end (the store is closing) and, with
// revoke, revokes every lease so its TTL keys go now rather than after
// their TTL.
func (k *leaseKeeper) stop(revoke bool) {
	if !revoke {
		k.wg.Wait()
		return
	}
	k.mu.Lock()
	ids := make([]clientv3.LeaseID, 0, len(k.leases))
	for _, l := range k.leases {
		if l.id != 0 {
			ids = append(ids, l.id)
		}
	}
	k.mu.Unlock()
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if _, err := k.cli.Revoke(ctx, id); err != nil && !isLeaseNotFound(err) {
			k.log.Warn("etcd lease revoke on close failed; its keys expire with the TTL", "lease", int64(id), "err", err)
		}
		cancel()
	}
	k.wg.Wait()
}
