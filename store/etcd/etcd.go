package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/internal/watchch"
)

// DefaultDialTimeout bounds how long New waits for the first answer from
// the cluster before it reports the endpoints unreachable.
const DefaultDialTimeout = 5 * time.Second

// listPage is how many keys one range request of a List returns; later
// pages are read at the first page's revision, so the listing stays
// consistent while no single response grows past gRPC's message limits.
const listPage = 1000

// maxMessage is the largest gRPC message the client sends or receives: above
// any server's request limit, so that the server, not the client, says what
// is too large.
const maxMessage = 64 << 20

// Config says how to reach an etcd cluster.
type Config struct {
	Endpoints []string // host:port or http(s)://host:port

	Username, Password string

	// CAFile, CertFile and KeyFile configure TLS. Setting any of them (or an
	// https:// endpoint) turns TLS on.
	CAFile, CertFile, KeyFile string

	DialTimeout time.Duration // default DefaultDialTimeout
	Logger      *slog.Logger  // nil: slog.Default()

	desc     string       // for messages, instead of the endpoints (Embedded)
	relocate func(*Store) // called while the connection is lost (Embedded)
}

// Store is a store.Store on an etcd v3 cluster. When it was opened with
// Embedded it also owns the in-process server and stops it on Close.
type Store struct {
	cli    *clientv3.Client
	log    *slog.Logger
	desc   string // the endpoints, for error messages
	leases *leaseKeeper

	closeOnce sync.Once
	closed    chan struct{}
	onClose   func() error // stops the embedded server, if any
}

var _ store.Store = (*Store)(nil)

// New connects to an etcd cluster and checks, within cfg.DialTimeout, that
// it answers.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	desc := strings.Join(cfg.Endpoints, ",")

	tlsCfg, endpoints, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Username:             cfg.Username,
		Password:             cfg.Password,
		TLS:                  tlsCfg,
		MaxCallSendMsgSize:   maxMessage,
		MaxCallRecvMsgSize:   maxMessage,
		Logger:               newZapLogger(log.With("component", "etcd-client"), slog.LevelError),
		Context:              context.WithoutCancel(ctx),
		// Retry a lost connection at least every reconnectMaxDelay (gRPC's
		// default backoff grows to two minutes), so that watches resume
		// soon after the server is back.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMaxDelay},
			MinConnectTimeout: 2 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", desc, err)
	}
	// clientv3 dials lazily; ask for the cluster's status so an unreachable
	// cluster, a bad password or a TLS mismatch fail here, within the timeout.
	pingCtx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pingCtx, "health-check", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		if errors.Is(err, context.DeadlineExceeded) || isUnavailable(err) {
			return nil, fmt.Errorf("etcd %s: no answer within %s: %w%s", desc, cfg.DialTimeout, store.ErrUnavailable, diagnose(endpoints, tlsCfg))
		}
		return nil, fmt.Errorf("etcd %s: %w", desc, err)
	}
	if cfg.desc != "" {
		desc = cfg.desc
	}
	s := &Store{cli: cli, log: log, desc: desc, closed: make(chan struct{})}
	s.leases = newLeaseKeeper(cli, log, s.closed)
	go s.reportConnection(cfg.relocate)
	return s, nil
}

// reconnectMaxDelay is the longest wait between two attempts to reach a
// server that went away.
const reconnectMaxDelay = 2 * time.Second

// While the connection is lost, relocate is called every lostCheck, and
// the loss is logged again every lostReport.
const (
	lostCheck  = 5 * time.Second
	lostReport = time.Minute
)

