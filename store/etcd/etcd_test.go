package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/store/storetest"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envChildDir); dir != "" {
		os.Exit(storeChild(dir))
	}
	storetest.Main(m)
}

// compact compacts the etcd behind s at its current revision.
func compact(t *testing.T, s store.Store) {
	t.Helper()
	cli := s.(*etcd.Store).Client()
	resp, err := cli.Get(t.Context(), "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(t.Context(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
}

func TestConformanceEmbedded(t *testing.T) {
	dir := t.TempDir()
	server, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	storetest.Run(t, storetest.Harness{
		// Every other store joins the server, as berth's CLI does, with
		// the directory's client certificate.
		Open: func(t *testing.T) store.Store {
			s, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir, MustExist: true})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Compact: compact,
		Orphan: func(t *testing.T, key, value string, ttl time.Duration) {
			storetest.RunOrphan(t, "embedded://"+dir, key, value, ttl)
		},
		TTL:       2 * time.Second,
		MaxValue:  1 << 20,
		OverLimit: 9 << 20, // the embedded server accepts requests up to 8 MiB
	})
}

func TestConformanceEtcdProcess(t *testing.T) {
	cluster := testenv.StartEtcd(t, 1)
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			s, err := etcd.New(t.Context(), etcd.Config{Endpoints: cluster.Endpoints()})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Compact: compact,
		Orphan: func(t *testing.T, key, value string, ttl time.Duration) {
			storetest.RunOrphan(t, cluster.URL(), key, value, ttl)
		},
		TTL:      2 * time.Second,
		MaxValue: 1 << 20, // etcd's default request limit is 1.5 MiB
	})
}

func TestUnreachable(t *testing.T) {
	start := time.Now()
	_, err := etcd.New(t.Context(), etcd.Config{Endpoints: []string{"127.0.0.1:1"}, DialTimeout: 500 * time.Millisecond})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error does not name the endpoint: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("unreachable endpoint took %s to fail", d)
	}
}

