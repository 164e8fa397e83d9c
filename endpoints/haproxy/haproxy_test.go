package haproxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/endpoints/haproxy"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
)

// backend is a real HTTP server on loopback that counts its requests.
type backend struct {
	name string
	addr netip.AddrPort
	hits atomic.Int64
	srv  *http.Server
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: netip.MustParseAddrPort(l.Addr().String())}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		fmt.Fprintln(w, name)
	})}
	go b.srv.Serve(l)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// stop closes the server gracefully: open requests finish.
func (b *backend) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.srv.Shutdown(ctx)
}

func (b *backend) server(draining bool) endpoints.Server {
	return endpoints.Server{ID: "c" + b.name + "/" + fmt.Sprint(b.addr.Port()), Addr: b.addr, Weight: 1, Draining: draining}
}

// proxyConf is a minimal haproxy.cfg with the given (empty) backends,
// routing by host through mapFile.
func proxyConf(h *testenv.HAProxy, mapFile string, backends ...string) string {
	var b strings.Builder
	b.WriteString(h.Global())
	fmt.Fprintf(&b, `defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch 1
frontend http
    bind %s
    use_backend %%[req.hdr(host),field(1,:),lower,map(%s)]
    default_backend no_host
backend no_host
    http-request return status 503
`, h.Addr, mapFile)
	for _, be := range backends {
		fmt.Fprintf(&b, "backend %s\n    balance roundrobin\n", be)
	}
	return b.String()
}

// startProxy starts HAProxy with backends and a host map kept by a Sink.
func startProxy(t *testing.T, opts []haproxy.Option, backends ...string) (*testenv.HAProxy, *haproxy.Sink) {
	t.Helper()
	h := testenv.NewHAProxy(t)
	mapFile := filepath.Join(h.Dir, haproxy.MapFile)
	sink, err := haproxy.New(h.Dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.Conf, []byte(proxyConf(h, mapFile, backends...)), 0o644); err != nil {
		t.Fatal(err)
	}
	h.Start(t)
	return h, sink
}

func upstream(name string, servers ...endpoints.Server) endpoints.Upstream {
	return endpoints.Upstream{Name: name, Host: name, Path: "/", Proto: "http", Servers: servers}
}

func set(ups ...endpoints.Upstream) endpoints.Set { return endpoints.Set{Upstreams: ups} }

