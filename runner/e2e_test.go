package runner_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
	"github.com/berthd/berth/watcher"
)

// backendCase names a store to run the end-to-end tests against.
type backendCase struct {
	name  string
	start func(t *testing.T) string // returns the store URL
}

var backends = []backendCase{
	{"embedded", func(t *testing.T) string { return "embedded://" + t.TempDir() }},
	{"etcd", func(t *testing.T) string { return testenv.StartEtcd(t, 1).URL() }},
	{"consul", func(t *testing.T) string { return "consul://" + testenv.StartConsul(t).Addr }},
}

func openStore(t *testing.T, url string) store.Store {
	t.Helper()
	st, err := backend.Open(t.Context(), url, backend.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// nginxTemplate renders a whole nginx.conf proxying to service "web".
func nginxTemplate(n *testenv.Nginx) string {
	return n.Prelude() + `    upstream web {
{{- range (index .Services "web") }}
        server {{ .IP }}:{{ .Port }};
{{- else }}
        server 127.0.0.1:1 down;
{{- end }}
    }
    server {
        listen ` + n.Addr + `;
        location / { proxy_pass http://web; }
    }
}
`
}

func putInstance(t *testing.T, st store.Store, id, ip string, port int) {
	t.Helper()
	rec := records.Instance{ID: id, Name: id, Service: "web", Host: "h1", IP: ip, Port: port, State: records.StateRunning}
	b, _ := json.Marshal(rec)
	if _, err := st.Put(t.Context(), records.ServiceKey(records.DefaultPrefix, "web", "h1", id), b); err != nil {
		t.Fatal(err)
	}
}

func delInstance(t *testing.T, st store.Store, id string) {
	t.Helper()
	if _, err := st.Delete(t.Context(), records.ServiceKey(records.DefaultPrefix, "web", "h1", id)); err != nil {
		t.Fatal(err)
	}
}

// reaches waits until HTTP through nginx reaches exactly the backends want.
func reaches(t *testing.T, n *testenv.Nginx, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(30 * time.Second)
	var got []string
	for {
		seen := map[string]bool{}
		for range 8 * len(want) {
			if _, body, err := n.Get("", "/"); err == nil {
				seen[body] = true
			}
		}
		got = slices.Sorted(maps.Keys(seen))
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx reaches %v, want %v\nnginx.conf:\n%s\nerror.log:\n%s", got, want, readFile(n.Conf), n.ErrorLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestNginxFollowsStore: instances added to and removed from the store
// re-render nginx.conf, which passes nginx -t and is reloaded, and HTTP
// through nginx reaches exactly the live backends. A value that makes
// nginx -t fail is quarantined: reported and left out, and the next good
// change applies.
func TestNginxFollowsStore(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			st := openStore(t, bc.start(t))
			n := testenv.NewNginx(t)
			src := filepath.Join(t.TempDir(), "nginx.tmpl")
			if err := os.WriteFile(src, []byte(nginxTemplate(n)), 0o644); err != nil {
				t.Fatal(err)
			}
			tmpl := config.Template{
				Name: "nginx", Src: src, Origin: "test",
				Options:  dialect.Options{Dialect: dialect.Native, Prefix: records.DefaultPrefix},
				Prefixes: []string{records.ServicesPrefix(records.DefaultPrefix)},
				Spec:     render.Spec{Name: "nginx", Dest: n.Conf, Check: n.CheckCommand()},
			}
			ips, ports := map[string]string{}, map[string]int{}
			for _, b := range []string{"b1", "b2", "b3", "b4"} {
				ips[b], ports[b] = testenv.HTTPBackend(t, b)
			}
			putInstance(t, st, "b1", ips["b1"], ports["b1"])
			putInstance(t, st, "b2", ips["b2"], ports["b2"])

			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			renderer := render.New(render.WithLogger(log))
			// The first config is rendered one-shot (nginx is not running yet,
			// so nothing to reload); then nginx starts on it.
			once := runner.New(st, renderer, runner.WithLogger(log))
			if res, err := once.Once(t.Context(), []config.Template{tmpl}); err != nil || res[0].Err != nil {
				t.Fatalf("first render: %v %+v", err, res)
			}
			n.Start(t)
			reaches(t, n, "b1", "b2")

			tmpl.Spec.Reload = n.ReloadCommand()
			r := runner.New(st, renderer, runner.WithLogger(log),
				runner.WithMirrorOptions(watcher.WithBackoff(50*time.Millisecond, time.Second)))
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx, []config.Template{tmpl}) }()
			t.Cleanup(func() { cancel(); <-done })

			putInstance(t, st, "b3", ips["b3"], ports["b3"])
			reaches(t, n, "b1", "b2", "b3")
			delInstance(t, st, "b1")
			reaches(t, n, "b2", "b3")

			// A port nginx rejects: nginx -t fails with it, so it is
			// quarantined (reported with nginx's reason) and left out.
			putInstance(t, st, "bad", "127.0.0.1", 99999)
			status := waitStatusOf(t, r, "nginx", func(s runner.TemplateStatus) bool { return len(s.Quarantined) > 0 })
			if q := status.Quarantined[0]; q.Service != "web" || q.Container != "bad" || !strings.Contains(q.Reason, "invalid port") {
				t.Fatalf("quarantine does not name the record and nginx's reason: %+v", status.Quarantined)
			}
			if strings.Contains(readFile(n.Conf), "99999") {
				t.Fatal("a record that fails nginx -t reached the config")
			}
			reaches(t, n, "b2", "b3")

			delInstance(t, st, "bad")
			putInstance(t, st, "b4", ips["b4"], ports["b4"])
			reaches(t, n, "b2", "b3", "b4")
			waitStatusOf(t, r, "nginx", func(s runner.TemplateStatus) bool { return s.LastError == nil && len(s.Quarantined) == 0 })
		})
	}
}
