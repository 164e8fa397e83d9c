package consul

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/internal/kvdiff"
)

// Config says how to reach a Consul agent.
type Config struct {
	Address string // host:port
	Scheme  string // "http" (default) or "https"
	// Token is the ACL token. "" sends none, unless CONSUL_HTTP_TOKEN or
	// CONSUL_HTTP_TOKEN_FILE is set: the Consul client library reads them.
	Token                     string
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds connecting to the agent (default 5s): an
	// unreachable agent fails New within it, naming the endpoint.
	DialTimeout time.Duration
	// WatchRetry is how long a watch retries transient errors before it
	// ends with store.ErrUnavailable (default 15s).
	WatchRetry time.Duration
	// BlockingWait is how long one blocking query of a watch waits for a
	// change (default 1m, at most Consul's 10m). A hung agent is noticed
	// within about BlockingWait + 2×DialTimeout.
	BlockingWait time.Duration
	Logger       *slog.Logger // nil: slog.Default()
}

// ErrPermissionDenied is wrapped by errors caused by Consul's ACL system
// refusing the request (a token without the needed rights, or an unknown
// token).
var ErrPermissionDenied = errors.New("permission denied by Consul ACL")

const (
	// maxTxnOps is Consul's limit on operations per transaction.
	maxTxnOps = 128
	// minTTL and maxTTL bound a Consul session's TTL.
	minTTL = 10 * time.Second
	maxTTL = 24 * time.Hour
	// historySize is how many List/watch snapshots the Store remembers.
	historySize = 32
)

// Store is a store.Store on Consul KV. Create it with New.
type Store struct {
	client      *api.Client
	transport   *http.Transport
	kv          *api.KV
	http        *http.Client // for the prefix reads (listing.go)
	token       string       // the ACL token in effect, the environment's included
	scope       url.Values   // dc, ns, partition as the client library sends them (listing.go)
	endpoint    string       // scheme://address, named by errors
	logger      *slog.Logger
	dialTimeout time.Duration
	watchRetry  time.Duration
	wait        time.Duration // blocking-query wait time
	history     *kvdiff.History

	ctx    context.Context // ends at Close; parent of renewers and watches
	cancel context.CancelFunc
	wg     sync.WaitGroup // session renewers

	sessMu   sync.Mutex               // serializes session creation and recovery
	sessions map[time.Duration]string // TTL → session ID; guarded by sessMu

	mu     sync.Mutex
	closed bool
	owned  map[string]ownedKey // the TTL keys this store wrote
}

// ownedKey is a TTL key the store wrote and re-puts if its session is lost.
type ownedKey struct {
	value []byte
	ttl   time.Duration
}

var _ store.Store = (*Store)(nil)

// New connects to the agent at cfg.Address and checks, within
// cfg.DialTimeout, that it answers and has a leader, and that a configured
// token is accepted.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Address == "" {
		return nil, errors.New("consul: no agent address")
	}
	cfg.Scheme = cmp.Or(cfg.Scheme, "http")
	if cfg.Scheme != "http" && cfg.Scheme != "https" {
		return nil, fmt.Errorf("consul %s: scheme %q: want http or https", cfg.Address, cfg.Scheme)
	}
	cfg.DialTimeout = cmp.Or(cfg.DialTimeout, 5*time.Second)
	cfg.WatchRetry = cmp.Or(cfg.WatchRetry, 15*time.Second)
	cfg.BlockingWait = min(cmp.Or(cfg.BlockingWait, time.Minute), 10*time.Minute)
	logger := cmp.Or(cfg.Logger, slog.Default())
	endpoint := cfg.Scheme + "://" + cfg.Address

	tlsCfg := api.TLSConfig{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
	if host, _, err := net.SplitHostPort(cfg.Address); err == nil {
		tlsCfg.Address = host
	}
	for _, f := range []struct{ what, path string }{{"CA", cfg.CAFile}, {"certificate", cfg.CertFile}, {"key", cfg.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return nil, fmt.Errorf("consul %s: TLS %s file: %w", endpoint, f.what, err)
		}
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: cfg.DialTimeout,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		// The local agent (the usual sidecar setup) answers uncompressed:
		// over loopback gzip only costs CPU on both ends (a prefix of
		// 10,000 keys is 2.3 MB of JSON per blocking answer).
		DisableCompression: isLoopback(cfg.Address),
	}
	httpClient, err := api.NewHttpClient(transport, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("consul %s: TLS: %w", endpoint, err)
	}
	conf := &api.Config{
		Address:    cfg.Address,
		Scheme:     cfg.Scheme,
		Token:      cfg.Token,
		TLSConfig:  tlsCfg,
		HttpClient: httpClient,
	}
	// NewClient fills conf in, the token from the environment included.
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("consul %s: %w", endpoint, err)
	}

	if err := check(ctx, client, cfg); err != nil {
		transport.CloseIdleConnections()
		return nil, fmt.Errorf("consul %s: %w", endpoint, err)
	}

	sctx, scancel := context.WithCancel(context.Background())
	return &Store{
		client:      client,
		transport:   transport,
		kv:          client.KV(),
		http:        httpClient,
		token:       conf.Token,
		scope:       scopeOf(conf),
		endpoint:    endpoint,
		logger:      logger.With("store", endpoint),
		dialTimeout: cfg.DialTimeout,
		watchRetry:  cfg.WatchRetry,
		wait:        cfg.BlockingWait,
		history:     kvdiff.NewHistory(historySize),
		ctx:         sctx,
		cancel:      scancel,
		sessions:    make(map[time.Duration]string),
		owned:       make(map[string]ownedKey),
	}, nil
}