func push(t *testing.T, s *haproxy.Sink, st endpoints.Set) {
	t.Helper()
	if err := s.Push(t.Context(), st); err != nil {
		t.Fatalf("push: %v", err)
	}
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSinkUnderLoad adds, drains and removes servers of a real HAProxy
// under a continuous load of 200 req/s: no request fails, HAProxy is never
// reloaded (same master, same worker), every new server serves, a
// draining server gets no new request, and removed servers are deleted.
func TestSinkUnderLoad(t *testing.T) {
	h, sink := startProxy(t, []haproxy.Option{haproxy.WithCheck(haproxy.Check{Inter: 100 * time.Millisecond, Rise: 1, Fall: 2})}, "a.localhost", "b.localhost")
	master, worker := h.MasterPID(), h.WorkerPID(t)
	b1, b2, b3 := newBackend(t, "1"), newBackend(t, "2"), newBackend(t, "3")
	push(t, sink, set(upstream("a.localhost", b1.server(false))))
	waitFor(t, "a.localhost served by b1", func() bool { _, body, _ := h.Get("a.localhost", "/"); return body == "1" })

	l := realparts.StartLoad(h.Addr, "a.localhost", 200, 4)
	defer l.Stop()
	pause := func() { time.Sleep(400 * time.Millisecond) }
	pause()

	// Add two servers and one whose port nobody listens on: its check keeps it out.
	deadAddr := netip.MustParseAddrPort(closedPort(t))
	dead := endpoints.Server{ID: "dead/1", Addr: deadAddr, Weight: 1}
	push(t, sink, set(upstream("a.localhost", b1.server(false), b2.server(false), b3.server(false), dead)))
	waitFor(t, "b2 and b3 serving", func() bool { return b2.hits.Load() > 5 && b3.hits.Load() > 5 })
	pause()
	for _, s := range serversState(t, h, "a.localhost") {
		if s.Addr == deadAddr && (s.Op != haproxy.OpStopped || s.Maint()) {
			t.Errorf("the server failing its check: op %d admin %#x, want down (by its check) and ready", s.Op, s.Admin)
		}
	}

	// Drain b1: no new requests reach it once the push returned.
	push(t, sink, set(upstream("a.localhost", b1.server(true), b2.server(false), b3.server(false), dead)))
	l.MarkDraining("1")
	pause()

	// Remove b1 and the dead one, then stop b1; a weight change on b3.
	w3 := b3.server(false)
	w3.Weight = 3
	final := set(upstream("a.localhost", b2.server(false), w3))
	push(t, sink, final)
	b1.stop()
	pause()
	res := l.Stop()
	// A removed server still holding connections is deleted by a later push
	// (endpoints.Pusher pushes every interval).
	waitFor(t, "removed servers deleted", func() bool { push(t, sink, final); return len(serverNames(t, h, "a.localhost")) == 2 })

	if res.Failed != 0 {
		t.Errorf("%d of %d requests failed: %q", res.Failed, res.Requests, res.Failures)
	}
	if res.Late != 0 {
		t.Errorf("draining b1 got %d new requests", res.Late)
	}
	if res.Requests < 200 {
		t.Errorf("only %d requests in the run", res.Requests)
	}
	if h.MasterPID() != master || h.WorkerPID(t) != worker {
		t.Errorf("HAProxy was reloaded: master %d→%d, worker %d→%d", master, h.MasterPID(), worker, h.WorkerPID(t))
	}
	st := serversState(t, h, "a.localhost")
	if len(st) != 2 || st[0].Name != haproxy.ServerName(b2.server(false).ID) || st[1].Name != haproxy.ServerName(w3.ID) {
		t.Fatalf("servers of a.localhost %+v, want b2 and b3 only", st)
	}
	for _, s := range st {
		if s.Op != haproxy.OpRunning || s.Maint() || s.Drain() || s.CheckState&0x4 == 0 {
			t.Errorf("server %s: op %d admin %#x check %#x, want up, ready, checked", s.Name, s.Op, s.Admin, s.CheckState)
		}
	}
	if st[1].Weight != 3 {
		t.Errorf("b3 weight %d, want 3", st[1].Weight)
	}
	t.Logf("%d requests, by backend %v", res.Requests, res.Seen)
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func serverNames(t *testing.T, h *testenv.HAProxy, backend string) []string {
	t.Helper()
	var names []string
	for _, s := range serversState(t, h, backend) {
		names = append(names, s.Name)
	}
	return names
}

func serversState(t *testing.T, h *testenv.HAProxy, backend string) []haproxy.ServerState {
	t.Helper()
	c, err := haproxy.NewClient(h.Socket).Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.ServersState(t.Context(), backend)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSinkRestartedProxy: HAProxy restarted by hand comes back with empty
// backends; one push later it serves the current endpoints, host map
// included.
func TestSinkRestartedProxy(t *testing.T) {
	h, sink := startProxy(t, nil, "a.localhost", "b.localhost")
	b1, b2 := newBackend(t, "1"), newBackend(t, "2")
	st := set(upstream("a.localhost", b1.server(false)), upstream("b.localhost", b2.server(false)))
	push(t, sink, st)
	for host, want := range map[string]string{"a.localhost": "1", "b.localhost": "2"} {
		if _, body, err := h.Get(host, "/"); err != nil || body != want {
			t.Fatalf("%s: %q %v, want %q", host, body, err, want)
		}
	}
	old := h.WorkerPID(t)
	h.Stop()
	h.Start(t)
	if code, _, _ := h.Get("a.localhost", "/"); code != 503 {
		t.Fatalf("restarted HAProxy answers %d before the push, want 503 (no server)", code)
	}
	push(t, sink, st)
	for host, want := range map[string]string{"a.localhost": "1", "b.localhost": "2"} {
		if _, body, err := h.Get(host, "/"); err != nil || body != want {
			t.Errorf("%s after one push to the restarted HAProxy: %q %v, want %q", host, body, err, want)
		}
	}
	if h.WorkerPID(t) == old {
		t.Errorf("worker pid %d unchanged: HAProxy was not restarted", old)
	}
}

// TestSinkUnavailable: with HAProxy down a push fails with ErrUnavailable
// and nothing else; once it is back the same push succeeds.
func TestSinkUnavailable(t *testing.T) {
	h, sink := startProxy(t, nil, "a.localhost")
	b1 := newBackend(t, "1")
	st := set(upstream("a.localhost", b1.server(false)))
	h.Stop()
	err := sink.Push(t.Context(), st)
	if !errors.Is(err, endpoints.ErrUnavailable) {
		t.Fatalf("push to a stopped HAProxy: %v, want ErrUnavailable", err)
	}
	h.Start(t)
	push(t, sink, st)
	if _, body, err := h.Get("a.localhost", "/"); err != nil || body != "1" {
		t.Errorf("after HAProxy came back: %q %v", body, err)
	}
}

// TestSinkRefused: a backend the configuration lacks is a refusal (not
// ErrUnavailable, the caller reloads) naming it; the rest of the set is
// applied. A server with an address HAProxy cannot take is left out.
func TestSinkRefused(t *testing.T) {
	h, sink := startProxy(t, nil, "a.localhost")
	b1 := newBackend(t, "1")
	bad := endpoints.Server{ID: "bad/80", Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), 80), Weight: 1}
	err := sink.Push(t.Context(), set(upstream("a.localhost", b1.server(false), bad), upstream("new.localhost", b1.server(false))))
	if err == nil || errors.Is(err, endpoints.ErrUnavailable) || !strings.Contains(err.Error(), `no backend "new.localhost"`) {
		t.Fatalf("push with a backend HAProxy lacks: %v", err)
	}
	if names := serverNames(t, h, "a.localhost"); len(names) != 1 || names[0] != haproxy.ServerName(b1.server(false).ID) {
		t.Errorf("servers of a.localhost %q: want only b1 (the unspecified address left out)", names)
	}
	if _, body, err := h.Get("a.localhost", "/"); err != nil || body != "1" {
		t.Errorf("a.localhost: %q %v", body, err)
	}
}

// TestSinkChanges: a changed address, weight or drain state is set in
// place (same server, same id); a server of the configuration (no
// NamePrefix) is left alone; an IPv6 server is added; pushing the same
// set again changes nothing.
func TestSinkChanges(t *testing.T) {
	h := testenv.NewHAProxy(t)
	mapFile := filepath.Join(h.Dir, haproxy.MapFile)
	sink, err := haproxy.New(h.Dir, haproxy.WithResync(0)) // every push of the same set reads everything
	if err != nil {
		t.Fatal(err)
	}
	lazy, err := haproxy.New(h.Dir, haproxy.WithResync(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	static := newBackend(t, "static")
	conf := proxyConf(h, mapFile, "a.localhost") + "    server static " + static.addr.String() + "\n"
	if err := os.WriteFile(h.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	h.Start(t)
	b1, b2 := newBackend(t, "1"), newBackend(t, "2")
	s1 := b1.server(false)
	v6 := endpoints.Server{ID: "six/80", Addr: netip.MustParseAddrPort("[::1]:9"), Weight: 1, Draining: true}
	push(t, sink, set(upstream("a.localhost", s1, v6)))
	before := serversState(t, h, "a.localhost")
	moved := s1
	moved.Addr, moved.Weight = b2.addr, 5
	push(t, sink, set(upstream("a.localhost", moved, v6)))
	push(t, sink, set(upstream("a.localhost", moved, v6))) // again: nothing to do
	after := serversState(t, h, "a.localhost")
	if len(after) != 3 {
		t.Fatalf("servers %+v, want static, s1 and the IPv6 one", after)
	}
	byName := map[string]haproxy.ServerState{}
	for _, s := range after {
		byName[s.Name] = s
	}
	got := byName[haproxy.ServerName(s1.ID)]
	var old haproxy.ServerState
	for _, s := range before {
		if s.Name == got.Name {
			old = s
		}
	}
	if got.Addr != b2.addr || got.Weight != 5 || got.ID != old.ID || got.ID == 0 {
		t.Errorf("moved server %+v (was %+v): want addr %s, weight 5, the same id", got, old, b2.addr)
	}
	if s := byName[haproxy.ServerName(v6.ID)]; s.Addr != v6.Addr || !s.Drain() {
		t.Errorf("IPv6 server %+v, want %s draining", s, v6.Addr)
	}
	if s, ok := byName["static"]; !ok || s.Maint() {
		t.Errorf("the configuration's server was touched: %+v", s)
	}
	// Undrain; then an empty set removes berth's servers, never the static one.
	v6.Draining = false
	push(t, sink, set(upstream("a.localhost", moved, v6)))
	for _, s := range serversState(t, h, "a.localhost") {
		if s.Drain() || s.Maint() {
			t.Errorf("after undrain, %s: admin %#x", s.Name, s.Admin)
		}
	}
	// A change by hand is undone by the next push of the same set (which
	// reads everything), though a push of a changed set reads only what
	// changed.
	c, err := haproxy.NewClient(h.Socket).Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Between resyncs, a push of the set applied last to the same worker
	// reads nothing: the change by hand stays until the resync.
	push(t, lazy, set(upstream("a.localhost", moved, v6)))
	if err := c.SetState(t.Context(), "a.localhost", haproxy.ServerName(v6.ID), haproxy.StateMaint); err != nil {
		t.Fatal(err)
	}
	push(t, lazy, set(upstream("a.localhost", moved, v6)))
	if s := serversState(t, h, "a.localhost"); !slices.ContainsFunc(s, haproxy.ServerState.Maint) {
		t.Errorf("a push of an unchanged set between resyncs read and repaired the servers: %+v", s)
	}
	push(t, sink, set(upstream("a.localhost", moved, v6)))
	for _, s := range serversState(t, h, "a.localhost") {
		if s.Maint() {
			t.Errorf("%s still in maintenance after a push", s.Name)
		}
	}
	push(t, sink, set())
	if names := serverNames(t, h, "a.localhost"); len(names) != 1 || names[0] != "static" {
		t.Errorf("after an empty set: %q, want [static]", names)
	}
}