func TestTLS(t *testing.T) {
	certs := testenv.GenerateCerts(t)
	cluster := testenv.StartEtcd(t, 1, testenv.WithEtcdClientTLS(certs.ServerCert, certs.ServerKey, certs.CA))
	tests := []struct {
		name    string
		cfg     etcd.Config
		wantErr string
	}{
		{"client cert", etcd.Config{CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, ""},
		{"no client cert", etcd.Config{CAFile: certs.CA}, "tls: bad certificate"},
		{"wrong CA", etcd.Config{CAFile: certs.OtherCA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, "certificate signed by unknown authority"},
		{"unreadable key", etcd.Config{CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: "/nonexistent/key.pem"}, "/nonexistent/key.pem"},
		{"cert without key", etcd.Config{CAFile: certs.CA, CertFile: certs.ClientCert}, "needs both cert and key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Endpoints = []string{"https://" + cluster.Endpoints()[0]}
			cfg.DialTimeout = 2 * time.Second
			s, err := etcd.New(t.Context(), cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if _, err := s.Put(t.Context(), "/tls/k", []byte("v")); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("connected; want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestUsernamePassword(t *testing.T) {
	cluster := testenv.StartEtcd(t, 1)
	admin, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := t.Context()
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	good, err := etcd.New(ctx, etcd.Config{Endpoints: cluster.Endpoints(), Username: "root", Password: "rootpw"})
	if err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	defer good.Close()
	if _, err := good.Put(ctx, "/auth/k", []byte("v"), store.WithTTL(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = etcd.New(ctx, etcd.Config{Endpoints: cluster.Endpoints(), Username: "root", Password: "wrong", DialTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("wrong password: err = %v, want authentication failed", err)
	}
	_, err = etcd.New(ctx, etcd.Config{Endpoints: cluster.Endpoints(), DialTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "user name is empty") {
		t.Fatalf("no credentials: err = %v, want the server's refusal", err)
	}
}

// TestClusterMemberDeath: with a three-member cluster, killing a member
// (the leader, if the client's first endpoint leads) loses no write and no
// change: a watch may end with ErrUnavailable, and resuming from the last
// revision it saw delivers the rest.
func TestClusterMemberDeath(t *testing.T) {
	cluster := testenv.StartEtcd(t, 3)
	s, err := etcd.New(t.Context(), etcd.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	_, rev, err := s.List(ctx, "/c/")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	last := rev
	ch := s.Watch(ctx, "/c/", last)
	const n = 60
	for i := range n {
		if i == n/3 {
			cluster.Members[0].Kill()
		}
		if i == 2*n/3 {
			if err := cluster.Members[0].Start(); err != nil {
				t.Fatal(err)
			}
		}
		key := fmt.Sprintf("/c/%03d", i)
		deadline := time.Now().Add(20 * time.Second)
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := s.Put(pctx, key, []byte("v"))
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("put %s: %v", key, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	deadline := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case resp, ok := <-ch:
			if !ok || resp.Err != nil {
				if resp.Err != nil && !errors.Is(resp.Err, store.ErrUnavailable) {
					t.Fatalf("watch ended with %v", resp.Err)
				}
				ch = s.Watch(ctx, "/c/", last) // resume where it stopped
				continue
			}
			for _, ev := range resp.Events {
				seen[ev.KV.Key] = true
				last = ev.KV.ModRevision
			}
		case <-deadline:
			t.Fatalf("saw %d of %d puts", len(seen), n)
		}
	}
}

// TestLeaseLost: the cluster is frozen for longer than the TTL, so the
// lease expires; the store grants a new one and writes its keys again.
func TestLeaseLost(t *testing.T) {
	cluster := testenv.StartEtcd(t, 1)
	s, err := etcd.New(t.Context(), etcd.Config{Endpoints: cluster.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.Put(ctx, "/lease/k", []byte("mine"), store.WithTTL(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	before, err := s.Client().Get(ctx, "/lease/k")
	if err != nil {
		t.Fatal(err)
	}
	oldLease := before.Kvs[0].Lease
	if err := cluster.Members[0].Freeze(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if err := cluster.Members[0].Thaw(); err != nil {
		t.Fatal(err)
	}
	// The old lease expires on thaw; the key must come back on a new lease
	// and then stay.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := s.Client().Get(ctx, "/lease/k")
		if err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].Lease != oldLease {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key not re-written on a new lease: %v %v", resp, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)
	if kv, err := s.Get(ctx, "/lease/k"); err != nil || string(kv.Value) != "mine" {
		t.Fatalf("re-written key did not stay: %+v, %v", kv, err)
	}
}

// TestEmbeddedConcurrentOpen opens one embedded directory from several
// goroutines at once (as a daemon and CLI commands starting together do):
// exactly one serves, the others join it, and all see the same data.
func TestEmbeddedConcurrentOpen(t *testing.T) {
	dir := t.TempDir()
	const n = 4
	stores := make([]*etcd.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	// Close the joiners before the server: stores[i] that serve are the
	// ones whose Close stops the server; order does not matter for data.
	if _, err := stores[0].Put(t.Context(), "/shared", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		if kv, err := stores[i].Get(t.Context(), "/shared"); err != nil || string(kv.Value) != "x" {
			t.Fatalf("store %d does not see the others' data: %+v, %v", i, kv, err)
		}
	}
	for _, s := range stores {
		s.Close()
	}
}

// TestEmbeddedSurvivesRestart: the embedded store keeps its data across a
// stop and a start on the same directory, and starts within a second.
func TestEmbeddedSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := st.Put(t.Context(), "/persist/k", []byte("kept"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	start := time.Now()
	st, err = etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t.Logf("restart took %s", time.Since(start))
	kv, err := st.Get(t.Context(), "/persist/k")
	if err != nil || string(kv.Value) != "kept" || kv.ModRevision != rev {
		t.Fatalf("after restart: %+v, %v (want kept at revision %d)", kv, err, rev)
	}
}