// isLoopback reports whether the agent address host:port names this
// machine (localhost or a loopback IP).
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// check verifies, within cfg.DialTimeout, that the agent answers and has a
// leader, and that a configured token is accepted.
func check(ctx context.Context, client *api.Client, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	leader, err := client.Status().LeaderWithQueryOptions(q)
	switch {
	case err != nil && isTLS(err):
		return fmt.Errorf("TLS handshake failed (check the CA, client certificate and key): %w", err)
	case err != nil:
		return fmt.Errorf("agent unreachable (dial timeout %s): %w: %w", cfg.DialTimeout, store.ErrUnavailable, err)
	case leader == "":
		return fmt.Errorf("%w: agent has no cluster leader", store.ErrUnavailable)
	case cfg.Token == "":
		return nil
	}
	_, _, err = client.ACL().TokenReadSelf(q)
	switch {
	case err == nil || aclDisabled(err):
		return nil
	case isPermission(err):
		return fmt.Errorf("ACL token rejected: %w: %v", ErrPermissionDenied, err)
	}
	return fmt.Errorf("checking ACL token: %w", err)
}

// consulKey maps a berth key to a Consul key: berth keys start with "/",
// Consul keys do not.
func consulKey(key string) string { return strings.TrimPrefix(key, "/") }

// berthKey maps a Consul key back to a berth key.
func berthKey(key string) string { return "/" + key }

// checkKey rejects keys and prefixes that do not start with "/": they have
// no Consul form that maps back to them. The empty prefix means all keys.
func (s *Store) checkKey(op, key string, prefix bool) error {
	if strings.HasPrefix(key, "/") || (prefix && key == "") {
		return nil
	}
	return fmt.Errorf("consul %s: %s %q: keys must start with /", s.endpoint, op, key)
}

func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("consul %s: %w", s.endpoint, store.ErrClosed)
	}
	return nil
}

// Get returns one key, read consistently.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := cmp.Or(s.checkOpen(), s.checkKey("get", key, false)); err != nil {
		return store.KV{}, err
	}
	q := (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx)
	pair, _, err := s.kv.Get(consulKey(key), q)
	if err != nil {
		return store.KV{}, s.wrap("get", key, err)
	}
	if pair == nil {
		return store.KV{}, fmt.Errorf("consul %s: get %q: %w", s.endpoint, key, store.ErrNotFound)
	}
	return toKV(pair), nil
}

// List returns every key under prefix, read consistently, and the Consul
// index of the prefix. The result is remembered so that a Watch from that
// index misses nothing.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, store.Revision, error) {
	if err := cmp.Or(s.checkOpen(), s.checkKey("list", prefix, true)); err != nil {
		return nil, 0, err
	}
	kvs, rev, err := s.list(ctx, prefix, &api.QueryOptions{RequireConsistent: true}, nil)
	if err != nil {
		return nil, 0, s.wrap("list", prefix, err)
	}
	return kvs, rev, nil
}

