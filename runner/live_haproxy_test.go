package runner_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/endpoints/haproxy"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
)

// TestLiveHAProxyUnderLoad runs the shipped haproxy.cfg.tmpl with live =
// "haproxy" through the runner, a real store and a real HAProxy:
// instances starting, draining and stopping under a continuous load leave
// haproxy.cfg byte-identical, reload nothing (same worker), and fail no
// request; a new host name is a structural change: one reload, and the
// push after it serves the host, with no failed request.
func TestLiveHAProxyUnderLoad(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	h := testenv.NewHAProxy(t)
	tdir := t.TempDir()
	tmpl := haproxyTemplate(t, h, tdir)
	reloads := filepath.Join(tdir, "reloads")
	const host = "app.localhost"
	ips, ports := map[string]string{}, map[string]int{}
	for _, b := range []string{"b1", "b2", "b3"} {
		ips[b], ports[b] = testenv.HTTPBackend(t, b)
	}
	answer := func(b string) string { return b + " " + host }
	putProxied(t, st, "b1", ips["b1"], ports["b1"], host, records.StateRunning)

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The live directory as the runner sets it; one-shot mode renders the
	// servers into the file (the fallback form).
	env := map[string]string{"BERTH_HAPROXY_LISTEN": h.Addr, "BERTH_LIVE_DIR": h.Dir}
	renderer := render.New(render.WithLogger(log))
	renderOnce(t, st, renderer, log, env, tmpl)
	h.Start(t)
	tmpl.Spec.Reload = "echo reload >> " + reloads + " && " + h.ReloadCommand()
	runInBackground(t, st, renderer, log, env, tmpl)

	// The live structure replaces the static file: one reload (a structural
	// change: the new worker's backends are empty until the push after it,
	// so the load starts once it has been served).
	waitUntil(t, "the live structure pushed", func() bool { return liveHost(t, h, host) })
	l := realparts.StartLoad(h.Addr, host, 200, 4)
	defer l.Stop()
	waitFor(t, l, answer("b1"))
	structure, base, worker := readFile(h.Conf), countLines(reloads), h.WorkerPID(t)

	res := comeAndGo(t, st, l, ips, ports, host)
	if got := countLines(reloads); got != base {
		t.Errorf("%d reloads while instances came and went, want none", got-base)
	}
	if w := h.WorkerPID(t); w != worker {
		t.Errorf("HAProxy's worker changed from %d to %d: it was reloaded", worker, w)
	}
	if readFile(h.Conf) != structure {
		t.Errorf("haproxy.cfg changed:\n%s", render.Diff("before", "after", []byte(structure), []byte(readFile(h.Conf))))
	}
	t.Logf("%d requests, %v, no reload", res.Requests, res.Seen)

	// A new host name is structure: check and reload, and it is served.
	// The reload starts with the current servers (the file holds them),
	// so no request to the old host fails meanwhile; the servers the file
	// wrote are the sink's, not doubled.
	l = realparts.StartLoad(h.Addr, host, 200, 4)
	for i, b := range []string{"b4", "b5", "b6"} {
		newHost := b + ".localhost"
		putProxied(t, st, b, ips["b2"], ports["b2"], newHost, records.StateRunning)
		waitUntil(t, newHost+" served", func() bool {
			code, body, err := h.Get(newHost, "/")
			return err == nil && code == 200 && body == "b2 "+newHost
		})
		if got := countLines(reloads); got != base+1+i {
			t.Errorf("%d reloads for %d new hosts, want %d", got-base, i+1, i+1)
		}
	}
	waitFor(t, l, answer("b3"))
	res = l.Stop()
	if res.Failed > 0 {
		t.Errorf("structural reloads: %d of %d requests to %s failed: %q", res.Failed, res.Requests, host, res.Failures)
	}
	if names := backendServers(t, h, host); len(names) != 1 {
		t.Errorf("backend %s has servers %q, want b3's alone", host, names)
	}
	t.Logf("3 structural reloads: %d requests to %s, %d failed", res.Requests, host, res.Failed)
}

