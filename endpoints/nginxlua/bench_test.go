package nginxlua_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/berthd/berth/endpoints"
)

// BenchmarkPush times a push to a real nginx with the Lua module whose set
// has 1,000 upstreams of one server each: one server added to the first
// upstream, then removed again (what a container starting or stopping
// costs at a thousand virtual hosts, the state file included).
func BenchmarkPush(b *testing.B) {
	_, sink := liveNginx(b, "32m")
	var base endpoints.Set
	for i := range 1000 {
		name := fmt.Sprintf("h%04d.localhost", i)
		base.Upstreams = append(base.Upstreams, endpoints.Upstream{Name: name, Host: name, Path: "/", Proto: "http", Servers: []endpoints.Server{
			{ID: fmt.Sprintf("c%04d/80", i), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 80), Weight: 1},
		}})
	}
	one := endpoints.Set{Upstreams: append([]endpoints.Upstream(nil), base.Upstreams...)}
	u := one.Upstreams[0]
	u.Servers = append(append([]endpoints.Server(nil), u.Servers...), endpoints.Server{ID: "extra/80", Addr: netip.MustParseAddrPort("10.9.255.1:80"), Weight: 1})
	one.Upstreams[0] = u
	if err := sink.Push(b.Context(), base); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		s := base
		if i++; i%2 == 1 {
			s = one
		}
		if err := sink.Push(b.Context(), s); err != nil {
			b.Fatal(err)
		}
	}
}