// list reads prefix with q (see getPrefix), records the result in the
// history and returns it sorted by key.
func (s *Store) list(ctx context.Context, prefix string, q *api.QueryOptions, base []store.KV) ([]store.KV, store.Revision, error) {
	kvs, rev, err := s.getPrefix(ctx, prefix, uint64(q.WaitIndex), q.WaitTime, q.RequireConsistent, base)
	if err != nil {
		return nil, 0, err
	}
	s.history.Add(prefix, rev, kvs)
	return kvs, rev, nil
}

func toKV(p *api.KVPair) store.KV {
	return store.KV{Key: berthKey(p.Key), Value: p.Value, ModRevision: store.Revision(p.ModifyIndex)}
}

// Put writes one key; WithTTL binds it to the store's session for that TTL.
func (s *Store) Put(ctx context.Context, key string, value []byte, opts ...store.PutOption) (store.Revision, error) {
	return s.Txn(ctx, store.Put(key, value, opts...))
}

// Delete removes a key, or with WithPrefix every key under it.
func (s *Store) Delete(ctx context.Context, key string, opts ...store.DeleteOption) (store.Revision, error) {
	return s.Txn(ctx, store.Delete(key, opts...))
}

// Txn applies ops in one Consul transaction: all of them or none. One
// exception: a put without a TTL of a key that another session holds takes
// a second transaction to detach the key from that session, so watchers see
// two revisions; if that second step fails, the error says the first one
// was committed.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (store.Revision, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if len(ops) == 0 {
		return 0, nil
	}
	txn, origin, err := s.txnOps(ctx, ops)
	if err != nil {
		return 0, err
	}
	resp, err := s.commit(ctx, ops, txn, origin)
	if err != nil {
		return 0, err
	}
	var rev store.Revision
	for _, r := range resp.Results {
		if r != nil {
			rev = max(rev, store.Revision(r.ModifyIndex))
		}
	}
	drev, err := s.detach(ctx, ops, resp.Results)
	if err != nil {
		// The transaction itself is committed; only the second step, taking
		// plain-put keys away from another session, failed. Say so: the
		// caller must not think nothing was written.
		return rev, fmt.Errorf("consul %s: %s was committed at index %d, but detaching its keys from another session failed (they may still go with that session): %w", s.endpoint, describeOps(ops), rev, err)
	}
	rev = max(rev, drev)
	s.recordOwned(ops)
	if rev == 0 {
		// Only deletes: Consul reports no index for them. The index of the
		// now missing key is at least the deletion's.
		q := (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx)
		_, meta, err := s.kv.Get(consulKey(ops[0].Key), q)
		if err != nil {
			return 0, s.wrap("txn", describeOps(ops), err)
		}
		rev = store.Revision(meta.LastIndex)
	}
	return rev, nil
}

// detach finishes the puts without a TTL of a committed transaction whose
// keys another session holds: Consul keeps a key's session on a plain set,
// so the key would still go with that session, whereas a put without a
// lease detaches the key from its lease in etcd. Each such key is deleted
// and set again, unless it changed since (then the newer write stands).
// It returns the highest index written.
func (s *Store) detach(ctx context.Context, ops []store.Op, results []*api.KVPair) (store.Revision, error) {
	plain := make(map[string][]byte)
	for _, op := range ops {
		if op.Type == store.OpPut && op.TTL == 0 {
			plain[consulKey(op.Key)] = op.Value
		}
	}
	var txn api.KVTxnOps
	for _, r := range results {
		if r == nil || r.Session == "" {
			continue
		}
		if v, ok := plain[r.Key]; ok {
			txn = append(txn,
				&api.KVTxnOp{Verb: api.KVCheckIndex, Key: r.Key, Index: r.ModifyIndex},
				&api.KVTxnOp{Verb: api.KVDelete, Key: r.Key},
				&api.KVTxnOp{Verb: api.KVSet, Key: r.Key, Value: v})
		}
	}
	var rev store.Revision
	for len(txn) > 0 {
		n := min(len(txn), maxTxnOps/3*3)
		ok, resp, _, err := s.kv.Txn(txn[:n], (&api.QueryOptions{}).WithContext(ctx))
		switch {
		case err != nil:
			return 0, s.wrap("detach from another session", describeOps(ops), err)
		case ok:
			for _, r := range resp.Results {
				rev = max(rev, store.Revision(r.ModifyIndex))
			}
		default:
			// A key changed since: retry without it, its newer write stands.
			stale := map[int]bool{}
			for _, e := range resp.Errors {
				stale[e.OpIndex/3] = true
			}
			var rest api.KVTxnOps
			for i := 0; i < n; i += 3 {
				if !stale[i/3] {
					rest = append(rest, txn[i:i+3]...)
				}
			}
			if len(rest) == n {
				return 0, s.txnError(nil, nil, resp.Errors)
			}
			txn = append(rest, txn[n:]...)
			continue
		}
		txn = txn[n:]
	}
	return rev, nil
}

