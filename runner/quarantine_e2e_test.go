package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// vhostTemplate renders one nginx server block per instance of service
// "web", named by its VIRTUAL_HOST, as the record gives it: no escaping,
// so that a hostile value reaches nginx -t.
func vhostTemplate(n *testenv.Nginx) string {
	return n.Prelude() + `    server {
        listen ` + n.Addr + ` default_server;
        location / { return 404 "none\n"; }
    }
{{- range (index .Services "web") }}
    server {
        listen ` + n.Addr + `;
        server_name {{ index .Env "VIRTUAL_HOST" }};
        location / { proxy_pass http://{{ .IP }}:{{ .Port }}; }
    }
{{- end }}
}
`
}

func putVhost(t *testing.T, st store.Store, id, host, ip string, port int) {
	t.Helper()
	rec := records.Instance{ID: id, Name: id, Service: "web", Host: "h1", IP: ip, Port: port, State: records.StateRunning,
		Env: map[string]string{"VIRTUAL_HOST": host}}
	b, _ := json.Marshal(rec)
	if _, err := st.Put(t.Context(), records.ServiceKey(records.DefaultPrefix, "web", "h1", id), b); err != nil {
		t.Fatal(err)
	}
}

// routes waits until nginx routes host to the backend named want.
func routes(t *testing.T, n *testenv.Nginx, host, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body, err := n.Get(host, "/")
		if err == nil && body == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %q (%v), want %q\nnginx.conf:\n%s\nerror.log:\n%s", host, body, err, want, readFile(n.Conf), n.ErrorLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// observations collects the runner's Observations.
type observations struct {
	mu  sync.Mutex
	all []runner.Observation
}

func (o *observations) add(ob runner.Observation) {
	o.mu.Lock()
	o.all = append(o.all, ob)
	o.mu.Unlock()
}

func (o *observations) since(i int) []runner.Observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]runner.Observation(nil), o.all[i:]...)
}

func (o *observations) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.all)
}

// TestQuarantineNginx: a record whose value fails nginx -t arrives among
// 20 good ones, written straight into the store. The runner bisects over
// the 21 changes with nginx -t on staged files, quarantines the bad record
// (reported in the status with nginx's reason, logged once, counted in
// the Observation), and applies the 20 others: nginx routes every one. A
// good record added after it is routed by the next render, with no
// search. Fixing the bad record's value brings it back.
func TestQuarantineNginx(t *testing.T) {
	for _, tc := range []struct{ name, host, reason string }{
		{"closing brace", "}", `unexpected "}"`},
		{"long host name", strings.Repeat("a", 200) + ".test", "server_names_hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, "embedded://"+t.TempDir())
			n := testenv.NewNginx(t)
			src := filepath.Join(t.TempDir(), "nginx.tmpl")
			if err := os.WriteFile(src, []byte(vhostTemplate(n)), 0o644); err != nil {
				t.Fatal(err)
			}
			tmpl := config.Template{
				Name: "nginx", Src: src, Origin: "test",
				Options:  dialect.Options{Dialect: dialect.Native, Prefix: records.DefaultPrefix},
				Prefixes: []string{records.ServicesPrefix(records.DefaultPrefix)},
				Wait:     watcher.Wait{Min: 300 * time.Millisecond, Max: 2 * time.Second},
				Spec:     render.Spec{Name: "nginx", Dest: n.Conf, Check: n.CheckCommand(), Timeout: 20 * time.Second},
			}
			var logs testenv.SyncBuffer
			log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
			renderer := render.New(render.WithLogger(log))
			if res, err := runner.New(st, renderer, runner.WithLogger(log)).Once(t.Context(), []config.Template{tmpl}); err != nil || res[0].Err != nil {
				t.Fatalf("first render: %v %+v", err, res)
			}
			n.Start(t)

			tmpl.Spec.Reload = n.ReloadCommand()
			var obs observations
			r := runner.New(st, renderer, runner.WithLogger(log), runner.WithObserver(obs.add),
				runner.WithMirrorOptions(watcher.WithBackoff(50*time.Millisecond, time.Second)))
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx, []config.Template{tmpl}) }()
			t.Cleanup(func() { cancel(); <-done })
			waitStatusOf(t, r, "nginx", func(s runner.TemplateStatus) bool { return !s.LastRender.IsZero() })

			// 10 good, the bad one, 10 good: one burst, one render.
			type backend struct {
				ip   string
				port int
			}
			good := map[string]backend{}
			for i := 1; i <= 21; i++ {
				id := fmt.Sprintf("g%02d", i)
				ip, port := testenv.HTTPBackend(t, id)
				good[id] = backend{ip, port}
			}
			badIP, badPort := testenv.HTTPBackend(t, "bad")
			for i := 1; i <= 20; i++ {
				id := fmt.Sprintf("g%02d", i)
				putVhost(t, st, id, id+".test", good[id].ip, good[id].port)
				if i == 10 {
					putVhost(t, st, "bad", tc.host, badIP, badPort)
				}
			}
			s := waitStatusOf(t, r, "nginx", func(s runner.TemplateStatus) bool { return len(s.Quarantined) > 0 })
			if len(s.Quarantined) != 1 {
				t.Fatalf("quarantined %+v, want the bad record only", s.Quarantined)
			}
			q := s.Quarantined[0]
			if q.Key != records.ServiceKey(records.DefaultPrefix, "web", "h1", "bad") || q.Service != "web" || q.Container != "bad" ||
				!strings.Contains(q.Reason, tc.reason) || q.Since.IsZero() {
				t.Fatalf("quarantine report %+v, want web/bad with nginx's %q", q, tc.reason)
			}
			for i := 1; i <= 20; i++ {
				id := fmt.Sprintf("g%02d", i)
				routes(t, n, id+".test", id)
			}
			if s := waitStatusOf(t, r, "nginx", func(s runner.TemplateStatus) bool { return s.Revision > 0 }); s.LastError != nil || !s.FailingSince.IsZero() {
				t.Fatalf("a template applying without its quarantined record reports a failure: %v since %v", s.LastError, s.FailingSince)
			}
			var checks int
			for _, o := range obs.since(0) {
				checks = max(checks, o.Checks)
			}
			t.Logf("quarantine search over 21 changes: %d nginx -t runs", checks)
			if checks == 0 || checks > 2+1*(5+1) {
				t.Fatalf("the search took %d check runs, want 1..%d", checks, 2+1*(5+1))
			}

			// A good record added after the bad one is routed by the next
			// render: no search, the bad one stays out.
			mark := obs.len()
			putVhost(t, st, "g21", "g21.test", good["g21"].ip, good["g21"].port)
			routes(t, n, "g21.test", "g21")
			for _, o := range obs.since(mark) {
				if o.Checks != 0 || o.Result.Err != nil || len(o.Quarantined) != 1 {
					t.Fatalf("render after the quarantine: %+v", o)
				}
			}
			if c := logs.Count("record quarantined"); c != 1 {
				t.Fatalf("quarantine logged %d times, want once:\n%s", c, logs.String())
			}

			// Fixed, the bad record comes back.
			putVhost(t, st, "bad", "fixed.test", badIP, badPort)
			routes(t, n, "fixed.test", "bad")
			waitStatusOf(t, r, "nginx", func(s runner.TemplateStatus) bool { return len(s.Quarantined) == 0 && s.LastError == nil })
			routes(t, n, "g01.test", "g01")
		})
	}
}

