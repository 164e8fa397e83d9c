package nginxlua_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/endpoints/nginxlua"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

const host = "app.localhost"

// backend is a local HTTP server answering with its name; Close stops it.
type backend struct {
	name string
	addr netip.AddrPort
	srv  *http.Server
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: l.Addr().(*net.TCPAddr).AddrPort()}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}
	go b.srv.Serve(l)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *backend) server(weight int, draining bool) endpoints.Server {
	return endpoints.Server{ID: b.name + "/" + strconv.Itoa(int(b.addr.Port())), Addr: b.addr, Weight: weight, Draining: draining}
}

func set(servers ...endpoints.Server) endpoints.Set {
	return endpoints.Set{Upstreams: []endpoints.Upstream{{Name: host, Host: host, Path: "/", Proto: "http", Servers: servers}}}
}

// liveNginx renders the shipped nginx-lua.tmpl (wrapped by nginx.conf.tmpl)
// in live mode for one host, with dictSize, and starts a real nginx on it.
func liveNginx(t testing.TB, dictSize string) (*testenv.Nginx, *nginxlua.Sink) {
	t.Helper()
	if err := nginxlua.CheckModule(""); err != nil {
		t.Fatal(err)
	}
	n := testenv.NewNginx(t)
	sink, err := nginxlua.New(filepath.Join(n.Dir, "live"))
	if err != nil {
		t.Fatal(err)
	}
	writeConf(t, n, sink.Dir(), dictSize, host)
	n.Start(t)
	return n, sink
}

