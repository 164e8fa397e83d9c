package haproxy_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/endpoints/haproxy"
	"github.com/berthd/berth/internal/testenv"
)

// BenchmarkPush times pushes to a real HAProxy with 1,000 backends of two
// servers each: "full" is the push to an empty HAProxy (a restart: 2,000
// servers added and enabled), "steady" a push with nothing to change
// between resyncs (one "show info": what the Pusher's push every second
// costs), "steady-resync" the same push reading and diffing every
// server (WithResync(0): what every such push cost before), "one" a push
// that adds one server and removes it again.
func BenchmarkPush(b *testing.B) {
	const backends = 1000
	h := testenv.NewHAProxy(b)
	mapFile := filepath.Join(h.Dir, haproxy.MapFile)
	sink, err := haproxy.New(h.Dir)
	if err != nil {
		b.Fatal(err)
	}
	resync, err := haproxy.New(h.Dir, haproxy.WithResync(0))
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	var set endpoints.Set
	for i := range backends {
		name := fmt.Sprintf("h%04d.localhost", i)
		names = append(names, name)
		set.Upstreams = append(set.Upstreams, endpoints.Upstream{Name: name, Host: name, Path: "/", Proto: "http", Servers: []endpoints.Server{
			{ID: fmt.Sprintf("c%04da/80", i), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 80), Weight: 1},
			{ID: fmt.Sprintf("c%04db/80", i), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 81), Weight: 1},
		}})
	}
	var conf strings.Builder
	conf.WriteString(proxyConf(h, mapFile, names...))
	if err := os.WriteFile(h.Conf, []byte(conf.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	h.Start(b)
	empty := endpoints.Set{}
	one := endpoints.Set{Upstreams: append([]endpoints.Upstream(nil), set.Upstreams...)}
	u := one.Upstreams[0]
	u.Servers = append(append([]endpoints.Server(nil), u.Servers...), endpoints.Server{ID: "extra/80", Addr: netip.MustParseAddrPort("10.9.255.1:80"), Weight: 1})
	one.Upstreams[0] = u
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			if err := sink.Push(b.Context(), empty); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := sink.Push(b.Context(), set); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("steady", func(b *testing.B) {
		for b.Loop() {
			if err := sink.Push(b.Context(), set); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("steady-resync", func(b *testing.B) {
		for b.Loop() {
			if err := resync.Push(b.Context(), set); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one", func(b *testing.B) {
		for b.Loop() {
			if err := sink.Push(b.Context(), one); err != nil {
				b.Fatal(err)
			}
			if err := sink.Push(b.Context(), set); err != nil {
				b.Fatal(err)
			}
		}
	})
}