// testWriter logs into the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestQuarantineConfDInPlace: the same quarantine for a conf.d fragment
// checked in place (check_in_place): the bisection's tries swap each
// candidate in, run nginx -t on the real nginx.conf and swap the previous
// fragment back; the good records are routed, the bad one is reported,
// and the fragment on disk never holds it.
func TestQuarantineConfDInPlace(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	n := testenv.NewNginx(t)
	confd := filepath.Join(n.Dir, "conf.d")
	if err := os.Mkdir(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := n.Prelude() + "    server {\n        listen " + n.Addr + " default_server;\n        location / { return 404 \"none\\n\"; }\n    }\n    include " + confd + "/*.conf;\n}\n"
	if err := os.WriteFile(n.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "fragment.tmpl")
	fragment := `{{- range (index .Services "web") }}
server {
    listen ` + n.Addr + `;
    server_name {{ index .Env "VIRTUAL_HOST" }};
    location / { proxy_pass http://{{ .IP }}:{{ .Port }}; }
}
{{- end }}
`
	if err := os.WriteFile(src, []byte(fragment), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(confd, "default.conf")
	tmpl := config.Template{
		Name: "fragment", Src: src, Origin: "test",
		Options:  dialect.Options{Dialect: dialect.Native, Prefix: records.DefaultPrefix},
		Prefixes: []string{records.ServicesPrefix(records.DefaultPrefix)},
		Wait:     watcher.Wait{Min: 300 * time.Millisecond, Max: 2 * time.Second},
		Spec: render.Spec{Name: "fragment", Dest: dest, Timeout: 20 * time.Second,
			Check: fmt.Sprintf("%s -t -q -p %s/ -c %s", n.Bin, n.Dir, n.Conf), CheckInPlace: true,
			Reload: n.ReloadCommand()},
	}
	if err := os.WriteFile(dest, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n.Start(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := startRunnerWith(t, runner.New(st, render.New(render.WithLogger(log)), runner.WithLogger(log)), tmpl)
	waitStatusOf(t, r, "fragment", func(s runner.TemplateStatus) bool { return !s.LastRender.IsZero() })

	ips := map[string]string{}
	ports := map[string]int{}
	for i := 1; i <= 6; i++ {
		id := fmt.Sprintf("g%d", i)
		ips[id], ports[id] = testenv.HTTPBackend(t, id)
	}
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("g%d", i)
		putVhost(t, st, id, id+".test", ips[id], ports[id])
		if i == 3 {
			putVhost(t, st, "bad", "}", "127.0.0.1", 1)
		}
	}
	s := waitStatusOf(t, r, "fragment", func(s runner.TemplateStatus) bool { return len(s.Quarantined) > 0 })
	if len(s.Quarantined) != 1 || s.Quarantined[0].Container != "bad" || !strings.Contains(s.Quarantined[0].Reason, `unexpected "}"`) {
		t.Fatalf("quarantined %+v", s.Quarantined)
	}
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("g%d", i)
		routes(t, n, id+".test", id)
	}
	putVhost(t, st, "g6", "g6.test", ips["g6"], ports["g6"])
	routes(t, n, "g6.test", "g6")
	if strings.Contains(readFile(dest), "server_name };") {
		t.Fatalf("the fragment holds the bad record:\n%s", readFile(dest))
	}
	for _, e := range []string{".default.conf.rollback.berth", ".default.conf.rollback-none.berth"} {
		if _, err := os.Lstat(filepath.Join(confd, e)); !os.IsNotExist(err) {
			t.Errorf("%s left behind", e)
		}
	}
}