// reportConnection logs when the connection to the cluster is lost, again
// while it stays lost, and when it is back: a watch does not end while the
// server is away (it resumes from its revision when the server is back),
// so this is what says that it waits.
func (s *Store) reportConnection(relocate func(*Store)) {
	conn := s.cli.ActiveConnection()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.closed
		cancel()
	}()
	var lostAt, reportedAt time.Time
	state := conn.GetState()
	for {
		wctx, wcancel := ctx, context.CancelFunc(func() {})
		if !lostAt.IsZero() {
			wctx, wcancel = context.WithTimeout(ctx, lostCheck)
		}
		changed := conn.WaitForStateChange(wctx, state)
		wcancel()
		if ctx.Err() != nil {
			return
		}
		if !changed { // still lost
			if time.Since(reportedAt) >= lostReport {
				reportedAt = time.Now()
				s.log.Warn("store still unreachable; reconnecting", "store", s.desc, "since", lostAt.Format(time.RFC3339))
			}
			if relocate != nil {
				relocate(s)
			}
			continue
		}
		state = conn.GetState()
		switch {
		case state == connectivity.TransientFailure && lostAt.IsZero():
			lostAt, reportedAt = time.Now(), time.Now()
			s.log.Warn("store connection lost; reconnecting (watches resume when it is back)", "store", s.desc)
		case state == connectivity.Ready && !lostAt.IsZero():
			s.log.Info("store connection back", "store", s.desc, "after", time.Since(lostAt).Round(time.Millisecond))
			lostAt = time.Time{}
		}
	}
}

// diagnose probes each endpoint once, over TCP and TLS, to say why the
// cluster did not answer: gRPC reports only that it timed out.
func diagnose(endpoints []string, tlsCfg *tls.Config) string {
	var reasons []string
	for _, ep := range endpoints {
		if err := probe(ep, tlsCfg); err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", ep, err))
		}
	}
	if len(reasons) == 0 {
		return ""
	}
	return " (" + strings.Join(reasons, "; ") + ")"
}

func probe(endpoint string, tlsCfg *tls.Config) error {
	const timeout = time.Second
	conn, err := net.DialTimeout("tcp", endpoint, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if tlsCfg == nil {
		return nil
	}
	cfg := tlsCfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(endpoint)
	}
	cfg.NextProtos = []string{"h2"}
	tc := tls.Client(conn, cfg)
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		return err
	}
	// With TLS 1.3 a server that refuses the client's certificate says so
	// only after the handshake, as an alert on the first read.
	if _, err := tc.Read(make([]byte, 1)); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if strings.Contains(err.Error(), "tls:") {
			return err
		}
	}
	return nil
}

// clientTLS builds the client TLS configuration and normalises endpoints to
// host:port form (clientv3 accepts both, but an https:// scheme must turn TLS
// on).
func clientTLS(cfg Config) (*tls.Config, []string, error) {
	useTLS := cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != ""
	endpoints := make([]string, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		switch {
		case strings.HasPrefix(ep, "https://"):
			useTLS = true
			ep = strings.TrimPrefix(ep, "https://")
		case strings.HasPrefix(ep, "http://"):
			ep = strings.TrimPrefix(ep, "http://")
		}
		endpoints[i] = ep
	}
	if !useTLS {
		return nil, endpoints, nil
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, nil, errors.New("etcd TLS: a client certificate needs both cert and key")
	}
	for _, f := range []string{cfg.CAFile, cfg.CertFile, cfg.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.ReadFile(f); err != nil {
			return nil, nil, fmt.Errorf("etcd TLS: %w", err)
		}
	}
	info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
	tc, err := info.ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("etcd TLS: %w", err)
	}
	return tc, endpoints, nil
}

// Client returns the underlying etcd client, for callers that need an etcd
// feature outside the store contract (compaction in tests, status).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return store.KV{}, s.wrap(err, "get %q", key)
	}
	if len(resp.Kvs) == 0 {
		return store.KV{}, fmt.Errorf("get %q: %w", key, store.ErrNotFound)
	}
	kv := resp.Kvs[0]
	return store.KV{Key: string(kv.Key), Value: kv.Value, ModRevision: store.Revision(kv.ModRevision)}, nil
}

