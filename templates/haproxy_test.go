package templates_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/endpoints/haproxy"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/records/recordstest"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/templates"
)

// haproxyEnv is the settings of a live rendering for the HAProxy h, as
// the runner sets them for live = "haproxy" with h.Dir as the live
// directory.
func haproxyEnv(h *testenv.HAProxy) map[string]string {
	return map[string]string{"BERTH_HAPROXY_LISTEN": h.Addr, "BERTH_LIVE": "haproxy", "BERTH_LIVE_DIR": h.Dir}
}

var haproxyLiveEnv = map[string]string{"BERTH_LIVE": "haproxy", "BERTH_LIVE_DIR": "/run/berth/live/haproxy"}

func TestHAProxyGolden(t *testing.T) {
	cases := []struct {
		name, fixture string
		env           map[string]string
	}{
		{"haproxy-mixed", "mixed.json", haproxyLiveEnv},
		{"haproxy-empty", "empty.json", haproxyLiveEnv},
		{"haproxy-routes", "haproxy-routes.json", map[string]string{"BERTH_HAPROXY_LISTEN": "127.0.0.1:8080",
			"BERTH_LIVE": "haproxy", "BERTH_LIVE_DIR": "/run/berth/live/haproxy", "BERTH_HAPROXY_BALANCE": "leastconn"}},
		{"haproxy-static", "haproxy-routes.json", map[string]string{}}, // berth render, or the fallback: servers in the file
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := renderWith(t, "haproxy.cfg.tmpl", nil, filepath.Join("testdata", tc.fixture), tc.env)
			golden := filepath.Join("testdata", "golden", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./templates -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("haproxy.cfg.tmpl over %s differs from %s:\n%s", tc.fixture, golden, render.Diff(golden, "rendered", want, got))
			}
		})
	}
}

func TestHAProxyEmbedded(t *testing.T) {
	b, err := fs.ReadFile(templates.Files(), "haproxy.cfg.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	if disk, _ := os.ReadFile("haproxy.cfg.tmpl"); !bytes.Equal(b, disk) {
		t.Fatal("embedded haproxy.cfg.tmpl differs from the file")
	}
}

// TestHAProxySettingsChecked: a bad setting fails the render, naming it.
func TestHAProxySettingsChecked(t *testing.T) {
	tm, err := dialect.Parse("haproxy.cfg.tmpl", dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"BERTH_HAPROXY_LISTEN":  ":80\n    stats socket /tmp/x level admin",
		"BERTH_LIVE_DIR":        "/tmp/m),lower,map(/etc/x",
		"BERTH_HAPROXY_BALANCE": "random",
	} {
		err := tm.Execute(&bytes.Buffer{}, dialect.Input{Env: map[string]string{"BERTH_LIVE": "haproxy", k: v}})
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: %v, want an error naming it", k, v, err)
		}
	}
}