// commit runs the Consul transaction txn built from ops.
//
// A TTL put of a key that another session holds fails in Consul. That
// session is typically this process's previous run, not expired yet after
// a restart; a put in etcd replaces the key's lease, so commit does the
// same: it retries once with every TTL key of the transaction deleted and
// locked anew (the others are likely held too), all in one transaction.
func (s *Store) commit(ctx context.Context, ops []store.Op, txn api.KVTxnOps, origin []int) (*api.KVTxnResponse, error) {
	delayed := 0 // retries of a lock refused for its lock delay
	for attempt := 0; ; attempt++ {
		if len(txn) > maxTxnOps {
			why := ""
			if attempt > 0 {
				why = " once the TTL keys another session holds are taken over (a delete and a lock each)"
			}
			return nil, fmt.Errorf("consul %s: transaction of %d operations (%d Consul operations) exceeds Consul's limit of %d%s; nothing was written",
				s.endpoint, len(ops), len(txn), maxTxnOps, why)
		}
		ok, resp, _, err := s.kv.Txn(txn, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, s.wrap("txn", describeOps(ops), err)
		}
		if ok {
			return resp, nil
		}
		if k, ok := createFailed(txn, resp.Errors); ok {
			return nil, fmt.Errorf("consul %s: create %q: nothing written: %w", s.endpoint, k, store.ErrExists)
		}
		if lockDelayed(txn, resp.Errors) && delayed < maxLockDelayRetries {
			// A key whose session just ended is locked against new
			// sessions for that session's lock delay (1ms for berth's own,
			// up to Consul's 15s default for others'): wait and try the
			// same transaction again.
			if err := sleepCtx(ctx, lockDelayWait(delayed)); err != nil {
				return nil, s.wrap("txn", describeOps(ops), err)
			}
			delayed++
			attempt--
			continue
		}
		if attempt > 0 || !lockHeld(txn, resp.Errors) {
			return nil, s.txnError(ops, origin, resp.Errors)
		}
		txn, origin = takeOver(txn, origin)
	}
}

// lockHeld reports whether errs says a lock operation of txn failed
// because another session holds the key.
func lockHeld(txn api.KVTxnOps, errs api.TxnErrors) bool {
	for _, e := range errs {
		if e != nil && e.OpIndex >= 0 && e.OpIndex < len(txn) && txn[e.OpIndex].Verb == api.KVLock &&
			strings.Contains(e.What, "lock is already held") {
			return true
		}
	}
	return false
}

// maxLockDelayRetries bounds the retries of a lock refused for its lock
// delay: with lockDelayWait's doubling from 5ms capped at 1s, about 16s in
// all, just over Consul's default delay of 15s.
const maxLockDelayRetries = 22

// lockDelayWait is the wait before retry n of a lock refused for its lock
// delay.
func lockDelayWait(n int) time.Duration {
	return min(5*time.Millisecond<<min(n, 8), time.Second)
}

// lockDelayed reports whether errs says a lock operation of txn failed
// because the key is within the lock delay of a session that ended.
func lockDelayed(txn api.KVTxnOps, errs api.TxnErrors) bool {
	for _, e := range errs {
		if e != nil && e.OpIndex >= 0 && e.OpIndex < len(txn) && txn[e.OpIndex].Verb == api.KVLock &&
			strings.Contains(e.What, "lock delay") {
			return true
		}
	}
	return false
}