// List implements store.Store. It reads in pages pinned to the revision of
// the first page.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, store.Revision, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	if prefix == "" {
		prefix = "\x00"
	}
	var (
		out  []store.KV
		rev  int64
		from = prefix
	)
	for {
		opts := []clientv3.OpOption{
			clientv3.WithRange(end),
			clientv3.WithLimit(listPage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend),
		}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, s.wrap(err, "list %q", prefix)
		}
		if rev == 0 {
			rev = resp.Header.Revision
			out = make([]store.KV, 0, resp.Count)
		}
		for _, kv := range resp.Kvs {
			out = append(out, store.KV{Key: string(kv.Key), Value: kv.Value, ModRevision: store.Revision(kv.ModRevision)})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, store.Revision(rev), nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, opts ...store.PutOption) (store.Revision, error) {
	return s.Txn(ctx, store.Put(key, value, opts...))
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string, opts ...store.DeleteOption) (store.Revision, error) {
	return s.Txn(ctx, store.Delete(key, opts...))
}

// Txn implements store.Store: one etcd transaction with every operation in
// its success branch. TTL keys are bound to the store's lease for their TTL
// and remembered, so they can be written again if the lease is lost.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (store.Revision, error) {
	if len(ops) == 0 {
		resp, err := s.cli.Get(ctx, "\x00", clientv3.WithCountOnly())
		if err != nil {
			return 0, s.wrap(err, "txn")
		}
		return store.Revision(resp.Header.Revision), nil
	}
	select {
	case <-s.closed:
		return 0, fmt.Errorf("%s: %w", describeOps(ops), store.ErrClosed)
	default:
	}
	// Between choosing a lease and recording what was written with it, a
	// lease re-grant must not run: it would write stale values over this
	// write, or bring back a key this write deletes.
	s.leases.gate.RLock()
	defer s.leases.gate.RUnlock()
	etcdOps := make([]clientv3.Op, 0, len(ops))
	var absent []clientv3.Cmp
	for _, op := range ops {
		switch op.Type {
		case store.OpPut:
			if op.Create {
				absent = append(absent, clientv3.Compare(clientv3.CreateRevision(op.Key), "=", 0))
			}
			var popts []clientv3.OpOption
			if op.TTL > 0 {
				id, err := s.leases.lease(ctx, op.TTL)
				if err != nil {
					return 0, s.wrap(err, "put %q: lease for ttl %s", op.Key, op.TTL)
				}
				popts = append(popts, clientv3.WithLease(id))
			}
			etcdOps = append(etcdOps, clientv3.OpPut(op.Key, string(op.Value), popts...))
		case store.OpDelete:
			var dopts []clientv3.OpOption
			if op.Prefix {
				dopts = append(dopts, clientv3.WithPrefix())
			}
			etcdOps = append(etcdOps, clientv3.OpDelete(op.Key, dopts...))
		default:
			return 0, fmt.Errorf("txn: unknown operation type %d on %q", op.Type, op.Key)
		}
	}
	resp, err := s.cli.Txn(ctx).If(absent...).Then(etcdOps...).Commit()
	if err != nil {
		if isLeaseNotFound(err) {
			return 0, fmt.Errorf("%s on etcd %s: its lease expired just now and is being re-granted; retry: %w", describeOps(ops), s.desc, store.ErrUnavailable)
		}
		return 0, s.wrap(err, "%s", describeOps(ops))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("%s on etcd %s: a key it creates exists: %w", describeOps(ops), s.desc, store.ErrExists)
	}
	s.leases.track(ops)
	return store.Revision(resp.Header.Revision), nil
}

