package backend_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
	"github.com/berthd/berth/store/etcd"
)

func TestOpenRejectsBadURLs(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"nosuch://x", `unknown scheme "nosuch"`},
		{"127.0.0.1:2379", "a store URL starts with embedded://"},
		{"etcd://", "no host:port"},
		{"etcd://h1:2379,,h2:2379", "empty host"},
		{"etcd://h1", `host "h1" has no port`},
		{"etcd://h1:2379/path", "unexpected path"},
		{"consul://", "one agent address"},
		{"consul://a:1,b:2", "one agent address"},
		{"embedded://host/dir", "takes a path"},
		{"embedded://", "no path"},
		{"embedded:///", "no path"},
		{"embedded:///x?y=1", "only a path"},
		{"file://host/etc/x.yaml", "takes a path"},
		{"file://", "no path"},
		{"%zz", "invalid URL escape"},
		{"env://host", "env takes nothing"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := backend.Open(t.Context(), tc.url)
			if !errors.Is(err, backend.ErrBadURL) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%q) = %v; want ErrBadURL containing %q", tc.url, err, tc.want)
			}
		})
	}
}

// TestOpenEachBackend opens every scheme against a real instance and reads
// one key through it.
func TestOpenEachBackend(t *testing.T) {
	t.Setenv("APP_PORT", "8080") // what env:// reads as /app/port
	dir := t.TempDir()
	values := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(values, []byte("app:\n  port: 8080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cluster := testenv.StartEtcd(t, 1)
	agent := testenv.StartConsul(t)
	for _, tc := range []struct {
		name, url string
		writable  bool
	}{
		{"embedded", "embedded://" + filepath.Join(dir, "store"), true},
		{"default embedded", "", true},
		{"etcd", cluster.URL(), true},
		{"consul", "consul://" + agent.Addr, true},
		{"file", "file://" + values, false},
		{"env", "env://", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := backend.Open(t.Context(), tc.url, backend.WithStateDir(filepath.Join(dir, "state")))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if tc.writable {
				if _, err := st.Put(t.Context(), "/app/port", []byte("8080")); err != nil {
					t.Fatal(err)
				}
			}
			kv, err := st.Get(t.Context(), "/app/port")
			if err != nil || string(kv.Value) != "8080" {
				t.Fatalf("get = %+v, %v", kv, err)
			}
			if !tc.writable {
				if _, err := st.Put(t.Context(), "/x", nil); !errors.Is(err, store.ErrReadOnly) {
					t.Fatalf("put on %s: %v, want ErrReadOnly", tc.name, err)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "store")); err != nil {
		t.Fatalf("default embedded store not under the state dir: %v", err)
	}
}

// TestOpenMustExist: with WithMustExist, a directory that holds no store is
// etcd.ErrNoStore naming the directory, and nothing is created there; a
// store made before (and not running) opens, unless WithJoinOnly.
func TestOpenMustExist(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo")
	for _, tc := range []struct{ name, url, stateDir, path string }{
		{"missing dir", "embedded://" + typo, dir, typo},
		{"empty dir", "embedded://" + dir, dir, dir},
		{"default under a state dir without a store", "", typo, filepath.Join(typo, "store")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := backend.Open(t.Context(), tc.url, backend.WithMustExist(), backend.WithStateDir(tc.stateDir))
			if err == nil {
				st.Close()
				t.Fatal("opened a store that does not exist")
			}
			if !errors.Is(err, etcd.ErrNoStore) || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("err = %v; want ErrNoStore naming %s", err, tc.path)
			}
		})
	}
	if _, err := os.Stat(typo); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the missing directory was created: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files created in a directory that holds no store: %v", ents)
	}

	made := filepath.Join(dir, "made")
	st, err := backend.Open(t.Context(), "embedded://"+made)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(t.Context(), "/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if st, err := backend.Open(t.Context(), "embedded://"+made, backend.WithJoinOnly()); !errors.Is(err, etcd.ErrNotServed) {
		if err == nil {
			st.Close()
		}
		t.Fatalf("join only, nobody serving: %v, want ErrNotServed", err)
	}
	st, err = backend.Open(t.Context(), "embedded://"+made, backend.WithMustExist())
	if err != nil {
		t.Fatalf("existing store: %v", err)
	}
	defer st.Close()
	if kv, err := st.Get(t.Context(), "/k"); err != nil || string(kv.Value) != "v" {
		t.Fatalf("get = %+v, %v", kv, err)
	}
}