// backendServers are the names of backend's servers in the running
// HAProxy.
func backendServers(t *testing.T, h *testenv.HAProxy, backend string) []string {
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

// liveHost reports whether HAProxy's running host map routes host: the
// worker runs the live structure and has taken a push.
func liveHost(t *testing.T, h *testenv.HAProxy, host string) bool {
	c, err := haproxy.NewClient(h.Socket).Dial(t.Context())
	if err != nil {
		return false
	}
	defer c.Close()
	m, err := c.ShowMap(t.Context(), filepath.Join(h.Dir, haproxy.MapFile))
	return err == nil && len(m) == 1 && m[0].Key == host
}

// comeAndGo is instances coming and going under the load l on host
// (backends b1, b2, b3 at ips and ports; b1 serving): b2 and b3 start, b1
// drains, b1 and b2 stop, each waited for through the proxy. It fails the
// test for a failed request or one that reached b1 after its drain took
// effect, and returns what the load saw.
func comeAndGo(t *testing.T, st store.Store, l *realparts.Load, ips map[string]string, ports map[string]int, host string) realparts.LoadResult {
	t.Helper()
	answer := func(b string) string { return b + " " + host }
	putProxied(t, st, "b2", ips["b2"], ports["b2"], host, records.StateRunning)
	waitFor(t, l, answer("b2"))
	putProxied(t, st, "b3", ips["b3"], ports["b3"], host, records.StateRunning)
	waitFor(t, l, answer("b3"))
	putProxied(t, st, "b1", ips["b1"], ports["b1"], host, records.StateDraining)
	waitUntil(t, "b1 drained", func() bool { // the push is asynchronous: wait for its effect
		before := l.Seen(answer("b1"))
		time.Sleep(100 * time.Millisecond)
		return l.Seen(answer("b1")) == before
	})
	l.MarkDraining(answer("b1"))
	waitFor(t, l, answer("b2"))
	delInstance(t, st, "b1")
	delInstance(t, st, "b2")
	waitFor(t, l, answer("b3"))
	res := l.Stop()
	if res.Failed > 0 {
		t.Errorf("%d of %d requests failed: %q", res.Failed, res.Requests, res.Failures)
	}
	if res.Late > 0 {
		t.Errorf("b1 got %d requests after its drain took effect", res.Late)
	}
	return res
}

// TestLiveGoroutinesJoined: once Run returns, no goroutine of the live
// side (the pusher, the follower and its subscriptions) is left.
func TestLiveGoroutinesJoined(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	h := testenv.NewHAProxy(t)
	tmpl := haproxyTemplate(t, h, t.TempDir())
	ip, port := testenv.HTTPBackend(t, "b1")
	putProxied(t, st, "b1", ip, port, "app.localhost", records.StateRunning)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	env := map[string]string{"BERTH_HAPROXY_LISTEN": h.Addr, "BERTH_LIVE_DIR": h.Dir}
	renderer := render.New(render.WithLogger(log))
	renderOnce(t, st, renderer, log, env, tmpl)
	h.Start(t)
	tmpl.Spec.Reload = h.ReloadCommand()
	r := runner.New(st, renderer, runner.WithLogger(log), runner.WithEnv(env))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, []config.Template{tmpl}) }()
	waitUntil(t, "the live structure pushed", func() bool { return liveHost(t, h, "app.localhost") })
	if !strings.Contains(goroutines(), "(*Pusher).Run") {
		t.Fatal("no pusher goroutine while Run runs: the check below would prove nothing")
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	for _, fn := range []string{"endpoints.(*Pusher).Run", "runner.(*live).follow"} {
		if all := goroutines(); strings.Contains(all, fn) {
			t.Errorf("%s still runs after Run returned:\n%s", fn, all)
		}
	}
}