// haproxyCheck runs the real haproxy -c over a whole haproxy.cfg.
func haproxyCheck(t *testing.T, h *testenv.HAProxy, conf []byte) {
	t.Helper()
	if err := os.WriteFile(h.Conf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	check := strings.ReplaceAll(h.CheckCommand(), "{{.src}}", h.Conf)
	if out, err := (render.Exec{}).Run(t.Context(), []string{"/bin/sh", "-c", check}); err != nil {
		t.Fatalf("haproxy -c rejects the rendered config: %v\n%s\n%s", err, out, conf)
	}
}

// newHAProxy is a prepared HAProxy with its (empty) host map in place.
func newHAProxy(t *testing.T) *testenv.HAProxy {
	h := testenv.NewHAProxy(t)
	if err := os.WriteFile(filepath.Join(h.Dir, haproxy.MapFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHAProxyAcceptsOutput(t *testing.T) {
	for _, fixture := range []string{"mixed.json", "empty.json", "haproxy-routes.json", "ipv6.json"} {
		for _, live := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/live=%v", fixture, live), func(t *testing.T) {
				h := newHAProxy(t)
				env := haproxyEnv(h)
				if !live {
					env["BERTH_LIVE"] = ""
				}
				haproxyCheck(t, h, renderWith(t, "haproxy.cfg.tmpl", nil, filepath.Join("testdata", fixture), env))
			})
		}
	}
}

// haproxyWords are the first words of every line haproxy.cfg.tmpl writes.
var haproxyWords = []string{"global", "stats", "defaults", "mode", "timeout", "retries", "option", "frontend", "bind",
	"http-request", "use_backend", "default_backend", "backend", "balance", "server",
	"ssl-load-extra-del-ext", "acl", "http-response"} // HTTPS (https_hostile_test.go)

// haproxyServer is the one shape of a server line the template writes.
var haproxyServer = regexp.MustCompile(`^server berth-[A-Za-z0-9_.-]+ (\d+\.\d+\.\d+\.\d+|\[[0-9a-f:.]+\]):\d+ weight \d+( ssl verify none| proto h2| ssl verify none alpn h2)?$`)

// haproxyBackends checks every line of a rendered haproxy.cfg is one the
// template writes, and returns the backends it declares.
func haproxyBackends(t *testing.T, conf []byte) []string {
	t.Helper()
	var backends []string
	for i, line := range strings.Split(string(conf), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if !slices.Contains(haproxyWords, f[0]) {
			t.Fatalf("line %d: %q is no line of the template:\n%s", i+1, line, conf)
		}
		if f[0] == "server" && !haproxyServer.MatchString(line) {
			t.Fatalf("line %d: %q is not a server line the template writes:\n%s", i+1, line, conf)
		}
		if f[0] == "backend" {
			backends = append(backends, f[1])
		}
	}
	return backends
}

// TestHAProxyHostileRecords puts each corpus value into each routing field
// of a raw record next to a good record: the real haproxy -c accepts every
// rendering, no line is injected, the good upstream is there, and the
// hostile record makes a backend only when its value is legitimately
// valid.
func TestHAProxyHostileRecords(t *testing.T) {
	tm, err := dialect.Parse("haproxy.cfg.tmpl", dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	h := newHAProxy(t)
	good := records.Instance{ID: "good", Name: "good-1", Service: "web", Host: "h1", IP: "127.0.0.2", Port: 8080,
		State: records.StateRunning, Env: map[string]string{"VIRTUAL_HOST": "good.localhost"}}
	checked := map[string]bool{} // renderings haproxy -c accepted already
	for _, f := range []recordstest.Field{recordstest.Host, recordstest.Path, recordstest.Proto, recordstest.Name} {
		for _, v := range recordstest.Corpus() {
			t.Run(string(f)+"/"+v.Case, func(t *testing.T) {
				key, bad, _ := hostileRecord(f, v.Value)
				kvs := instanceKVs(map[string]records.Instance{records.ServiceKey("/berth", good.Service, good.Host, good.ID): good, key: bad})
				var out bytes.Buffer
				var set endpoints.Set
				in := dialect.Input{KVs: kvs, Env: haproxyEnv(h), Warn: func(string) {}, Endpoints: func(s endpoints.Set) { set = s }}
				if err := tm.Execute(&out, in); err != nil {
					t.Fatal(err)
				}
				backends := haproxyBackends(t, out.Bytes())
				want := []string{"berth_no_host"}
				for _, u := range set.Upstreams {
					want = append(want, u.Name)
				}
				if !slices.Equal(backends, want) || !slices.Contains(backends, "good.localhost") {
					t.Fatalf("backends %q, want %q (good.localhost among them)\n%s", backends, want, out.Bytes())
				}
				if f == recordstest.Host && !v.Valid(recordstest.Host) && len(set.Upstreams) != 1 {
					t.Errorf("invalid host %q made an upstream: %+v", v.Value, set.Upstreams)
				}
				if !checked[out.String()] {
					haproxyCheck(t, h, out.Bytes())
					checked[out.String()] = true
				}
			})
		}
	}
}

// TestHAProxyLive renders haproxy.cfg.tmpl, starts the real HAProxy on
// it and has the sink push the set the rendering built: hosts route
// through the map, paths and wildcards through rules. A container
// starting leaves the rendering byte-identical and is served after one
// push with no reload; a new host changes the rendering, and after the
// reload one push serves it.
func TestHAProxyLive(t *testing.T) {
	tm, err := dialect.Parse("haproxy.cfg.tmpl", dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	h := testenv.NewHAProxy(t)
	sink, err := haproxy.New(h.Dir, haproxy.WithConfigFile(h.Conf))
	if err != nil {
		t.Fatal(err)
	}
	inst := func(id string, env map[string]string) records.Instance {
		ip, port := testenv.HTTPBackend(t, id)
		return records.Instance{ID: id, Name: "c-" + id, Service: "web", Host: "h1", IP: ip, Port: port, Env: env, State: records.StateRunning, Weight: 1}
	}
	vh := func(h string) map[string]string { return map[string]string{"VIRTUAL_HOST": h} }
	instances := []records.Instance{
		inst("root", vh("a.localhost")),
		inst("api", map[string]string{"VIRTUAL_HOST": "a.localhost", "VIRTUAL_PATH": "/api/"}),
		inst("wild", vh("*.wild.localhost")),
	}
	var last endpoints.Set // the last rendering's set: the file holds its Config (the runner gives it so)
	renderSet := func() ([]byte, endpoints.Set) {
		t.Helper()
		byKey := map[string]records.Instance{}
		for _, in := range instances {
			byKey[records.ServiceKey("/berth", in.Service, in.Host, in.ID)] = in
		}
		kvs := instanceKVs(byKey)
		var out bytes.Buffer
		var set endpoints.Set
		if err := tm.Execute(&out, dialect.Input{KVs: kvs, Env: haproxyEnv(h), Endpoints: func(s endpoints.Set) { set = s },
			EndpointOptions: []endpoints.Option{endpoints.WithConfigServers(last)}}); err != nil {
			t.Fatal(err)
		}
		last = set
		return out.Bytes(), set
	}
	expect := func(host, path string, want ...string) {
		t.Helper()
		seen := map[string]bool{}
		for range 4 * len(want) {
			code, body, err := h.Get(host, path)
			if err != nil || code != 200 {
				t.Fatalf("%s%s: %d %q %v", host, path, code, body, err)
			}
			seen[strings.Fields(body)[0]] = true
		}
		for _, w := range want {
			if !seen[w] || len(seen) != len(want) {
				t.Fatalf("%s%s answered by %v, want %q", host, path, seen, want)
			}
		}
	}
	conf, set := renderSet()
	haproxyCheck(t, h, conf)
	h.Start(t)
	if err := sink.Push(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	expect("a.localhost", "/", "root")
	expect("A.localhost:80", "/api/x", "api")
	expect("x.wild.localhost", "/", "wild")
	if code, _, _ := h.Get("unknown.localhost", "/"); code != 503 {
		t.Errorf("unknown host: %d, want 503", code)
	}
	master, pid := h.MasterPID(), h.WorkerPID(t)

	// A container starts: same bytes, one push, no reload.
	instances = append(instances, inst("root2", vh("a.localhost")))
	conf2, set := renderSet()
	if !bytes.Equal(conf, conf2) {
		t.Fatalf("a new server changed the rendering:\n%s", render.Diff("before", "after", conf, conf2))
	}
	if err := sink.Push(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	expect("a.localhost", "/", "root", "root2")
	if h.WorkerPID(t) != pid || h.MasterPID() != master {
		t.Error("HAProxy was reloaded for a new server")
	}

	// A new host is structure: the rendering changes; reload, and one push
	// at once reaches the new worker (the sink waits for it).
	instances = append(instances, inst("new", vh("new.localhost")))
	conf3, set := renderSet()
	if bytes.Equal(conf, conf3) {
		t.Fatal("a new host left the rendering unchanged")
	}
	haproxyCheck(t, h, conf3)
	reload := exec.Command("/bin/sh", "-c", h.ReloadCommand())
	if out, err := reload.CombinedOutput(); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	// The new worker starts with the current servers from the file: it
	// serves every old host before any push.
	if _, err := haproxy.NewClient(h.Socket).WaitWorker(t.Context(), pid); err != nil {
		t.Fatal(err)
	}
	expect("a.localhost", "/", "root", "root2")
	expect("a.localhost", "/api/", "api")
	if err := sink.Push(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	expect("new.localhost", "/", "new")
	expect("a.localhost", "/", "root", "root2")
	expect("a.localhost", "/api/", "api")
	if names := liveServers(t, h, "a.localhost"); len(names) != 2 {
		t.Errorf("a.localhost has servers %q after the push, want 2: the file's servers are the sink's (none doubled)", names)
	}
}

// liveServers are the names of backend's servers in the running HAProxy.
func liveServers(t *testing.T, h *testenv.HAProxy, backend string) []string {
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

// TestHAProxyStatic: rendered without live (berth render, or the
// fallback after a refused push), the file holds the servers and routes
// every host by a rule: HAProxy serves it with no sink and no map.
func TestHAProxyStatic(t *testing.T) {
	h := testenv.NewHAProxy(t)
	byKey := map[string]records.Instance{}
	for _, c := range []struct{ id, host, path string }{{"one", "a.localhost", "/"}, {"two", "a.localhost", "/"}, {"api", "a.localhost", "/api/"}, {"b", "b.localhost", "/"}} {
		ip, port := testenv.HTTPBackend(t, c.id)
		in := records.Instance{ID: c.id, Name: "c-" + c.id, Service: "web", Host: "h1", IP: ip, Port: port, State: records.StateRunning, Weight: 1,
			Env: map[string]string{"VIRTUAL_HOST": c.host, "VIRTUAL_PATH": c.path}}
		byKey[records.ServiceKey("/berth", in.Service, in.Host, in.ID)] = in
	}
	tm, err := dialect.Parse("haproxy.cfg.tmpl", dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	env := haproxyEnv(h)
	env["BERTH_LIVE"] = "" // the runner's fallback: the live directory stays, for the sink to come back
	if err := tm.Execute(&out, dialect.Input{KVs: instanceKVs(byKey), Env: env}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "map(") {
		t.Fatalf("a static rendering uses the host map:\n%s", out.Bytes())
	}
	haproxyCheck(t, h, out.Bytes())
	h.Start(t)
	for host, want := range map[string][]string{"a.localhost/": {"one", "two"}, "a.localhost/api/": {"api"}, "b.localhost/": {"b"}} {
		seen := map[string]bool{}
		hst, path, _ := strings.Cut(host, "/")
		for range 6 {
			code, body, err := h.Get(hst, "/"+path)
			if err != nil || code != 200 {
				t.Fatalf("%s: %d %v", host, code, err)
			}
			seen[strings.Fields(body)[0]] = true
		}
		if len(seen) != len(want) || !seen[want[0]] || !seen[want[len(want)-1]] {
			t.Errorf("%s answered by %v, want %q", host, seen, want)
		}
	}
}

// instanceKVs is the store's view of instance records: key → record,
// sorted by key.
func instanceKVs(byKey map[string]records.Instance) []store.KV {
	var kvs []store.KV
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		b, _ := json.Marshal(byKey[k])
		kvs = append(kvs, store.KV{Key: k, Value: b})
	}
	return kvs
}
