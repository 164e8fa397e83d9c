package templates_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
)

// TestRouting renders nginx.conf.tmpl from a live store with the runner
// and sends real HTTP through nginx by Host header and path.
func TestRouting(t *testing.T) {
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := testenv.NewNginx(t)
	t.Setenv("BERTH_NGINX_LISTEN", n.Addr)
	t.Setenv("BERTH_NGINX_GRPC_LISTEN", "127.0.0.1:1")
	put := func(id, svc, state string, env map[string]string) {
		ip, port := testenv.HTTPBackend(t, id)
		b, _ := json.Marshal(records.Instance{ID: id, Name: id, Service: svc, Host: "h1", IP: ip, Port: port, Env: env, State: records.State(state)})
		if _, err := st.Put(t.Context(), records.ServiceKey("/berth", svc, "h1", id), b); err != nil {
			t.Fatal(err)
		}
	}
	put("w1", "web", "running", map[string]string{"VIRTUAL_HOST": "whoami.localhost"})
	put("w2", "web", "running", map[string]string{"VIRTUAL_HOST": "whoami.localhost,alias.localhost"})
	put("w3", "web", "draining", map[string]string{"VIRTUAL_HOST": "whoami.localhost"})
	put("a1", "api", "running", map[string]string{"VIRTUAL_HOST": "whoami.localhost", "VIRTUAL_PATH": "/api/"})

	serve(t, st, n, slog.LevelWarn)

	answers := func(host, path string) []string {
		seen := map[string]bool{}
		for range 12 {
			code, body, err := n.Get(host, path)
			if err != nil {
				t.Fatal(err)
			}
			if code != http.StatusOK {
				body = "" // nginx's own error page: the status says it all
			}
			seen[fmt.Sprintf("%d %s", code, body)] = true
		}
		return slices.Sorted(maps.Keys(seen))
	}
	expect := func(host, path string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got := answers(host, path)
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s%s answers %q, want %q\n%s", host, path, got, want, n.ErrorLog())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	expect("whoami.localhost", "/", "200 w1 whoami.localhost", "200 w2 whoami.localhost") // w3 is draining
	expect("alias.localhost", "/", "200 w2 alias.localhost")
	expect("whoami.localhost", "/api/x", "200 a1 whoami.localhost")
	expect("unknown.localhost", "/", "503 ")

	// The last instance of a host goes: the host goes, no empty upstream.
	st.Delete(t.Context(), records.ServiceKey("/berth", "web", "h1", "w2"))
	expect("alias.localhost", "/", "503 ")
	expect("whoami.localhost", "/", "200 w1 whoami.localhost")
}

// serve renders nginx.conf.tmpl from st into n's nginx.conf once, starts
// n on it, and runs the runner (rendering, checking with nginx -t,
// reloading n) until the test ends. The runner logs at level and above.
func serve(t *testing.T, st store.Store, n *testenv.Nginx, level slog.Level) {
	t.Helper()
	tmpl := config.Template{
		Name: "nginx", Src: "nginx.conf.tmpl", Origin: "test",
		Options:  dialect.Options{Dialect: dialect.Native, Includes: []string{"nginx.tmpl"}},
		Prefixes: []string{"/berth/services/"},
		Spec:     render.Spec{Name: "nginx", Dest: n.Conf, Check: n.CheckCommand()},
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	renderer := render.New(render.WithLogger(logger))
	if res, err := runner.New(st, renderer, runner.WithLogger(logger)).Once(t.Context(), []config.Template{tmpl}); err != nil || res[0].Err != nil {
		t.Fatalf("first render: %v %+v", err, res)
	}
	n.Start(t)
	tmpl.Spec.Reload = n.ReloadCommand()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- runner.New(st, renderer, runner.WithLogger(logger)).Run(ctx, []config.Template{tmpl}) }()
	t.Cleanup(func() { cancel(); <-done })
}
