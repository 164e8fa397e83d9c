package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	"github.com/berthd/berth/store/backend"
	"github.com/hashicorp/consul/api"
)

// consulTemplateVersion is the consul-template berth's output is compared
// with, built from the Go module proxy.
const consulTemplateVersion = "v0.41.1"

// consulTemplate returns a consul-template binary: $BERTH_CONSUL_TEMPLATE,
// else one built (once, into ~/.cache/berth) from the Go module proxy.
func consulTemplate(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BERTH_CONSUL_TEMPLATE"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		skipOrFail(t, "no consul-template: %v", err)
	}
	dir := filepath.Join(home, ".cache", "berth", "consul-template-"+consulTemplateVersion)
	bin := filepath.Join(dir, "consul-template")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "install", "github.com/hashicorp/consul-template@"+consulTemplateVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		skipOrFail(t, "consul-template %s cannot be built from the module proxy (%v): %s", consulTemplateVersion, err, out)
	}
	return bin
}

// skipOrFail skips the test, except under CI (CI set), where
// scripts/install-deps has built consul-template and its absence fails.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func openConsulStore(t *testing.T, addr string) store.Store {
	t.Helper()
	st, err := backend.Open(t.Context(), "consul://"+addr, backend.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestCatalog runs against one real Consul server + client pair on
// loopback; its subtests run in order on the same catalog.
func TestCatalog(t *testing.T) {
	pair := testenv.StartConsulPair(t)
	client, server := seed(t, pair)
	st := openConsulStore(t, pair.Client.Addr)
	dir := t.TempDir()
	src, _ := filepath.Abs(filepath.Join("testdata", "catalog.tmpl"))

	// The catalog functions with tag, datacenter and health filters,
	// services, nodes and node, with the KV functions, against golden
	// output.
	var berthOut []byte
	t.Run("golden", func(t *testing.T) {
		tmpl := tmplConf("catalog", src, filepath.Join(dir, "berth.out"))
		tmpl.Prefixes = []string{"/app"}
		r := newRunner(st, newCatalog(t, pair.Client.Addr))
		res, err := r.Once(t.Context(), []config.Template{tmpl})
		if err != nil || res[0].Err != nil {
			t.Fatalf("render: %v %+v", err, res)
		}
		berthOut, _ = os.ReadFile(tmpl.Spec.Dest)
		golden(t, "catalog", berthOut)
	})

	// consul-template renders the same template from the same Consul
	// byte for byte as berth.
	t.Run("same as consul-template", func(t *testing.T) {
		if berthOut == nil {
			t.Fatal("the golden render failed (above): nothing to compare with consul-template")
		}
		ct := consulTemplate(t)
		// fields.tmpl prints every field of every result (node IDs vary
		// from run to run: it has no golden file).
		fields, _ := filepath.Abs(filepath.Join("testdata", "fields.tmpl"))
		tmpl := tmplConf("fields", fields, filepath.Join(dir, "fields.berth"))
		res, err := newRunner(st, newCatalog(t, pair.Client.Addr)).Once(t.Context(), []config.Template{tmpl})
		if err != nil || res[0].Err != nil {
			t.Fatalf("render: %v %+v", err, res)
		}
		for _, c := range []struct{ src, berth string }{{src, filepath.Join(dir, "berth.out")}, {fields, tmpl.Spec.Dest}} {
			dest := c.berth + ".consul-template"
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			out, err := exec.CommandContext(ctx, ct, "-once", "-log-level", "err", "-consul-addr", pair.Client.Addr,
				"-template", c.src+":"+dest).CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("consul-template: %v\n%s", err, out)
			}
			ctOut, berthOut := []byte(readFile(dest)), []byte(readFile(c.berth))
			if !bytes.Equal(ctOut, berthOut) || len(ctOut) == 0 {
				t.Fatalf("%s: berth and consul-template %s differ:\n--- berth\n%s\n--- consul-template\n%s", filepath.Base(c.src), consulTemplateVersion, berthOut, ctOut)
			}
			t.Logf("%s: berth and consul-template %s render the same %d bytes", filepath.Base(c.src), consulTemplateVersion, len(berthOut))
		}
	})

	// A TTL check going critical takes the instance out of service "web"
	// (passing only) and not out of service "web" "any"; passing again
	// brings it back.
	t.Run("check transitions", func(t *testing.T) {
		passing, anyOut := filepath.Join(dir, "passing.out"), filepath.Join(dir, "any.out")
		writeFile(t, filepath.Join(dir, "passing.tmpl"), `{{ range service "web" }}{{ .ID }}
{{ end }}`)
		writeFile(t, filepath.Join(dir, "any.tmpl"), `{{ range service "web" "any" }}{{ .ID }}
{{ end }}`)
		r := newRunner(st, newCatalog(t, pair.Client.Addr))
		run(t, r, tmplConf("passing", filepath.Join(dir, "passing.tmpl"), passing),
			tmplConf("any", filepath.Join(dir, "any.tmpl"), anyOut))
		const all, healthy = "web-1\nweb-2\nweb-3\n", "web-1\nweb-3\n"
		waitFile(t, passing, eq(healthy))
		waitFile(t, anyOut, eq(all))
		anyInfo, _ := os.Stat(anyOut)

		setTTL(t, client, "web-1", api.HealthCritical)
		waitFile(t, passing, eq("web-3\n"))
		setTTL(t, client, "web-1", api.HealthPassing)
		waitFile(t, passing, eq(healthy))
		setTTL(t, client, "web-2", api.HealthPassing)
		waitFile(t, passing, eq(all))
		setTTL(t, client, "web-2", api.HealthCritical)
		waitFile(t, passing, eq(healthy))
		if info, _ := os.Stat(anyOut); !info.ModTime().Equal(anyInfo.ModTime()) || readFile(anyOut) != all {
			t.Fatalf(`service "web" "any" was rewritten by health changes: %q`, readFile(anyOut))
		}
	})

	// Blocking queries that come back unchanged (the wait ran out) render
	// nothing.
	t.Run("unchanged answers render nothing", func(t *testing.T) {
		src, dest := filepath.Join(dir, "quiet.tmpl"), filepath.Join(dir, "quiet.out")
		writeFile(t, src, `{{ range service "web" }}{{ .ID }}
{{ end }}`)
		proxy := newCountingProxy(t, pair.Client.Addr, "/v1/health/service/web")
		cat := catalog.New(t.Context(), consulClient(t, proxy.URL), catalog.WithLogger(testLogger()), catalog.WithWait(200*time.Millisecond))
		var attempts atomic.Int64
		r := newRunner(st, cat, runner.WithObserver(func(runner.Observation) { attempts.Add(1) }))
		run(t, r, tmplConf("quiet", src, dest))
		waitFile(t, dest, eq("web-1\nweb-3\n"))
		waitStatus(t, r, "quiet", func(s runner.TemplateStatus) bool { return s.LastError == nil })
		before, queries := attempts.Load(), proxy.n.Load()
		for deadline := time.Now().Add(30 * time.Second); proxy.n.Load() < queries+5; {
			if time.Now().After(deadline) {
				t.Fatal("the blocking query did not come back")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if n := attempts.Load(); n != before {
			t.Fatalf("%d render attempts from %d unchanged answers", n-before, proxy.n.Load()-queries)
		}
	})

	// The render guards count catalog entries: with min_entries = 2, an
	// instance going critical (one left) is refused and the file stays;
	// the first render, before any answer, is not refused for ever.
	t.Run("guards", func(t *testing.T) {
		src, dest := filepath.Join(dir, "guarded.tmpl"), filepath.Join(dir, "guarded.out")
		writeFile(t, src, `{{ range service "web" }}{{ .ID }}
{{ end }}`)
		tm := tmplConf("guarded", src, dest)
		tm.Spec.MinEntries = 2
		r := newRunner(st, newCatalog(t, pair.Client.Addr))
		run(t, r, tm)
		waitFile(t, dest, eq("web-1\nweb-3\n"))
		setTTL(t, client, "web-1", api.HealthCritical)
		waitStatus(t, r, "guarded", func(s runner.TemplateStatus) bool { return errors.Is(s.LastError, render.ErrRefused) })
		if got := readFile(dest); got != "web-1\nweb-3\n" {
			t.Fatalf("a render the guard refused replaced the file: %q", got)
		}
		setTTL(t, client, "web-1", api.HealthPassing)
		waitStatus(t, r, "guarded", func(s runner.TemplateStatus) bool { return s.LastError == nil })
	})

	// A template's dependencies are what its last execution read: an
	// edit that drops one stops its query, and so does the end of the
	// template.
	t.Run("dependencies follow the template", func(t *testing.T) {
		src, dest := filepath.Join(dir, "deps.tmpl"), filepath.Join(dir, "deps.out")
		writeFile(t, src, `{{ range service "web" }}{{ .ID }} {{ end }}{{ range service "api" }}{{ .ID }}{{ end }}`)
		cat := newCatalog(t, pair.Client.Addr)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r := newRunner(st, cat)
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, []config.Template{tmplConf("deps", src, dest)}) }()
		waitFile(t, dest, eq("web-1 web-3 api-1"))
		if w := cat.Watching(); len(w) != 2 {
			t.Fatalf("watching %v, want web and api", w)
		}
		writeFile(t, src, `{{ range service "api" }}{{ .ID }}{{ end }}`)
		waitFile(t, dest, eq("api-1"))
		if w := cat.Watching(); len(w) != 1 || w[0] != "health.service(api|passing)" {
			t.Fatalf("after the edit, watching %v, want health.service(api|passing) only", w)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if w := cat.Watching(); len(w) != 0 {
			t.Fatalf("after the runner stopped, watching %v", w)
		}
	})

	// One blocking query per distinct dependency per daemon: ten templates
	// reading service "web" make Consul answer as many queries per change
	// as one template does.
	t.Run("queries per change", func(t *testing.T) {
		perChange := map[int]float64{}
		const changes = 4
		for _, n := range []int{1, 10} {
			proxy := newCountingProxy(t, pair.Client.Addr, "/v1/health/service/web")
			cat := newCatalog(t, proxy.URL)
			src := filepath.Join(dir, "count.tmpl")
			writeFile(t, src, `{{ range service "web" }}{{ .ID }}
{{ end }}`)
			var ts []config.Template
			for i := range n {
				ts = append(ts, tmplConf(fmt.Sprintf("count-%d-%d", n, i), src, filepath.Join(dir, fmt.Sprintf("count-%d-%d.out", n, i))))
			}
			ctx, cancel := context.WithCancel(t.Context())
			r := newRunner(st, cat)
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx, ts) }()
			waitAll := func(want string) {
				for _, tm := range ts {
					waitFile(t, tm.Spec.Dest, eq(want))
				}
			}
			waitAll("web-1\nweb-3\n")
			before := proxy.settled()
			for i := range changes {
				status, want := api.HealthCritical, "web-3\n"
				if i%2 == 1 {
					status, want = api.HealthPassing, "web-1\nweb-3\n"
				}
				setTTL(t, client, "web-1", status)
				waitAll(want)
			}
			perChange[n] = float64(proxy.settled()-before) / changes
			if w := cat.Watching(); len(w) != 1 {
				t.Errorf("%d templates: %d blocking-query loops %v, want 1", n, len(w), w)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("blocking queries of service \"web\" per change: %.2f with 1 template, %.2f with 10", perChange[1], perChange[10])
		if perChange[10] != perChange[1] || perChange[1] > 2 {
			t.Fatalf("queries per change: %.2f with 1 template, %.2f with 10; want the same, about 1", perChange[1], perChange[10])
		}
	})

	// A real nginx routed from the catalog: a backend registered in the
	// catalog is reached through nginx, a deregistered one no more.
	t.Run("nginx", func(t *testing.T) {
		n := testenv.NewNginx(t)
		src := filepath.Join(dir, "nginx.tmpl")
		writeFile(t, src, n.Prelude()+`    upstream backend {
{{- range service "backend" }}
        server {{ .Address }}:{{ .Port }};
{{- else }}
        server 127.0.0.1:1 down;
{{- end }}
    }
    server {
        listen `+n.Addr+`;
        location / { proxy_pass http://backend; }
    }
}
`)
		ip1, port1 := testenv.HTTPBackend(t, "b1")
		ip2, port2 := testenv.HTTPBackend(t, "b2")
		service(t, client, "b1", "backend", ip1, port1, nil, nil, api.HealthPassing)
		tmpl := tmplConf("nginx", src, n.Conf)
		tmpl.Spec.Check = n.CheckCommand()
		cat := newCatalog(t, pair.Client.Addr)
		if res, err := newRunner(st, cat).Once(t.Context(), []config.Template{tmpl}); err != nil || res[0].Err != nil {
			t.Fatalf("first render: %v %+v", err, res)
		}
		n.Start(t)
		reaches(t, n, "b1")
		tmpl.Spec.Reload = n.ReloadCommand()
		r := newRunner(st, cat)
		run(t, r, tmpl)
		service(t, client, "b2", "backend", ip2, port2, nil, nil, api.HealthPassing)
		reaches(t, n, "b1", "b2")
		if err := client.Agent().ServiceDeregister("b1"); err != nil {
			t.Fatal(err)
		}
		reaches(t, n, "b2")
		// An address nginx -t refuses: the check fails, the last good
		// config stays and keeps serving; deregistered, the next render
		// applies.
		good := readFile(n.Conf)
		service(t, client, "b3", "backend", "10.0.0.1;evil", 80, nil, nil, api.HealthPassing)
		waitStatus(t, r, "nginx", func(s runner.TemplateStatus) bool { return s.LastError != nil })
		if readFile(n.Conf) != good {
			t.Fatalf("a config that fails nginx -t replaced the last good one:\n%s", readFile(n.Conf))
		}
		reaches(t, n, "b2")
		if err := client.Agent().ServiceDeregister("b3"); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, r, "nginx", func(s runner.TemplateStatus) bool { return s.LastError == nil })
		setTTL(t, client, "b2", api.HealthCritical) // failing its check takes it out too
		waitFile(t, n.Conf, func(s string) bool { return strings.Contains(s, "127.0.0.1:1 down") })
	})

	// Consul stopped mid-run: the output stays as it is, the queries
	// retry; started again, the output converges to what changed
	// meanwhile.
	t.Run("consul down", func(t *testing.T) {
		src, dest := filepath.Join(dir, "down.tmpl"), filepath.Join(dir, "down.out")
		writeFile(t, src, `{{ range service "web" }}{{ .ID }}
{{ end }}`)
		r := newRunner(st, newCatalog(t, pair.Client.Addr))
		run(t, r, tmplConf("down", src, dest))
		waitFile(t, dest, eq("web-1\nweb-3\n"))
		before, _ := os.Stat(dest)
		pair.Client.Kill()
		// Meanwhile the catalog changes, through the server.
		service(t, server, "web-4", "web", "10.0.0.4", 8084, nil, nil, api.HealthPassing)
		waitSourceError(t, r, "down")
		if after, _ := os.Stat(dest); !after.ModTime().Equal(before.ModTime()) || readFile(dest) != "web-1\nweb-3\n" {
			t.Fatalf("the output changed while Consul was down: %q", readFile(dest))
		}
		if err := pair.Client.Restart(); err != nil {
			t.Fatal(err)
		}
		waitFile(t, dest, eq("web-1\nweb-3\nweb-4\n"))
	})

	// Consul down when the daemon starts: the render is held (the file
	// on disk stays), the status says why; Consul up, it renders.
	t.Run("consul down at start", func(t *testing.T) {
		src, dest := filepath.Join(dir, "start.tmpl"), filepath.Join(dir, "start.out")
		writeFile(t, src, `{{ range service "web" }}{{ .ID }}
{{ end }}`)
		writeFile(t, dest, "the last good output\n")
		pair.Client.Kill()
		r := newRunner(st, newCatalog(t, pair.Client.Addr))
		run(t, r, tmplConf("start", src, dest))
		waitSourceError(t, r, "start")
		ss, _ := r.Status(t.Context())
		for _, s := range ss {
			if s.Name == "start" && !errors.Is(s.LastError, dialect.ErrPending) {
				t.Errorf("status while Consul is down: %v, want the render held (ErrPending)", s.LastError)
			}
		}
		if got := readFile(dest); got != "the last good output\n" {
			t.Fatalf("the output changed while Consul was down: %q", got)
		}
		if err := pair.Client.Restart(); err != nil {
			t.Fatal(err)
		}
		waitFile(t, dest, eq("web-1\nweb-3\nweb-4\n"))
	})
}

