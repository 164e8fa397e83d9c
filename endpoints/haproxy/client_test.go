package haproxy_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/endpoints/haproxy"
)

// TestClientRefusals: every refusal of a real HAProxy is an error naming
// the command and the server, never ErrUnavailable; a server with
// connections refuses deletion with ErrServerBusy.
func TestClientRefusals(t *testing.T) {
	h, _ := startProxy(t, nil, "a.localhost")
	ctx := t.Context()
	c, err := haproxy.NewClient(h.Socket).Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := netip.MustParseAddrPort("127.0.0.1:9")
	if err := c.AddServer(ctx, "a.localhost", "s1", haproxy.NewServer{Addr: addr, ID: 7, Weight: 2}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		run  func() error
		want []string // substrings of the error
	}{
		{"duplicate name", func() error {
			return c.AddServer(ctx, "a.localhost", "s1", haproxy.NewServer{Addr: addr})
		}, []string{`"add server a.localhost/s1 127.0.0.1:9"`, "server a.localhost/s1", "Already exists"}},
		{"duplicate id", func() error {
			return c.AddServer(ctx, "a.localhost", "s2", haproxy.NewServer{Addr: addr, ID: 7})
		}, []string{"server a.localhost/s2", "custom id 7 already used"}},
		{"no backend", func() error { return c.SetState(ctx, "nope", "s1", haproxy.StateReady) }, []string{"server nope/s1", "No such backend"}},
		{"no server", func() error { return c.SetWeight(ctx, "a.localhost", "zz", 3) }, []string{`"set server a.localhost/zz weight 3"`, "No such server"}},
		{"weight", func() error { return c.SetWeight(ctx, "a.localhost", "s1", 300) }, []string{"server a.localhost/s1", "between 0 and 256"}},
		{"del not in maint", func() error {
			if err := c.SetState(ctx, "a.localhost", "s1", haproxy.StateReady); err != nil {
				return err
			}
			defer c.SetState(ctx, "a.localhost", "s1", haproxy.StateMaint)
			return c.DelServer(ctx, "a.localhost", "s1")
		}, []string{"del server a.localhost/s1", "maintenance"}},
		{"bad name", func() error {
			return c.AddServer(ctx, "a.localhost", "a+b", haproxy.NewServer{Addr: addr})
		}, []string{"server a.localhost/a+b", "not permitted"}},
		{"injection", func() error { return c.SetState(ctx, "a.localhost", "s1;shutdown", haproxy.StateReady) }, []string{"cannot be sent"}},
		{"del map key", func() error { return c.DelMap(ctx, h.Dir+"/"+haproxy.MapFile, "missing.localhost") }, []string{"del map", "Key not found"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, endpoints.ErrUnavailable) {
				t.Errorf("%v wraps ErrUnavailable", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not hold %q", err, w)
				}
			}
		})
	}
	// The connection still works after refusals, and the state reads back.
	st, err := c.ServersState(ctx, "a.localhost")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Name != "s1" || st[0].ID != 7 || st[0].Weight != 2 || st[0].Addr != addr || !st[0].Maint() {
		t.Errorf("servers state %+v", st)
	}
	for _, step := range []func() error{
		func() error { return c.SetAddr(ctx, "a.localhost", "s1", netip.MustParseAddrPort("127.0.0.2:10")) },
		func() error { return c.SetState(ctx, "a.localhost", "s1", haproxy.StateDrain) },
		func() error { return c.AddMap(ctx, h.Dir+"/"+haproxy.MapFile, "x.localhost", "a.localhost") },
		func() error { return c.SetMap(ctx, h.Dir+"/"+haproxy.MapFile, "x.localhost", "no_host") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	st, _ = c.ServersState(ctx, "a.localhost")
	if len(st) != 1 || st[0].Addr.String() != "127.0.0.2:10" || !st[0].Drain() || st[0].Maint() {
		t.Errorf("after set addr and drain: %+v", st)
	}
	m, err := c.ShowMap(ctx, h.Dir+"/"+haproxy.MapFile)
	if err != nil || len(m) != 1 || m[0] != (haproxy.MapEntry{Key: "x.localhost", Value: "no_host"}) {
		t.Errorf("map %v %v", m, err)
	}
	if err := c.SetState(ctx, "a.localhost", "s1", haproxy.StateMaint); err != nil {
		t.Fatal(err)
	}
	if err := c.DelServer(ctx, "a.localhost", "s1"); err != nil {
		t.Fatal(err)
	}
}

// TestClientDelBusy: a server in maintenance with a request in flight
// refuses deletion with ErrServerBusy; the request finishes, and the
// server is deleted once idle.
func TestClientDelBusy(t *testing.T) {
	h, _ := startProxy(t, nil, "a.localhost")
	ctx := t.Context()
	release := make(chan struct{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write([]byte("slow"))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := haproxy.NewClient(h.Socket).Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, step := range []func() error{
		func() error {
			return c.AddServer(ctx, "a.localhost", "slow", haproxy.NewServer{Addr: netip.MustParseAddrPort(l.Addr().String())})
		},
		func() error { return c.SetState(ctx, "a.localhost", "slow", haproxy.StateReady) },
		func() error { return c.AddMap(ctx, h.Dir+"/"+haproxy.MapFile, "a.localhost", "a.localhost") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan string, 1)
	go func() { _, body, err := h.Get("a.localhost", "/"); got <- fmt.Sprint(body, err) }()
	waitFor(t, "the request to reach the server", func() bool {
		st, _ := c.Run(ctx, "show", "servers", "conn", "a.localhost")
		for _, l := range strings.Split(st, "\n") {
			if f := strings.Fields(l); len(f) > 6 && f[0] == "a.localhost/slow" { // used_cur
				return f[6] != "0"
			}
		}
		return false
	})
	if err := c.SetState(ctx, "a.localhost", "slow", haproxy.StateMaint); err != nil {
		t.Fatal(err)
	}
	err = c.DelServer(ctx, "a.localhost", "slow")
	if !errors.Is(err, haproxy.ErrServerBusy) || !strings.Contains(err.Error(), "a.localhost/slow") {
		t.Fatalf("del server with a request in flight: %v, want ErrServerBusy", err)
	}
	close(release)
	if r := <-got; r != "slow<nil>" {
		t.Errorf("the request in flight got %q", r)
	}
	waitFor(t, "the idle server deleted", func() bool { return c.DelServer(ctx, "a.localhost", "slow") == nil })
}
