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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/endpoints/haproxy"
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
	mapFile := filepath.Join(h.Dir, "hosts.map")
	sink, err := haproxy.New(h.Socket, append([]haproxy.Option{haproxy.WithHostMap(mapFile)}, opts...)...)
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

func workerPID(t *testing.T, h *testenv.HAProxy) int {
	t.Helper()
	c, err := haproxy.NewClient(h.Socket).Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return in.PID
}

// load sends requests for host through HAProxy at about rate per second
// until stop, over keep-alive connections, and counts the failures (an
// error or a status other than 200) and the answers of each backend.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	by         map[string]int
	errs       []string
	stop       chan struct{}
	stopOnce   sync.Once
	done       sync.WaitGroup
}

func startLoad(h *testenv.HAProxy, host string, rate int) *load {
	l := &load{by: map[string]int{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	const workers = 4
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				req, _ := http.NewRequest("GET", "http://"+h.Addr+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				var body []byte
				if err == nil {
					body = make([]byte, 64)
					n, _ := resp.Body.Read(body)
					body = body[:n]
					resp.Body.Close()
				}
				l.mu.Lock()
				switch {
				case err != nil:
					l.failed.Add(1)
					l.errs = append(l.errs, err.Error())
				case resp.StatusCode != 200:
					l.failed.Add(1)
					l.errs = append(l.errs, fmt.Sprintf("status %d", resp.StatusCode))
				default:
					l.ok.Add(1)
					l.by[strings.TrimSpace(string(body))]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) finish() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.done.Wait()
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
	master, worker := h.MasterPID(), workerPID(t, h)
	b1, b2, b3 := newBackend(t, "1"), newBackend(t, "2"), newBackend(t, "3")
	push(t, sink, set(upstream("a.localhost", b1.server(false))))
	waitFor(t, "a.localhost served by b1", func() bool { _, body, _ := h.Get("a.localhost", "/"); return body == "1" })

	l := startLoad(h, "a.localhost", 200)
	defer l.finish()
	pause := func() { time.Sleep(400 * time.Millisecond) }
	pause()

	// Add two servers and one whose port nobody listens on: its check keeps it out.
	deadAddr := netip.MustParseAddrPort(closedPort(t))
	dead := endpoints.Server{ID: "dead/1", Addr: deadAddr, Weight: 1}
	push(t, sink, set(upstream("a.localhost", b1.server(false), b2.server(false), b3.server(false), dead)))
	waitFor(t, "b2 and b3 serving", func() bool { return b2.hits.Load() > 5 && b3.hits.Load() > 5 })
	pause()

	// Drain b1: no new requests reach it.
	push(t, sink, set(upstream("a.localhost", b1.server(true), b2.server(false), b3.server(false), dead)))
	time.Sleep(100 * time.Millisecond)
	before := b1.hits.Load()
	pause()
	if n := b1.hits.Load() - before; n != 0 {
		t.Errorf("draining b1 got %d new requests", n)
	}

	// Remove b1 and the dead one, then stop b1; a weight change on b3.
	w3 := b3.server(false)
	w3.Weight = 3
	push(t, sink, set(upstream("a.localhost", b2.server(false), w3)))
	b1.stop()
	pause()
	l.finish()

	if f := l.failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed: %q", f, f+l.ok.Load(), l.errs[:min(len(l.errs), 5)])
	}
	if l.ok.Load() < 200 {
		t.Errorf("only %d requests in the run", l.ok.Load())
	}
	if h.MasterPID() != master || workerPID(t, h) != worker {
		t.Errorf("HAProxy was reloaded: master %d→%d, worker %d→%d", master, h.MasterPID(), worker, workerPID(t, h))
	}
	names := serverNames(t, h, "a.localhost")
	want := []string{haproxy.ServerName(b2.server(false).ID), haproxy.ServerName(b3.server(false).ID)}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("servers of a.localhost %q, want %q", names, want)
	}
	t.Logf("%d requests, by backend %v", l.ok.Load(), l.by)
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
	c, err := haproxy.NewClient(h.Socket).Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.ServersState(t.Context(), backend)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range st {
		names = append(names, s.Name)
	}
	return names
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
	old := workerPID(t, h)
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
	if workerPID(t, h) == old {
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