// TestACLDenied: a token without service:read gets Consul's filtered
// (empty) answer, which renders as consul-template renders it; the
// template's status names the missing permission.
func TestACLDenied(t *testing.T) {
	c := testenv.StartConsul(t, testenv.WithConsulACL("root-token"))
	dir := t.TempDir()
	src, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "t.out")
	writeFile(t, src, `{{ range service "web" }}{{ .ID }}{{ end }}`)
	root, _ := catalog.NewClient(c.Addr, "root-token")
	service(t, root, "web-1", "web", "10.0.0.1", 80, nil, nil, "")
	tok, _, err := root.ACL().TokenCreate(&api.ACLToken{Description: "no rights"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	weak, _ := catalog.NewClient(c.Addr, tok.SecretID)
	r := newRunner(nil, catalog.New(t.Context(), weak, catalog.WithLogger(testLogger())))
	run(t, r, tmplConf("t", src, dest))
	deadline := time.Now().Add(30 * time.Second)
	for {
		ss, err := r.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) == 1 && len(ss[0].Mirrors) > 0 && ss[0].Mirrors[0].LastError != nil {
			h := ss[0].Mirrors[0]
			if msg := h.LastError.Error(); !strings.Contains(msg, `service:read on "web"`) || !h.FailingSince.IsZero() {
				t.Fatalf("want the missing permission named, not failing: %s (failing since %v)", msg, h.FailingSince)
			}
			t.Logf("reported: %v", h.LastError)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error reported: %+v", ss)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFile(t, dest, eq(""))
}

// waitStatus waits until the status of template name satisfies ok.
func waitStatus(t *testing.T, r *runner.Runner, name string, ok func(runner.TemplateStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ss, err := r.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			if s.Name == name && ok(s) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status of %s never became as expected: %+v", name, ss)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSourceError waits until a source of template name reports an error.
func waitSourceError(t *testing.T, r *runner.Runner, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ss, err := r.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			for _, h := range s.Mirrors {
				if s.Name == name && h.LastError != nil {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no source of %s reported the outage: %+v", name, ss)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func eq(want string) func(string) bool { return func(s string) bool { return s == want } }

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestParse: consul-template's argument forms, their canonical strings
// (the key queries are shared by), and the errors of bad ones.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		kind catalog.Kind
		args []string
		want string
		err  string
	}{
		{catalog.Service, []string{"web"}, "health.service(web|passing)", ""},
		{catalog.Service, []string{"web", "any"}, "health.service(web|any)", ""},
		{catalog.Service, []string{"web|warning,passing"}, "health.service(web|passing,warning)", ""},
		{catalog.Service, []string{"web", "passing, warning"}, "", "invalid format"},
		{catalog.Service, []string{"prod.web@dc2"}, "health.service(prod.web@dc2|passing)", ""},
		{catalog.Service, []string{"v1.prod.web~node1"}, "health.service(v1.prod.web~node1|passing)", ""},
		{catalog.Service, []string{"web?ns=team"}, "health.service(web@ns=team|passing)", ""},
		{catalog.Service, []string{"web?color=red"}, "", "invalid query parameter"},
		{catalog.Service, []string{"web", "sick"}, "", `invalid filter: "sick"`},
		{catalog.Service, []string{"web app"}, "", "invalid format"},
		{catalog.Services, nil, "catalog.services", ""},
		{catalog.Services, []string{"@dc2"}, "catalog.services(@dc2)", ""},
		{catalog.Node, nil, "catalog.node", ""},
		{catalog.Node, []string{"node.a@dc1"}, "catalog.node(node.a@dc1)", ""},
		{catalog.Nodes, []string{"~node1"}, "catalog.nodes(~node1)", ""},
		{catalog.Nodes, []string{"nodes"}, "", "invalid format"},
	} {
		q, err := catalog.Parse(tc.kind, tc.args...)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s %q: err %v, want %q", tc.kind, tc.args, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%s %q: %v", tc.kind, tc.args, err)
		case tc.err == "" && q.String() != tc.want:
			t.Errorf("%s %q = %s, want %s", tc.kind, tc.args, q, tc.want)
		}
	}
}

// TestIndexGoesBackwards: an agent that comes back with its indexes
// started over (a dev agent's restart, as after a snapshot restore) is
// queried from index 0 again, as Consul documents, instead of blocking
// until its index passes the old one.
func TestIndexGoesBackwards(t *testing.T) {
	c := testenv.StartConsul(t)
	client := consulClient(t, c.Addr)
	for i := range 200 { // raise the index well above a fresh agent's
		if _, err := client.KV().Put(&api.KVPair{Key: fmt.Sprintf("bump/%d", i), Value: []byte("x")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	service(t, client, "web-a", "web", "10.0.0.1", 80, nil, nil, api.HealthPassing)
	dir := t.TempDir()
	src, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "t.out")
	writeFile(t, src, `{{ range service "web" }}{{ .ID }}
{{ end }}`)
	proxy := newCountingProxy(t, c.Addr, "/v1/health/service/web")
	r := newRunner(nil, newCatalog(t, proxy.URL))
	tmpl := tmplConf("t", src, dest)
	tmpl.MaxStale = 10 * time.Second
	run(t, r, tmpl)
	waitFile(t, dest, eq("web-a\n"))
	if !strings.Contains(proxy.lastQuery(), "stale") {
		t.Errorf("max_stale: the query %q does not allow stale reads", proxy.lastQuery())
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	service(t, consulClient(t, c.Addr), "web-b", "web", "10.0.0.2", 80, nil, nil, api.HealthPassing)
	waitFile(t, dest, eq("web-b\n"))
}
