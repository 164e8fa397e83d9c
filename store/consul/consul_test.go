package consul_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/consul"
	"github.com/berthd/berth/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// TestSharedAgent runs the tests that can share one agent (isolated by key
// prefix) against one agent, to keep the package's test time low. Tests
// that restart or reconfigure an agent start their own.
func TestSharedAgent(t *testing.T) {
	t.Parallel()
	agent := testenv.StartConsul(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, addr string)
	}{
		{"Conformance", testConformance},
		{"TxnOverConsulLimitIsRefusedWhole", testTxnOverLimit},
		{"TTLPutTakesOverKeyHeldByAnotherSession", testTTLPutTakesOverHeldKey},
		{"PlainPutDetachesKeyFromAnotherSession", testPlainPutDetaches},
		{"TTLKeysComeBackAfterSessionLoss", testSessionLoss},
		{"WatchFromUnknownRevisionOfQuietPrefix", testWatchQuietPrefix},
		{"BadConfig", testBadConfig},
		{"KeysWithoutLeadingSlashRefused", testRelativeKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, agent.Addr) })
	}
}

func open(t *testing.T, cfg consul.Config) *consul.Store {
	t.Helper()
	s, err := consul.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("consul.New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testConformance(t *testing.T, addr string) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			s, err := consul.New(t.Context(), consul.Config{Address: addr})
			if err != nil {
				t.Fatalf("consul.New: %v", err)
			}
			return s
		},
		Coalesces: true,
		// The store resumes watches from the last few states it has seen;
		// listing enough other prefixes pushes the older ones out.
		Compact: func(t *testing.T, s store.Store) {
			for i := range 64 {
				if _, _, err := s.List(t.Context(), fmt.Sprintf("/compact-filler/%d/", i)); err != nil {
					t.Fatal(err)
				}
			}
		},
		Orphan: func(t *testing.T, key, value string, ttl time.Duration) {
			storetest.RunOrphan(t, "consul://"+addr, key, value, ttl)
		},
		TTL:      10 * time.Second, // Consul's minimum
		MaxValue: 1 << 20,          // the test agent's kv_max_value_size is 1.5 MiB
	})
}

func testTxnOverLimit(t *testing.T, addr string) {
	s := open(t, consul.Config{Address: addr})
	p := "/limit-" + t.Name() + "/"
	ops := make([]store.Op, 129)
	for i := range ops {
		ops[i] = store.Put(fmt.Sprintf("%s%03d", p, i), []byte("x"))
	}
	_, err := s.Txn(t.Context(), ops...)
	if err == nil || !strings.Contains(err.Error(), "limit of 128") {
		t.Fatalf("txn of 129 puts: %v, want an error naming the limit", err)
	}
	if kvs, _, err := s.List(t.Context(), p); err != nil || len(kvs) != 0 {
		t.Fatalf("after refused txn: %d keys, %v; want none", len(kvs), err)
	}
	// 128 fit.
	if _, err := s.Txn(t.Context(), ops[:128]...); err != nil {
		t.Fatalf("txn of 128 puts: %v", err)
	}
}

