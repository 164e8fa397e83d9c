package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/templates"
	"github.com/berthd/berth/watcher"
)

// putProxied writes an instance of service web proxied for host.
func putProxied(t *testing.T, st store.Store, id, ip string, port int, host string, state records.State) {
	t.Helper()
	rec := records.Instance{ID: id, Name: id, Service: "web", Host: "h1", IP: ip, Port: port, State: state, Weight: 1,
		Env: map[string]string{"VIRTUAL_HOST": host}}
	b, _ := json.Marshal(rec)
	if _, err := st.Put(t.Context(), records.ServiceKey(records.DefaultPrefix, "web", "h1", id), b); err != nil {
		t.Fatal(err)
	}
}

// shippedTemplate copies the shipped templates names into dir and returns
// the path of the first.
func shippedTemplate(t *testing.T, dir string, names ...string) []string {
	t.Helper()
	var paths []string
	for _, name := range names {
		b, err := fs.ReadFile(templates.Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func countLines(p string) int {
	b, _ := os.ReadFile(p)
	return bytes.Count(b, []byte("\n"))
}

// TestLiveNginxUnderLoad runs the shipped nginx-lua.tmpl with live =
// "nginx-lua" through the runner, a real store and a real nginx with the
// Lua module: instances starting, draining and stopping under a
// continuous load leave nginx.conf byte-identical, reload nothing, and fail
// no request; a new host name is a structural change and reloads.
func TestLiveNginxUnderLoad(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	n := testenv.NewNginx(t)
	reloads := filepath.Join(t.TempDir(), "reloads")
	const host = "app.localhost"
	ips, ports := map[string]string{}, map[string]int{}
	for _, b := range []string{"b1", "b2", "b3"} {
		ips[b], ports[b] = testenv.HTTPBackend(t, b)
	}
	answer := func(b string) string { return b + " " + host }
	putProxied(t, st, "b1", ips["b1"], ports["b1"], host, records.StateRunning)
	runLive(t, st, n, nil, "echo reload >> "+reloads)

	// The live structure replaces the static file: one reload.
	l := realparts.StartLoad(n.Addr, host, 200, 4)
	defer l.Stop()
	waitUntil(t, "the live structure", func() bool { return strings.Contains(readFile(n.Conf), "balancer_by_lua_block") })
	waitFor(t, l, answer("b1"))
	structure, base := readFile(n.Conf), countLines(reloads)

	res := comeAndGo(t, st, l, ips, ports, host)
	if got := countLines(reloads); got != base {
		t.Errorf("%d reloads while instances came and went, want none", got-base)
	}
	if readFile(n.Conf) != structure {
		t.Errorf("nginx.conf changed:\n%s", render.Diff("before", "after", []byte(structure), []byte(readFile(n.Conf))))
	}
	t.Logf("%d requests, %v, no reload", res.Requests, res.Seen)

	// A new host name is structure: check and reload, and it is served.
	putProxied(t, st, "b4", ips["b2"], ports["b2"], "new.localhost", records.StateRunning)
	waitUntil(t, "new.localhost served", func() bool {
		code, body, err := n.Get("new.localhost", "/")
		return err == nil && code == 200 && body == "b2 new.localhost"
	})
	if got := countLines(reloads); got != base+1 {
		t.Errorf("%d reloads for a new host, want 1", got-base)
	}
}

// runLive renders the shipped nginx-lua.tmpl (wrapped by nginx.conf.tmpl,
// live = "nginx-lua") once statically, starts nginx on it, and runs a
// runner on it with env until the test ends; reload, if set, runs before
// each nginx reload.
func runLive(t *testing.T, st store.Store, n *testenv.Nginx, env map[string]string, reload string) {
	t.Helper()
	paths := shippedTemplate(t, t.TempDir(), "nginx.conf.tmpl", "nginx-lua.tmpl")
	tmpl := config.Template{
		Name: "nginx", Src: paths[0], Origin: "test",
		Options:  dialect.Options{Dialect: dialect.Native, Prefix: records.DefaultPrefix, Includes: paths[1:]},
		Prefixes: []string{records.ServicesPrefix(records.DefaultPrefix)},
		Spec:     render.Spec{Name: "nginx", Dest: n.Conf, Check: n.CheckCommand()},
		Live:     "nginx-lua", LiveDir: filepath.Join(n.Dir, "live"),
	}
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	env["BERTH_NGINX_LISTEN"], env["BERTH_NGINX_GRPC_LISTEN"] = n.Addr, "127.0.0.1:1"
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	renderer := render.New(render.WithLogger(log))
	// One-shot mode renders the servers into the file (no live side).
	renderOnce(t, st, renderer, log, env, tmpl)
	n.Start(t)
	tmpl.Spec.Reload = n.ReloadCommand()
	if reload != "" {
		tmpl.Spec.Reload = reload + " && " + tmpl.Spec.Reload
	}
	runInBackground(t, st, renderer, log, env, tmpl)
}

// renderOnce renders tmpl once, as berth render does: the servers in the
// file (no live side).
func renderOnce(t *testing.T, st store.Store, renderer *render.Renderer, log *slog.Logger, env map[string]string, tmpl config.Template) {
	t.Helper()
	if res, err := runner.New(st, renderer, runner.WithLogger(log), runner.WithEnv(env)).Once(t.Context(), []config.Template{tmpl}); err != nil || res[0].Err != nil {
		t.Fatalf("first render: %v %+v", err, res)
	}
}

// runInBackground runs a runner on tmpl until the test ends.
func runInBackground(t *testing.T, st store.Store, renderer *render.Renderer, log *slog.Logger, env map[string]string, tmpl config.Template) {
	r := runner.New(st, renderer, runner.WithLogger(log), runner.WithEnv(env),
		runner.WithMirrorOptions(watcher.WithBackoff(50*time.Millisecond, time.Second)))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, []config.Template{tmpl}) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitLong(t, what, 20*time.Second, cond)
}

// waitLong is waitUntil with a bound of its own.
func waitLong(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor waits until body has been answered 20 more times under l.
func waitFor(t *testing.T, l *realparts.Load, body string) {
	t.Helper()
	before := l.Seen(body)
	waitUntil(t, body+" answers", func() bool { return l.Seen(body) >= before+20 })
}

// TestLiveFallsBackWhenRefused: when nginx refuses a push (the set does
// not fit its shared dict), the runner renders the servers into the file
// and reloads, so nginx still serves every host; once a push fits again,
// it goes back to the structure only.
func TestLiveFallsBackWhenRefused(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	n := testenv.NewNginx(t)
	ip, port := testenv.HTTPBackend(t, "b1")
	putProxied(t, st, "b1", ip, port, "app.localhost", records.StateRunning)
	runLive(t, st, n, map[string]string{"BERTH_NGINX_LUA_DICT": "12k"}, "")
	served := func(host string) bool {
		code, body, err := n.Get(host, "/")
		return err == nil && code == 200 && body == "b1 "+host
	}
	isLive := func() bool { return strings.Contains(readFile(n.Conf), "balancer_by_lua_block") }
	waitUntil(t, "live and served", func() bool { return isLive() && served("app.localhost") })

	// More hosts than the dict holds: the push is refused.
	const many = 300
	for i := range many {
		putProxied(t, st, "x"+strconv.Itoa(i), ip, port, "h"+strconv.Itoa(i)+".localhost", records.StateRunning)
	}
	waitUntil(t, "the static fallback", func() bool { return !isLive() && served("h299.localhost") })
	if !strings.Contains(readFile(n.Conf), "server "+ip+":"+strconv.Itoa(port)+";") {
		t.Fatalf("the fallback does not render the servers:\n%s", readFile(n.Conf))
	}
	// Fewer again: pushes fit, the structure only is rendered.
	for i := range many {
		delInstance(t, st, "x"+strconv.Itoa(i))
	}
	waitUntil(t, "live again", func() bool { return isLive() && served("app.localhost") })
}