// describeOps names a write for error messages: the key of a single
// operation, else the count and the first key.
func describeOps(ops []store.Op) string {
	verb := func(op store.Op) string {
		switch {
		case op.Type == store.OpDelete:
			return "delete"
		case op.Create:
			return "create"
		}
		return "put"
	}
	if len(ops) == 1 {
		return fmt.Sprintf("%s %q", verb(ops[0]), ops[0].Key)
	}
	return fmt.Sprintf("txn of %d operations (first: %s %q)", len(ops), verb(ops[0]), ops[0].Key)
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, prefix string, after store.Revision) <-chan store.WatchResponse {
	out := make(chan store.WatchResponse, 1)
	// WithPrefix on "" watches every key.
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithProgressNotify()}
	if after > 0 {
		opts = append(opts, clientv3.WithRev(int64(after)+1))
	}
	// WithRequireLeader makes the server cancel the watch when the member
	// loses its leader, instead of leaving it silently stale.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.cli.Watch(wctx, prefix, opts...)
	go func() {
		defer close(out)
		defer cancel()
		send := func(r store.WatchResponse) bool { return watchch.Send(ctx, out, r) }
		for {
			var (
				wresp clientv3.WatchResponse
				ok    bool
			)
			select {
			case wresp, ok = <-wch:
			case <-s.closed:
				send(store.WatchResponse{Err: fmt.Errorf("watch %q: %w", prefix, store.ErrClosed)})
				return
			}
			if !ok {
				if ctx.Err() != nil {
					return
				}
				select {
				case <-s.closed:
					send(store.WatchResponse{Err: fmt.Errorf("watch %q: %w", prefix, store.ErrClosed)})
				default:
					send(store.WatchResponse{Err: fmt.Errorf("watch %q: stream closed: %w", prefix, store.ErrUnavailable)})
				}
				return
			}
			if wresp.CompactRevision != 0 || errors.Is(wresp.Err(), rpctypes.ErrCompacted) {
				send(store.WatchResponse{
					Revision: store.Revision(wresp.CompactRevision),
					Err:      fmt.Errorf("watch %q from revision %d: compacted at %d: %w", prefix, after+1, wresp.CompactRevision, store.ErrCompacted),
				})
				return
			}
			if err := wresp.Err(); err != nil {
				if ctx.Err() != nil {
					return
				}
				send(store.WatchResponse{Err: s.wrap(err, "watch %q", prefix)})
				return
			}
			if wresp.Created {
				continue
			}
			// With events, the response brings the watcher up to its last
			// event: etcd stamps catch-up batches with the store's current
			// revision although later batches are still to come.
			resp := store.WatchResponse{Revision: store.Revision(wresp.Header.Revision)}
			if n := len(wresp.Events); n > 0 {
				resp.Revision = store.Revision(wresp.Events[n-1].Kv.ModRevision)
				resp.Events = make([]store.Event, len(wresp.Events))
				for i, ev := range wresp.Events {
					e := store.Event{Type: store.EventPut, KV: store.KV{
						Key: string(ev.Kv.Key), Value: ev.Kv.Value, ModRevision: store.Revision(ev.Kv.ModRevision),
					}}
					if ev.Type == clientv3.EventTypeDelete {
						e.Type = store.EventDelete
						e.KV.Value = nil
					}
					resp.Events[i] = e
				}
			}
			if !send(resp) {
				return
			}
		}
	}()
	return out
}

// Close implements store.Store: it revokes the store's leases (so its TTL
// keys go at once), closes the client and stops the embedded server.
func (s *Store) Close() error { return s.close(true) }

// Detach implements store.Detacher: it closes the store but leaves its
// leases to expire after their TTL.
func (s *Store) Detach() error { return s.close(false) }

func (s *Store) close(revoke bool) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		s.leases.stop(revoke)
		err = s.cli.Close()
		if s.onClose != nil {
			err = errors.Join(err, s.onClose())
		}
	})
	return err
}

// wrap adds what was being done and the endpoints to an etcd error, and
// maps etcd's errors onto the store's sentinels.
func (s *Store) wrap(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	select {
	case <-s.closed:
		return fmt.Errorf("%s: %w", what, store.ErrClosed)
	default:
	}
	switch {
	case errors.Is(err, rpctypes.ErrCompacted), errors.Is(err, rpctypes.ErrGRPCCompacted):
		return fmt.Errorf("%s: %w", what, store.ErrCompacted)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s on etcd %s: %w", what, s.desc, err)
	case isUnavailable(err):
		return fmt.Errorf("%s on etcd %s: %w: %w", what, s.desc, store.ErrUnavailable, err)
	}
	return fmt.Errorf("%s on etcd %s: %w", what, s.desc, err)
}

// isUnavailable reports errors that mean "the cluster cannot answer now".
func isUnavailable(err error) bool {
	switch {
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrGRPCNoLeader),
		errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrGRPCTimeout),
		errors.Is(err, rpctypes.ErrLeaderChanged), errors.Is(err, rpctypes.ErrGRPCLeaderChanged):
		return true
	}
	return status.Code(err) == codes.Unavailable
}