// sleepCtx waits d, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// createFailed reports whether errs says a check-not-exists operation of
// txn (a store.Create) failed, and its key.
func createFailed(txn api.KVTxnOps, errs api.TxnErrors) (string, bool) {
	for _, e := range errs {
		if e != nil && e.OpIndex >= 0 && e.OpIndex < len(txn) && txn[e.OpIndex].Verb == api.KVCheckNotExists {
			return berthKey(txn[e.OpIndex].Key), true
		}
	}
	return "", false
}

// takeOver puts a delete of its key before each lock operation of txn that
// has none.
func takeOver(txn api.KVTxnOps, origin []int) (api.KVTxnOps, []int) {
	var out api.KVTxnOps
	var outOrigin []int
	for i, op := range txn {
		if op.Verb == api.KVLock && (i == 0 || txn[i-1].Verb != api.KVDelete || txn[i-1].Key != op.Key) {
			out = append(out, &api.KVTxnOp{Verb: api.KVDelete, Key: op.Key})
			outOrigin = append(outOrigin, origin[i])
		}
		out = append(out, op)
		outOrigin = append(outOrigin, origin[i])
	}
	return out, outOrigin
}

// txnOps translates ops into Consul operations; origin[i] is the index in
// ops of Consul operation i.
func (s *Store) txnOps(ctx context.Context, ops []store.Op) (api.KVTxnOps, []int, error) {
	var txn api.KVTxnOps
	var origin []int
	add := func(i int, op *api.KVTxnOp) {
		txn = append(txn, op)
		origin = append(origin, i)
	}
	for i, op := range ops {
		if err := s.checkKey(fmt.Sprintf("operation %d (%s)", i, opName(op)), op.Key, false); err != nil {
			return nil, nil, err
		}
		key := consulKey(op.Key)
		switch op.Type {
		case store.OpPut:
			if key == "" {
				return nil, nil, fmt.Errorf("consul %s: operation %d: empty key", s.endpoint, i)
			}
			if op.Create {
				add(i, &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: key})
			}
			ttl := sessionTTL(op.TTL)
			s.mu.Lock()
			prev, isOwned := s.owned[op.Key]
			s.mu.Unlock()
			if isOwned && prev.ttl != ttl {
				// Held by our session for another TTL: release it first,
				// as a put without that lease would in etcd.
				add(i, &api.KVTxnOp{Verb: api.KVDelete, Key: key})
			}
			if ttl == 0 {
				add(i, &api.KVTxnOp{Verb: api.KVSet, Key: key, Value: op.Value})
				continue
			}
			id, err := s.session(ctx, ttl)
			if err != nil {
				return nil, nil, err
			}
			add(i, &api.KVTxnOp{Verb: api.KVLock, Key: key, Value: op.Value, Session: id})
		case store.OpDelete:
			verb := api.KVDelete
			if op.Prefix {
				verb = api.KVDeleteTree
			}
			add(i, &api.KVTxnOp{Verb: verb, Key: key})
		default:
			return nil, nil, fmt.Errorf("consul %s: operation %d on %q: unknown type %d", s.endpoint, i, op.Key, op.Type)
		}
	}
	return txn, origin, nil
}

// txnError describes why Consul rolled a transaction back.
func (s *Store) txnError(ops []store.Op, origin []int, errs api.TxnErrors) error {
	var msgs []string
	perm := false
	for _, e := range errs {
		if e == nil {
			continue
		}
		what := e.What
		if e.OpIndex >= 0 && e.OpIndex < len(origin) {
			op := ops[origin[e.OpIndex]]
			what = fmt.Sprintf("operation %d (%s %q): %s", origin[e.OpIndex], opName(op), op.Key, e.What)
		}
		if strings.Contains(e.What, "Permission denied") || strings.Contains(e.What, "ACL not found") {
			perm = true
		}
		msgs = append(msgs, what)
	}
	msg := strings.Join(msgs, "; ")
	if perm {
		return fmt.Errorf("consul %s: transaction rolled back, nothing written: %w: %s", s.endpoint, ErrPermissionDenied, msg)
	}
	return fmt.Errorf("consul %s: transaction rolled back, nothing written: %s", s.endpoint, msg)
}