func writeConf(t testing.TB, n *testenv.Nginx, dir, dictSize string, hosts ...string) {
	t.Helper()
	tm, err := dialect.Parse("../../templates/nginx.conf.tmpl", dialect.Options{Dialect: dialect.Native, Includes: []string{"../../templates/nginx-lua.tmpl"}})
	if err != nil {
		t.Fatal(err)
	}
	var kvs []store.KV
	for i, h := range hosts {
		in := records.Instance{ID: "seed" + strconv.Itoa(i), Name: "seed", Service: "web", Host: "h", IP: "127.0.0.1", Port: 1, Env: map[string]string{"VIRTUAL_HOST": h}, State: records.StateRunning}
		b, _ := json.Marshal(in)
		kvs = append(kvs, store.KV{Key: records.ServiceKey("", "web", "h", in.ID), Value: b})
	}
	env := map[string]string{"BERTH_LIVE": "nginx-lua", "BERTH_LIVE_DIR": dir, "BERTH_NGINX_LISTEN": n.Addr, "BERTH_NGINX_GRPC_LISTEN": "127.0.0.1:1", "BERTH_NGINX_LUA_DICT": dictSize}
	var buf bytes.Buffer
	if err := tm.Execute(&buf, dialect.Input{KVs: kvs, Env: env}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.Conf, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// workers lists nginx's worker pids (the master's children).
func workers(t *testing.T, n *testenv.Nginx) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Dir, "nginx.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	kids, err := os.ReadFile("/proc/" + pid + "/task/" + pid + "/children")
	if err != nil {
		t.Fatal(err)
	}
	return pid + ":" + strings.TrimSpace(string(kids))
}

func get(c *http.Client, n *testenv.Nginx) (string, error) {
	req, _ := http.NewRequest("GET", "http://"+n.Addr+"/", nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// waitFor waits until backend name has answered 30 more requests of l, and
// at least 200ms: each phase of a test runs under load for a while.
func waitFor(t *testing.T, l *realparts.Load, name string) {
	t.Helper()
	before := l.Seen(name)
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for l.Seen(name) < before+30 || time.Since(start) < 200*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("backend %s gets no requests", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func push(t *testing.T, sink *nginxlua.Sink, s endpoints.Set) {
	t.Helper()
	if err := sink.Push(t.Context(), s); err != nil {
		t.Fatal(err)
	}
}

// TestZeroReloadsUnderLoad: servers are added, drained and removed while a
// continuous load runs through a real nginx with the Lua module: no
// request fails, a drained server gets no request started after its drain
// was pushed, and nginx's master and workers stay the same processes (no
// reload).
func TestZeroReloadsUnderLoad(t *testing.T) {
	n, sink := liveNginx(t, "")
	b1, b2, b3 := newBackend(t, "b1"), newBackend(t, "b2"), newBackend(t, "b3")
	push(t, sink, set(b1.server(1, false)))
	procs := workers(t, n)
	l := realparts.StartLoad(n.Addr, host, 500, 4)
	waitFor(t, l, "b1")

	push(t, sink, set(b1.server(1, false), b2.server(1, false)))
	waitFor(t, l, "b2")
	push(t, sink, set(b1.server(1, false), b2.server(1, false), b3.server(2, false)))
	waitFor(t, l, "b3")
	// drain b1, then remove it and stop it
	push(t, sink, set(b1.server(1, true), b2.server(1, false), b3.server(2, false)))
	l.MarkDraining("b1")
	waitFor(t, l, "b2")
	push(t, sink, set(b2.server(1, false), b3.server(2, false)))
	b1.srv.Close()
	waitFor(t, l, "b3")
	// the same for b2: b3 alone is left
	push(t, sink, set(b2.server(1, true), b3.server(2, false)))
	l.MarkDraining("b2")
	waitFor(t, l, "b3")
	push(t, sink, set(b3.server(2, false)))
	b2.srv.Close()
	waitFor(t, l, "b3")
	res := l.Stop()

	if res.Failed > 0 {
		t.Errorf("%d of %d requests failed: %q", res.Failed, res.Requests, res.Failures)
	}
	if res.Late > 0 {
		t.Errorf("draining backends got %d new requests", res.Late)
	}
	if got := workers(t, n); got != procs {
		t.Errorf("nginx processes changed from %s to %s: it reloaded", procs, got)
	}
	if strings.Contains(n.ErrorLog(), "reconfiguring") {
		t.Errorf("nginx reloaded:\n%s", n.ErrorLog())
	}
	t.Logf("%d requests, %v, no reload (%s)", res.Requests, res.Seen, procs)
}

// TestWeightedRoundRobin: one worker answers sequential requests in exact
// proportion to the weights, and never from a draining server.
func TestWeightedRoundRobin(t *testing.T) {
	n, sink := liveNginx(t, "")
	b1, b2, b3 := newBackend(t, "b1"), newBackend(t, "b2"), newBackend(t, "b3")
	push(t, sink, set(b1.server(1, false), b2.server(3, false), b3.server(5, true)))
	c := &http.Client{}
	seen := map[string]int{}
	for range 40 {
		name, err := get(c, n)
		if err != nil {
			t.Fatal(err)
		}
		seen[name]++
	}
	if seen["b1"] != 10 || seen["b2"] != 30 || seen["b3"] != 0 {
		t.Errorf("answers %v, want b1:10 b2:30 (weights 1:3, b3 draining)", seen)
	}
	// every server draining: nginx's own (placeholder) server: 502
	push(t, sink, set(b1.server(1, true)))
	if _, err := get(c, n); err == nil || !strings.HasPrefix(err.Error(), "502") {
		t.Errorf("all servers draining: %v, want 502", err)
	}
}

// TestRestartServesCurrentEndpoints: a restarted nginx serves the last
// set at once (loaded from the state file), and one without the state
// file gets the whole set at the next push (a new generation).
func TestRestartServesCurrentEndpoints(t *testing.T) {
	n, sink := liveNginx(t, "")
	b1, b2 := newBackend(t, "b1"), newBackend(t, "b2")
	push(t, sink, set(b2.server(1, false)))
	push(t, sink, set(b1.server(1, false)))
	n.Stop()
	err := sink.Push(t.Context(), set(b1.server(1, false)))
	if !errors.Is(err, endpoints.ErrUnavailable) {
		t.Fatalf("push to a stopped nginx: %v, want ErrUnavailable", err)
	}
	n.Start(t)
	c := &http.Client{}
	if name, err := get(c, n); err != nil || name != "b1" {
		t.Fatalf("after a restart, before any push: %q %v, want b1", name, err)
	}
	if sink.Restarts() != 0 {
		t.Errorf("the state file's generation was not kept: %d restarts seen", sink.Restarts())
	}
	// someone restarts nginx and the state file is gone
	n.Stop()
	if err := os.Remove(filepath.Join(sink.Dir(), nginxlua.StateFile)); err != nil {
		t.Fatal(err)
	}
	n.Start(t)
	if _, err := get(c, n); err == nil {
		t.Fatalf("no state file, no push: served anyway")
	}
	push(t, sink, set(b1.server(1, false)))
	if name, err := get(c, n); err != nil || name != "b1" {
		t.Fatalf("after one push: %q %v, want b1", name, err)
	}
	if sink.Restarts() != 1 {
		t.Errorf("restarts seen %d, want 1", sink.Restarts())
	}
}

// TestRefusedPush: a set larger than the shared dict is refused with
// nginx's reason (not ErrUnavailable: the caller falls back to a reload),
// and a later push that fits applies whole.
func TestRefusedPush(t *testing.T) {
	n, sink := liveNginx(t, "64k")
	b1 := newBackend(t, "b1")
	big := set(b1.server(1, false))
	for i := range 3000 {
		name := fmt.Sprintf("filler-%04d.localhost", i)
		big.Upstreams = append(big.Upstreams, endpoints.Upstream{Name: name, Servers: []endpoints.Server{{ID: "x/1", Addr: netip.MustParseAddrPort("127.0.0.1:1"), Weight: 1}}})
	}
	err := sink.Push(t.Context(), big)
	if err == nil || errors.Is(err, endpoints.ErrUnavailable) || !strings.Contains(err.Error(), "no memory") {
		t.Fatalf("a set larger than the dict: %v, want a refusal naming no memory", err)
	}
	push(t, sink, set(b1.server(1, false)))
	if name, err := get(&http.Client{}, n); err != nil || name != "b1" {
		t.Fatalf("after a push that fits: %q %v, want b1", name, err)
	}
}

// TestUnreachable: no nginx at all is ErrUnavailable; a directory that is
// not absolute is refused; the directory is narrowed to 0700.
func TestUnreachable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "live")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sink, err := nginxlua.New(dir, nginxlua.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("live directory mode %v, want 0700", fi.Mode().Perm())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := sink.Push(ctx, set()); !errors.Is(err, endpoints.ErrUnavailable) {
		t.Errorf("no nginx: %v, want ErrUnavailable", err)
	}
	if _, err := nginxlua.New("relative/dir"); err == nil {
		t.Errorf("a relative directory is accepted")
	}
	if err := nginxlua.CheckModule(t.TempDir()); err == nil || !strings.Contains(err.Error(), "libnginx-mod-http-lua") {
		t.Errorf("missing module: %v, want the Debian package named", err)
	}
}

// TestRetriesAnotherServer: a server that refuses connections (a container
// registered before it listens) costs no request: nginx retries on
// another server of the set.
func TestRetriesAnotherServer(t *testing.T) {
	n, sink := liveNginx(t, "")
	b1 := newBackend(t, "b1")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	down := func(id string) endpoints.Server {
		return endpoints.Server{ID: id, Addr: refused, Weight: 1}
	}
	push(t, sink, set(b1.server(1, false), down("r1/1"), endpoints.Server{ID: "r2/1", Addr: netip.AddrPortFrom(refused.Addr(), refused.Port()+1), Weight: 1}))
	c := &http.Client{}
	for i := range 30 {
		if name, err := get(c, n); err != nil || name != "b1" {
			t.Fatalf("request %d: %q %v, want b1 (retried)", i, name, err)
		}
	}
}
