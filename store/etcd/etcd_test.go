package etcd_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

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
	server, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	endpoint := server.Client().Endpoints()[0]
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			s, err := etcd.New(t.Context(), etcd.Config{Endpoints: []string{endpoint}})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Compact: compact,
		Orphan: func(t *testing.T, key, value string, ttl time.Duration) {
			storetest.RunOrphan(t, "etcd://"+strings.TrimPrefix(endpoint, "http://"), key, value, ttl)
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
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error does not name the endpoint: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("unreachable endpoint took %s to fail", d)
	}
}