// recordOwned updates the set of TTL keys the store owns after ops
// succeeded.
func (s *Store) recordOwned(ops []store.Op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range ops {
		switch {
		case op.Type == store.OpPut && op.TTL > 0 && !op.Create: // a create (a lock) goes with a lost session
			s.owned[op.Key] = ownedKey{value: slices.Clone(op.Value), ttl: sessionTTL(op.TTL)}
		case op.Type == store.OpDelete && op.Prefix:
			for k := range s.owned {
				if strings.HasPrefix(k, op.Key) {
					delete(s.owned, k)
				}
			}
		default:
			delete(s.owned, op.Key)
		}
	}
}

func opName(op store.Op) string {
	switch {
	case op.Type == store.OpPut && op.Create:
		return "create"
	case op.Type == store.OpPut:
		return "put"
	case op.Prefix:
		return "delete prefix"
	}
	return "delete"
}

func describeOps(ops []store.Op) string {
	if len(ops) == 1 {
		return ops[0].Key
	}
	return fmt.Sprintf("%d operations from %s", len(ops), ops[0].Key)
}

// wrap gives a Consul client error the endpoint, the action and the key,
// and the sentinel callers test for.
func (s *Store) wrap(action, key string, err error) error {
	if key != "" {
		action = fmt.Sprintf("%s %q", action, key)
	}
	switch {
	case errors.Is(err, ErrPermissionDenied):
		return fmt.Errorf("consul %s: %s: %w", s.endpoint, action, err)
	case isPermission(err):
		return fmt.Errorf("consul %s: %s: %w: %v", s.endpoint, action, ErrPermissionDenied, err)
	case isTransient(err):
		return fmt.Errorf("consul %s: %s: %w: %w", s.endpoint, action, store.ErrUnavailable, err)
	}
	return fmt.Errorf("consul %s: %s: %w", s.endpoint, action, err)
}

// isPermission reports whether err is an ACL denial.
func isPermission(err error) bool {
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusForbidden {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "Permission denied") || strings.Contains(msg, "ACL not found")
}

// isTLS reports whether err comes from the TLS handshake (an unknown CA, a
// refused client certificate), which retrying does not cure.
func isTLS(err error) bool {
	var cve *tls.CertificateVerificationError
	var alert tls.AlertError
	var rec tls.RecordHeaderError
	if errors.As(err, &cve) || errors.As(err, &alert) || errors.As(err, &rec) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "tls: ") || strings.Contains(msg, "x509: ")
}

// aclDisabled reports whether err says the agent runs without ACLs.
func aclDisabled(err error) bool {
	return strings.Contains(err.Error(), "ACL support disabled")
}

// isTransient reports whether err may go away by retrying: the agent could
// not be reached or answered with a server-side error.
func isTransient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isTLS(err) {
		return false
	}
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "EOF") ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "Unexpected response code: 5") ||
		strings.Contains(msg, "No cluster leader")
}

// Close stops renewing the store's sessions and destroys them, which
// deletes their keys. Watches end with store.ErrClosed.
func (s *Store) Close() error { return s.close(true) }

// Detach implements store.Detacher: it stops renewing the store's sessions
// without destroying them, so their keys go when Consul invalidates them
// (within twice their TTL).
func (s *Store) Detach() error { return s.close(false) }

func (s *Store) close(destroy bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	// Wait out a session being created (it started no renewer yet, or one
	// that sees the cancelled context); later ones fail with ErrClosed.
	s.sessMu.Lock()
	s.sessMu.Unlock()
	s.wg.Wait()
	if !destroy {
		s.transport.CloseIdleConnections()
		return nil
	}

	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.dialTimeout)
	defer cancel()
	var errs []error
	for ttl, id := range s.sessions {
		if _, err := s.client.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("consul %s: destroy session %s (TTL %s): %w", s.endpoint, id, ttl, err))
		}
		delete(s.sessions, ttl)
	}
	s.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// scopeOf is the query parameters the client library adds to every request
// of conf (filled in by api.NewClient, CONSUL_NAMESPACE and
// CONSUL_PARTITION included): berth's own reads must address the keys its
// writes, made through the library, do.
func scopeOf(conf *api.Config) url.Values {
	v := url.Values{}
	for name, val := range map[string]string{"dc": conf.Datacenter, "ns": conf.Namespace, "partition": conf.Partition} {
		if val != "" {
			v.Set(name, val)
		}
	}
	return v
}
