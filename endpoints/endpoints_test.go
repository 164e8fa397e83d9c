package endpoints_test

import (
	"bytes"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/records/recordstest"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
)

func inst(id, ip string, port int, env map[string]string) records.Instance {
	return records.Instance{ID: id, Name: "c-" + id, Service: "web", Host: "h1", IP: ip, Port: port, Env: env, State: records.StateRunning, Weight: 1}
}

func vh(h string) map[string]string { return map[string]string{"VIRTUAL_HOST": h} }

func srv(id, addr string, w int, draining bool) endpoints.Server {
	return endpoints.Server{ID: id, Addr: netip.MustParseAddrPort(addr), Weight: w, Draining: draining}
}

func TestUpstreamName(t *testing.T) {
	for _, tc := range []struct{ host, path, want string }{
		{"a.localhost", "/", "a.localhost"},
		{"a.localhost", "/api/", "a.localhost-" + sha("/api/")},
		{"*.example.com", "/", "_.example.com-" + sha("*.example.com")},
		{`~^(?<s>.+)\.x$`, "/", "_____s_.___.x_-" + sha(`~^(?<s>.+)\.x$`)},
	} {
		if got := endpoints.UpstreamName(tc.host, tc.path); got != tc.want {
			t.Errorf("UpstreamName(%q, %q) = %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestBuild(t *testing.T) {
	draining := inst("d1", "10.0.0.4", 80, vh("a.localhost"))
	draining.State = records.StateDraining
	weighted := inst("w1", "10.0.0.5", 80, vh("a.localhost"))
	weighted.Weight = 7
	zero := inst("z1", "10.0.0.6", 80, vh("a.localhost"))
	zero.Weight = 0
	stopped := inst("s1", "10.0.0.7", 80, vh("a.localhost"))
	stopped.State = "stopped"
	cases := []struct {
		name string
		in   []records.Instance
		want []endpoints.Upstream
		errs []string // substrings, one per error, in order
	}{
		{name: "empty", in: nil, want: []endpoints.Upstream{}},
		{
			name: "grouping",
			in: []records.Instance{
				inst("b", "10.0.0.2", 8080, vh("A.localhost, b.localhost")),
				inst("a", "10.0.0.1", 8080, vh("a.localhost")),
				inst("p", "10.0.0.3", 9000, map[string]string{"VIRTUAL_HOST": "a.localhost", "VIRTUAL_PATH": "/api/"}),
				inst("n", "", 80, vh("a.localhost")),                // no network: not proxied
				inst("q", "10.0.0.9", 0, vh("a.localhost")),         // no port: not proxied
				inst("r", "10.0.0.9", 80, map[string]string{}),      // no VIRTUAL_HOST
				inst("v6", "fd00::1", 80, vh("six.localhost")),      // bracketed by AddrPort
				inst("m", "::ffff:10.0.0.8", 80, vh("m.localhost")), // v4-mapped: plain v4
			},
			want: []endpoints.Upstream{
				{Name: "a.localhost", Host: "a.localhost", Path: "/", Proto: "http", Servers: []endpoints.Server{srv("a/8080", "10.0.0.1:8080", 1, false), srv("b/8080", "10.0.0.2:8080", 1, false)}},
				{Name: "a.localhost-" + sha("/api/"), Host: "a.localhost", Path: "/api/", Proto: "http", Servers: []endpoints.Server{srv("p/9000", "10.0.0.3:9000", 1, false)}},
				{Name: "b.localhost", Host: "b.localhost", Path: "/", Proto: "http", Servers: []endpoints.Server{srv("b/8080", "10.0.0.2:8080", 1, false)}},
				{Name: "m.localhost", Host: "m.localhost", Path: "/", Proto: "http", Servers: []endpoints.Server{srv("m/80", "10.0.0.8:80", 1, false)}},
				{Name: "six.localhost", Host: "six.localhost", Path: "/", Proto: "http", Servers: []endpoints.Server{srv("v6/80", "[fd00::1]:80", 1, false)}},
			},
		},
		{
			name: "states and weights",
			in:   []records.Instance{draining, weighted, zero, stopped},
			want: []endpoints.Upstream{{Name: "a.localhost", Host: "a.localhost", Path: "/", Proto: "http", Servers: []endpoints.Server{
				srv("d1/80", "10.0.0.4:80", 1, true), srv("w1/80", "10.0.0.5:80", 7, false), srv("z1/80", "10.0.0.6:80", 1, false),
			}}},
		},
		{
			name: "protocol conflict: the first wins",
			in: []records.Instance{
				inst("g", "10.0.0.1", 50051, map[string]string{"VIRTUAL_HOST": "rpc.localhost", "VIRTUAL_PROTO": "GRPC"}),
				inst("h", "10.0.0.2", 80, vh("rpc.localhost")),
			},
			want: []endpoints.Upstream{{Name: "rpc.localhost", Host: "rpc.localhost", Path: "/", Proto: "grpc", Servers: []endpoints.Server{srv("g/50051", "10.0.0.1:50051", 1, false)}}},
			errs: []string{`container "c-h" (h) is left out of rpc.localhost/: it is served over grpc, VIRTUAL_PROTO asks for http`},
		},
		{
			name: "hostile records are left out and reported",
			in: []records.Instance{
				inst("ok", "10.0.0.1", 80, vh("a.localhost")),
				inst("ip", "10.0.0.1; evil", 80, vh("a.localhost")),
				inst("zone", "fe80::1%eth0", 80, vh("a.localhost")),
				inst("port", "10.0.0.1", 70000, vh("a.localhost")),
				inst("neg", "10.0.0.1", -1, vh("a.localhost")),
				inst("path", "10.0.0.1", 80, map[string]string{"VIRTUAL_HOST": "a.localhost", "VIRTUAL_PATH": "/x;}"}),
				inst("proto", "10.0.0.1", 80, map[string]string{"VIRTUAL_HOST": "a.localhost", "VIRTUAL_PROTO": "uwsgi"}),
				inst("bad/id", "10.0.0.1", 80, vh("a.localhost")),
				inst("host", "10.0.0.2", 80, vh("bad;host, a.localhost")),
			},
			want: []endpoints.Upstream{{Name: "a.localhost", Host: "a.localhost", Path: "/", Proto: "http", Servers: []endpoints.Server{srv("host/80", "10.0.0.2:80", 1, false), srv("ok/80", "10.0.0.1:80", 1, false)}}},
			errs: []string{
				`container "c-ip" (ip) is left out: IP "10.0.0.1; evil": not an IP address`,
				`container "c-zone" (zone) is left out: IP "fe80::1%eth0"`,
				`container "c-port" (port) is left out: port 70000`,
				`container "c-neg" (neg) is left out: port -1`,
				`container "c-path" (path) is left out: VIRTUAL_PATH "/x;}"`,
				`container "c-proto" (proto) is left out: VIRTUAL_PROTO "uwsgi"`,
				`container "c-bad/id" (bad/id) is left out: id:`,
				`container "c-host" (host): VIRTUAL_HOST "bad;host" is left out`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set, errs := endpoints.Build(tc.in, endpoints.AtRevision(42))
			if set.Revision != 42 {
				t.Errorf("revision %d, want 42", set.Revision)
			}
			if !set.Equal(endpoints.Set{Upstreams: tc.want}) {
				t.Errorf("upstreams:\n got %+v\nwant %+v", set.Upstreams, tc.want)
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %q, want %d", errs, len(tc.errs))
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tc.errs[i]) {
					t.Errorf("error %d %q does not contain %q", i, e, tc.errs[i])
				}
			}
		})
	}
}

// TestBuildConfigServers: with WithConfigServers, an upstream's Config is
// the previous set's while the structure stays (so a live template's file
// stays byte-identical), and the current servers once it changes.
func TestBuildConfigServers(t *testing.T) {
	a1 := inst("a1", "10.0.0.1", 80, vh("a.localhost"))
	a2 := inst("a2", "10.0.0.2", 80, vh("a.localhost"))
	b1 := inst("b1", "10.0.0.3", 80, vh("b.localhost"))
	prev, _ := endpoints.Build([]records.Instance{a1})
	for _, tc := range []struct {
		name string
		in   []records.Instance
		want map[string][]string // upstream → Config server IDs
	}{
		{"same structure, a server more: the previous config", []records.Instance{a1, a2}, map[string][]string{"a.localhost": {"a1/80"}}},
		{"same structure, the server gone: the previous config", []records.Instance{a2}, map[string][]string{"a.localhost": {"a1/80"}}},
		{"a new upstream: the current servers", []records.Instance{a1, a2, b1}, map[string][]string{"a.localhost": {"a1/80", "a2/80"}, "b.localhost": {"b1/80"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, _ := endpoints.Build(tc.in, endpoints.WithConfigServers(prev), endpoints.AtGeneration(3))
			if set.Generation != 3 {
				t.Errorf("generation %d, want 3", set.Generation)
			}
			got := map[string][]string{}
			for _, u := range set.Upstreams {
				for _, s := range u.Config {
					got[u.Name] = append(got[u.Name], s.ID)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("config %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if !slices.Equal(got[k], v) {
					t.Errorf("config of %s %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestServerName(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"abc123/8080", "berth-abc123-8080"},
		{"a-1/2", "berth-a-1-2"},
		{"we ird/80", "berth-we_ird_80-x"},
		{"no-port", "berth-no-port-x"},
	} {
		got := endpoints.Server{ID: tc.id}.Name()
		if !strings.HasPrefix(got, tc.want) || strings.HasSuffix(tc.want, "-x") && len(got) != len(tc.want)+8 {
			t.Errorf("Name of %q = %q, want %q…", tc.id, got, tc.want)
		}
	}
	if (endpoints.Server{ID: "a b/1"}).Name() == (endpoints.Server{ID: "a_b/1"}).Name() {
		t.Error("distinct IDs share a server name")
	}
}

// TestBuildHostileCorpus runs every hostile value through VIRTUAL_HOST and
// VIRTUAL_PATH: the good name next to it is always served, a value valid in
// the field is served, and an invalid one is reported, never built.
func TestBuildHostileCorpus(t *testing.T) {
	for _, v := range recordstest.Corpus() {
		t.Run(v.Case, func(t *testing.T) {
			set, errs := endpoints.Build([]records.Instance{inst("x", "10.0.0.1", 80, vh("good.localhost,"+v.Value))})
			if _, ok := set.Upstream("good.localhost"); !ok {
				t.Errorf("good.localhost is not built next to %q", v.Value)
			}
			if got, want := len(errs) == 0, v.Valid(recordstest.Host); got != want {
				t.Errorf("VIRTUAL_HOST %q: errors %q, valid %v", v.Value, errs, want)
			}
			set, errs = endpoints.Build([]records.Instance{inst("x", "10.0.0.1", 80, map[string]string{"VIRTUAL_HOST": "good.localhost", "VIRTUAL_PATH": v.Value})})
			if got, want := len(set.Upstreams) == 1, v.Valid(recordstest.Path); got != want || (len(errs) == 0) != want {
				t.Errorf("VIRTUAL_PATH %q: built %v, errors %q, valid %v", v.Value, set.Upstreams, errs, want)
			}
			for _, u := range set.Upstreams {
				if !regexp.MustCompile(`^[A-Za-z0-9_.-]+$`).MatchString(u.Name) {
					t.Errorf("upstream name %q is not one bare token", u.Name)
				}
			}
		})
	}
}

// TestUpstreamNameMatchesNginxTemplate renders the shipped nginx.tmpl over
// its test fixture and checks that its upstreams are exactly Build's names.
func TestUpstreamNameMatchesNginxTemplate(t *testing.T) {
	tm, err := dialect.Parse("../templates/nginx.tmpl", dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	fx, err := render.ReadFixture("../templates/testdata/mixed.json")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tm.Execute(&buf, fx.Input([]string{"/berth/services/"})); err != nil {
		t.Fatal(err)
	}
	var rendered []string
	for _, m := range regexp.MustCompile(`(?m)^upstream (\S+) \{`).FindAllSubmatch(buf.Bytes(), -1) {
		rendered = append(rendered, string(m[1]))
	}
	var instances []records.Instance
	for _, kv := range fx.KVs {
		var in records.Instance
		if err := jsonUnmarshal(kv.Value, &in); err != nil {
			t.Fatal(err)
		}
		instances = append(instances, in)
	}
	set, _ := endpoints.Build(instances)
	var built []string
	for _, u := range set.Upstreams {
		built = append(built, u.Name)
	}
	slices.Sort(rendered)
	if len(built) == 0 || !slices.Equal(built, rendered) {
		t.Fatalf("nginx.tmpl's upstreams %q, Build's %q", rendered, built)
	}
}