func testTTLPutTakesOverHeldKey(t *testing.T, addr string) {
	// A restarted owner: its previous run's session still holds the keys
	// (for up to 2×TTL); its new session must take them over, as a put
	// replaces a key's lease in etcd, and keep them when the old one goes.
	old, err := consul.New(t.Context(), consul.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	restarted := open(t, consul.Config{Address: addr})
	p := "/takeover/"
	var ops []store.Op
	// 60 keys: taken over at once, 121 Consul operations.
	const n = 60
	for i := range n {
		k := fmt.Sprintf("%sheld%03d", p, i)
		if _, err := old.Put(t.Context(), k, []byte("old"), store.WithTTL(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, store.Put(k, []byte("new"), store.WithTTL(10*time.Second)))
	}
	ops = append(ops, store.Put(p+"plain", []byte("x")))
	if _, err := restarted.Txn(t.Context(), ops...); err != nil {
		t.Fatalf("TTL puts of keys another session holds: %v", err)
	}
	old.Close() // destroys the old session: keys it still held would go
	kvs, _, err := restarted.List(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != n+1 {
		t.Fatalf("after the old session ended: %d keys, want %d", len(kvs), n+1)
	}
	for _, kv := range kvs[:n] {
		if string(kv.Value) != "new" {
			t.Fatalf("%s = %q, want new", kv.Key, kv.Value)
		}
	}
}

func testSessionLoss(t *testing.T, addr string) {
	s := open(t, consul.Config{Address: addr})
	p := "/session-loss/"
	for _, k := range []string{"a", "b"} {
		if _, err := s.Put(t.Context(), p+k, []byte("1"), store.WithTTL(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	// Destroy the store's session behind its back, as an outage longer than
	// the TTL would: Consul deletes the key.
	client, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	pair, _, err := client.KV().Get("session-loss/a", nil)
	if err != nil || pair == nil || pair.Session == "" {
		t.Fatalf("TTL key %+v, %v: want it bound to a session", pair, err)
	}
	if _, err := client.Session().Destroy(pair.Session, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), p+"a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("key after its session was destroyed: %v, want ErrNotFound", err)
	}
	// Meanwhile another writer puts b: its value is newer than the owner's
	// and must survive the owner's recovery.
	other := open(t, consul.Config{Address: addr})
	if _, err := other.Put(t.Context(), p+"b", []byte("newer")); err != nil {
		t.Fatal(err)
	}
	// The store notices at its next renewal (TTL/2) and puts it again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		kv, err := s.Get(t.Context(), p+"a")
		if err == nil {
			if string(kv.Value) != "1" {
				t.Fatalf("re-put value %q, want 1", kv.Value)
			}
			break
		}
		if !errors.Is(err, store.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("TTL key not re-put after session loss: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pair, _, err = client.KV().Get("session-loss/a", nil)
	if err != nil || pair == nil || pair.Session == "" {
		t.Fatalf("re-put key %+v, %v: want it bound to the new session", pair, err)
	}
	if kv, err := s.Get(t.Context(), p+"b"); err != nil || string(kv.Value) != "newer" {
		t.Fatalf("key written by another store during the loss: %+v, %v; want the newer value kept", kv, err)
	}
}

func TestUnreachableAgent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now

	// A listener that accepts connections and never answers, like a hung
	// agent: New must still give up within its dial timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()

	tests := []struct {
		name string
		cfg  consul.Config
	}{
		{name: "refused", cfg: consul.Config{Address: addr, DialTimeout: time.Second}},
		{name: "https to a closed port", cfg: consul.Config{Address: addr, Scheme: "https", DialTimeout: time.Second}},
		{name: "never answers", cfg: consul.Config{Address: silent.Addr().String(), DialTimeout: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := consul.New(t.Context(), tt.cfg)
			if err == nil {
				t.Fatal("New succeeded against a closed port")
			}
			if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), tt.cfg.Address) {
				t.Fatalf("error %q: want ErrUnavailable naming %s", err, tt.cfg.Address)
			}
			t.Logf("%v", err)
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("New took %s with a 1s dial timeout", d)
			}
		})
	}
}

func testBadConfig(t *testing.T, addr string) {
	missing := t.TempDir() + "/missing-ca.pem"
	tests := []struct {
		name string
		cfg  consul.Config
		want string
	}{
		{name: "no address", cfg: consul.Config{}, want: "no agent address"},
		{name: "bad scheme", cfg: consul.Config{Address: addr, Scheme: "ftp"}, want: `scheme "ftp"`},
		{name: "unreadable CA", cfg: consul.Config{Address: addr, Scheme: "https", CAFile: missing}, want: "TLS CA file: open " + missing},
		{name: "unreadable cert", cfg: consul.Config{Address: addr, CertFile: missing, KeyFile: missing}, want: "TLS certificate file: open " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := consul.New(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestACLDenial(t *testing.T) {
	t.Parallel()
	const mgmt = "3f1a9c9e-6d55-4c1e-9d43-4b7f0a6b2c11"
	acl := testenv.StartConsul(t, testenv.WithConsulACL(mgmt))
	admin, err := api.NewClient(&api.Config{Address: acl.Addr, Token: mgmt})
	if err != nil {
		t.Fatal(err)
	}
	// A token that may read nodes but has no KV rights at all.
	policy, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: "nodes-only", Rules: `node_prefix "" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := admin.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: policy.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := consul.New(t.Context(), consul.Config{Address: acl.Addr, Token: "00000000-0000-0000-0000-000000000000"}); !errors.Is(err, consul.ErrPermissionDenied) || !strings.Contains(err.Error(), "ACL token rejected") {
		t.Fatalf("New with an unknown token: %v, want a rejected-token error", err)
	}

	// A key the token may not see: a listing must not silently skip it.
	if _, err := admin.KV().Put(&api.KVPair{Key: "berth/denied", Value: []byte("orig")}, nil); err != nil {
		t.Fatal(err)
	}

	s := open(t, consul.Config{Address: acl.Addr, Token: token.SecretID})
	checks := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"get", func(ctx context.Context) error { _, err := s.Get(ctx, "/berth/denied"); return err }},
		{"list", func(ctx context.Context) error { _, _, err := s.List(ctx, "/berth/"); return err }},
		{"put", func(ctx context.Context) error { _, err := s.Put(ctx, "/berth/denied", []byte("x")); return err }},
		{"delete", func(ctx context.Context) error { _, err := s.Delete(ctx, "/berth/denied"); return err }},
		{"watch", func(ctx context.Context) error {
			for resp := range s.Watch(ctx, "/berth/", 0) {
				if resp.Err != nil {
					return resp.Err
				}
			}
			return nil
		}},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := c.call(ctx)
			if !errors.Is(err, consul.ErrPermissionDenied) || !strings.Contains(err.Error(), acl.Addr) {
				t.Fatalf("%s: %v, want ErrPermissionDenied naming %s", c.name, err, acl.Addr)
			}
			t.Logf("%s: %v", c.name, err)
		})
	}
	// Nothing was written.
	if pair, _, err := admin.KV().Get("berth/denied", nil); err != nil || pair == nil || string(pair.Value) != "orig" {
		t.Fatalf("denied key: %+v, %v; want it unchanged", pair, err)
	}
}

func TestAgentRestartEndsWatchWithCompacted(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	s := open(t, consul.Config{Address: c.Addr, WatchRetry: 30 * time.Second})
	p := "/restart/"
	for i := range 20 {
		if _, err := s.Put(t.Context(), fmt.Sprintf("%s%d", p, i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	_, rev, err := s.List(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(t.Context(), p, rev)
	// The dev agent keeps its state in memory: after a restart it is empty
	// and its index starts over.
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case resp, ok := <-ch:
		if !ok || !errors.Is(resp.Err, store.ErrCompacted) {
			t.Fatalf("watch across an agent restart: %+v (open %v), want ErrCompacted", resp, ok)
		}
		t.Logf("final response: %v", resp.Err)
	case <-time.After(40 * time.Second):
		t.Fatal("watch did not end after the agent restarted")
	}
	if _, ok := <-ch; ok {
		t.Fatal("watch channel open after its final response")
	}
}

func TestAgentGoneEndsWatchWithUnavailable(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	s := open(t, consul.Config{Address: c.Addr, WatchRetry: 2 * time.Second})
	ch := s.Watch(t.Context(), "/gone/", 0)
	c.Kill()
	select {
	case resp, ok := <-ch:
		if !ok || !errors.Is(resp.Err, store.ErrUnavailable) || !strings.Contains(resp.Err.Error(), c.Addr) {
			t.Fatalf("watch of a dead agent: %+v (open %v), want ErrUnavailable naming %s", resp, ok, c.Addr)
		}
		t.Logf("final response: %v", resp.Err)
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not give up on a dead agent")
	}
	// Plain calls fail fast too, naming the endpoint.
	if _, err := s.Get(t.Context(), "/gone/x"); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), c.Addr) {
		t.Fatalf("get from a dead agent: %v, want ErrUnavailable naming %s", err, c.Addr)
	}
}

func testWatchQuietPrefix(t *testing.T, addr string) {
	// A revision the store never listed is fine when nothing under the
	// prefix changed since: Put's own revision, for example.
	s := open(t, consul.Config{Address: addr})
	p := "/quiet/"
	rev, err := s.Put(t.Context(), p+"a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := s.Watch(ctx, p, rev)
	if _, err := s.Put(t.Context(), p+"b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-ch:
		if resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].KV.Key != p+"b" {
			t.Fatalf("watch from the put's revision: %+v, want one put of %sb", resp, p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
}

func testRelativeKeys(t *testing.T, addr string) {
	s := open(t, consul.Config{Address: addr})
	ctx := t.Context()
	errs := map[string]error{}
	_, errs["get"] = s.Get(ctx, "berth/x")
	_, _, errs["list"] = s.List(ctx, "berth/")
	_, errs["put"] = s.Put(ctx, "berth/x", []byte("1"))
	_, errs["delete"] = s.Delete(ctx, "berth/", store.WithPrefix())
	for resp := range s.Watch(ctx, "berth/", 0) {
		errs["watch"] = resp.Err
	}
	for op, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "keys must start with /") {
			t.Errorf("%s of a key without a leading slash: %v", op, err)
		}
	}
	// The empty prefix is every key.
	if _, _, err := s.List(ctx, ""); err != nil {
		t.Errorf("list of the empty prefix: %v", err)
	}
}

func TestHungAgentEndsWatchWithUnavailable(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	s := open(t, consul.Config{Address: c.Addr, DialTimeout: time.Second, BlockingWait: 2 * time.Second, WatchRetry: 2 * time.Second})
	ch := s.Watch(t.Context(), "/hung/", 0)
	// SIGSTOP: connections stay open, nothing answers.
	if err := c.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Thaw() })
	select {
	case resp, ok := <-ch:
		if !ok || !errors.Is(resp.Err, store.ErrUnavailable) || !strings.Contains(resp.Err.Error(), c.Addr) {
			t.Fatalf("watch of a hung agent: %+v (open %v), want ErrUnavailable naming %s", resp, ok, c.Addr)
		}
		t.Logf("final response: %v", resp.Err)
	case <-time.After(30 * time.Second):
		t.Fatal("watch did not give up on a hung agent")
	}
}

func testPlainPutDetaches(t *testing.T, addr string) {
	// In etcd a put without a lease detaches the key from its lease; in
	// Consul a plain set keeps the key's session, so the store must detach
	// it, or the key would go when its former owner does.
	owner, err := consul.New(t.Context(), consul.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	other := open(t, consul.Config{Address: addr})
	p := "/detach/"
	for _, k := range []string{"a", "b"} {
		if _, err := owner.Put(t.Context(), p+k, []byte("owner"), store.WithTTL(10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	rev, err := other.Txn(t.Context(), store.Put(p+"a", []byte("plain")), store.Put(p+"c", []byte("new")))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := other.Get(t.Context(), p+"a")
	if err != nil || string(kv.Value) != "plain" || kv.ModRevision != rev {
		t.Fatalf("get = %+v, %v; want plain at the txn's revision %d", kv, err, rev)
	}
	owner.Close() // its session goes, and the keys it still holds with it
	got, _, err := other.List(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range got {
		keys = append(keys, kv.Key+"="+string(kv.Value))
	}
	if want := []string{p + "a=plain", p + "c=new"}; !slices.Equal(keys, want) {
		t.Fatalf("after the owner closed: %q, want %q", keys, want)
	}
}