// goroutines is the stack of every goroutine.
func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestLiveHAProxyRefusedFallsBack: HAProxy refuses a push (the worker
// runs another configuration than berth's: the reload after a new host
// did not take, so HAProxy has no backend for it) → berth says why, renders
// the servers into the file, checks and reloads, so the host is served;
// once a push is taken again it renders the structure only.
func TestLiveHAProxyRefusedFallsBack(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	h := testenv.NewHAProxy(t)
	tdir := t.TempDir()
	tmpl := haproxyTemplate(t, h, tdir)
	reloads, skip := filepath.Join(tdir, "reloads"), filepath.Join(tdir, "skip-reload")
	ips, ports := map[string]string{}, map[string]int{}
	for _, b := range []string{"b1", "b2"} {
		ips[b], ports[b] = testenv.HTTPBackend(t, b)
	}
	putProxied(t, st, "b1", ips["b1"], ports["b1"], "app.localhost", records.StateRunning)
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	env := map[string]string{"BERTH_HAPROXY_LISTEN": h.Addr, "BERTH_LIVE_DIR": h.Dir}
	renderer := render.New(render.WithLogger(log))
	renderOnce(t, st, renderer, log, env, tmpl)
	h.Start(t)
	// A reload that does not take while skip exists: the command succeeds,
	// HAProxy keeps running the configuration it has.
	// (A line in reloads says a reload command ran, after its decision.)
	tmpl.Spec.Reload = "if [ ! -e " + skip + " ]; then " + h.ReloadCommand() + "; fi && echo reload >> " + reloads
	runInBackground(t, st, renderer, log, env, tmpl)
	waitUntil(t, "the live structure pushed", func() bool { return liveHost(t, h, "app.localhost") })
	sawStatic := false
	isLive := func() bool {
		live := strings.Contains(readFile(h.Conf), "/hosts.map)]")
		sawStatic = sawStatic || !live
		return live
	}

	// A new host: berth renders and "reloads", HAProxy keeps the old
	// configuration, and refuses the push (no backend for the host).
	if err := os.WriteFile(skip, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const newHost = "new.localhost"
	skipped := countLines(reloads)
	putProxied(t, st, "b2", ips["b2"], ports["b2"], newHost, records.StateRunning)
	waitUntil(t, "the new host rendered", func() bool { return isLive() && strings.Contains(readFile(h.Conf), "backend new.localhost") })
	// The file is swapped before the reload runs: skip must stay until
	// that reload has been skipped, or it takes and nothing is refused.
	waitUntil(t, "the new host's reload skipped", func() bool { return countLines(reloads) > skipped })
	if sawStatic {
		t.Fatal("not live before the refusal: the checks below would prove nothing")
	}
	base := countLines(reloads)
	os.Remove(skip) // the next reload takes
	// The reason, as slog's text handler quotes it.
	const why = `haproxy has no backend \"new.localhost\" (upstream of new.localhost/): its configuration is not the rendered one`
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("berth's log:\n%s", logs.String())
		}
	})
	waitLong(t, "the refusal reported", 60*time.Second, func() bool {
		return strings.Contains(logs.String(), "proxy refused the endpoint set; falling back to rendering the servers and reloading") &&
			strings.Contains(logs.String(), why)
	})
	// The fallback: the servers in the file, checked and reloaded; the new
	// host is served from the file.
	waitLong(t, "the static fallback served", 30*time.Second, func() bool {
		code, body, err := h.Get(newHost, "/")
		return !isLive() && err == nil && code == 200 && body == "b2 "+newHost && countLines(reloads) > base
	})
	if !strings.Contains(logs.String(), "rendering the servers into the file and reloading until the proxy takes pushes again") {
		t.Errorf("the fallback is not reported:\n%s", logs.String())
	}
	// HAProxy takes pushes again: back to the structure only, still served.
	waitLong(t, "live again", 30*time.Second, func() bool {
		code, body, err := h.Get(newHost, "/")
		return isLive() && err == nil && code == 200 && body == "b2 "+newHost
	})
	if code, body, err := h.Get("app.localhost", "/"); err != nil || code != 200 || body != "b1 app.localhost" {
		t.Errorf("app.localhost: %d %q %v", code, body, err)
	}
}

// haproxyTemplate is the shipped haproxy.cfg.tmpl, copied into dir, with
// live = "haproxy" in front of h (no reload command yet).
func haproxyTemplate(t *testing.T, h *testenv.HAProxy, dir string) config.Template {
	paths := shippedTemplate(t, dir, "haproxy.cfg.tmpl")
	return config.Template{
		Name: "haproxy", Src: paths[0], Origin: "test",
		Options:  dialect.Options{Dialect: dialect.Native, Prefix: records.DefaultPrefix},
		Prefixes: []string{records.ServicesPrefix(records.DefaultPrefix)},
		Spec:     render.Spec{Name: "haproxy", Dest: h.Conf, Check: h.CheckCommand()},
		Live:     "haproxy", LiveDir: h.Dir,
	}
}
