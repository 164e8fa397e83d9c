package catalog_test

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthd/berth/catalog"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/hashicorp/consul/api"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func consulClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newCatalog is a catalog over the agent at addr with quick retries.
func newCatalog(t *testing.T, addr string) *catalog.Catalog {
	return catalog.New(t.Context(), consulClient(t, addr),
		catalog.WithLogger(testLogger()), catalog.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
}

// tmplConf is a native template writing dest from the file src.
func tmplConf(name, src, dest string) config.Template {
	return config.Template{
		Name: name, Src: src, Origin: "test",
		Options: dialect.Options{Dialect: dialect.Native},
		Spec:    render.Spec{Name: name, Dest: dest, AllowEmpty: true},
	}
}

func newRunner(st store.Store, cat *catalog.Catalog, opts ...runner.Option) *runner.Runner {
	return runner.New(st, render.New(render.WithLogger(testLogger())),
		append([]runner.Option{runner.WithLogger(testLogger()), runner.WithSources(catalog.Keys, cat.Open)}, opts...)...)
}

// run runs r over templates until the test ends.
func run(t *testing.T, r *runner.Runner, templates ...config.Template) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, templates) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitFile waits until the file at path satisfies ok and returns it.
func waitFile(t *testing.T, path string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && ok(string(b)) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became as expected; it is:\n%s (err %v)", path, b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// golden compares got with testdata/name.golden (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, p, got, want)
	}
}

// service registers a service with a TTL check in state status on the
// agent (no check when status is "").
func service(t *testing.T, c *api.Client, id, name, addr string, port int, tags []string, meta map[string]string, status string) {
	t.Helper()
	reg := &api.AgentServiceRegistration{ID: id, Name: name, Address: addr, Port: port, Tags: tags, Meta: meta}
	if status != "" {
		reg.Check = &api.AgentServiceCheck{CheckID: "ttl:" + id, TTL: "10m", Status: status}
	}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
}

func setTTL(t *testing.T, c *api.Client, id, status string) {
	t.Helper()
	if err := c.Agent().UpdateTTL("ttl:"+id, "set by the test", status); err != nil {
		t.Fatal(err)
	}
}

// waitCatalog waits until the catalog (read through c) lists want
// instances of service name, any health.
func waitCatalog(t *testing.T, c *api.Client, name string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _, err := c.Health().Service(name, "", false, nil)
		if err == nil && len(entries) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s: %d instances in the catalog (err %v), want %d", name, len(entries), err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// seed registers the services of the golden tests: web on both nodes
// (one critical instance), api on the client.
func seed(t *testing.T, pair *testenv.ConsulPair) (client, server *api.Client) {
	client, server = consulClient(t, pair.Client.Addr), consulClient(t, pair.Server.Addr)
	service(t, client, "web-1", "web", "10.0.0.1", 8081, []string{"v1", "prod"}, map[string]string{"version": "1"}, api.HealthPassing)
	service(t, client, "web-2", "web", "10.0.0.2", 8082, []string{"prod", "canary"}, nil, api.HealthCritical)
	service(t, client, "api-1", "api", "", 9000, []string{"internal"}, nil, "")
	service(t, server, "web-3", "web", "10.0.0.3", 8083, []string{"prod"}, nil, api.HealthPassing)
	kv := client.KV()
	for k, v := range map[string]string{"app/greeting": "hello", "app/limits/rps": "100", "app/limits/burst": "20"} {
		if _, err := kv.Put(&api.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitCatalog(t, client, "web", 3)
	waitCatalog(t, client, "api", 1)
	return client, server
}

// countingProxy is a fault-free reverse proxy in front of a Consul agent
// that counts the requests whose path starts with prefix.
type countingProxy struct {
	URL    string
	prefix string
	n      atomic.Int64
	last   atomic.Value // the raw query of the last counted request
}

func (p *countingProxy) lastQuery() string { s, _ := p.last.Load().(string); return s }

func newCountingProxy(t *testing.T, agent, prefix string) *countingProxy {
	u, _ := url.Parse("http://" + agent)
	p := &countingProxy{prefix: prefix}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, p.prefix) {
			p.n.Add(1)
			p.last.Store(r.URL.RawQuery)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// settled returns the count once it stopped moving for a moment (the
// next blocking query of every watch has been sent).
func (p *countingProxy) settled() int64 {
	last := p.n.Load()
	for stable := 0; stable < 5; {
		time.Sleep(50 * time.Millisecond)
		if n := p.n.Load(); n != last {
			last, stable = n, 0
		} else {
			stable++
		}
	}
	return last
}

// reaches waits until HTTP through nginx reaches exactly the backends want.
func reaches(t *testing.T, n *testenv.Nginx, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(30 * time.Second)
	var got []string
	for {
		seen := map[string]bool{}
		for range 8 * max(len(want), 1) {
			if code, body, err := n.Get("", "/"); err == nil && code == http.StatusOK {
				seen[strings.TrimSpace(body)] = true
			}
		}
		got = slices.Sorted(maps.Keys(seen))
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(n.Conf)
			t.Fatalf("nginx reaches %v, want %v\nnginx.conf:\n%s\nerror.log:\n%s", got, want, b, n.ErrorLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
