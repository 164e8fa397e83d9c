package daemon

// The fast tier (go test -run Unit): the daemon's logic on a memory store,
// a scripted runtime and an in-process Commander for check and reload
// commands; no process, no root. The same behaviours run against etcd,
// Docker and real commands in daemon_test.go, lease_test.go and up_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/runtimetest"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/memstore"
)

// within bounds every wait for the daemon to act: generous, for a loaded
// machine; what is asserted is what happens and in which order.
const within = 10 * time.Second

// Eventually waits up to d for cond, checking it every 10ms (the external
// tests use it too).
func Eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	Eventually(t, what, within, cond)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
}

// commands is an in-process render.Commander for templates whose check is
// "check {{.src}}" and reload "reload {{.src}}": a check fails while
// failing is set or the file holds refuse; a reload records the file.
type commands struct {
	failing atomic.Bool
	refuse  string // set before the daemon starts

	mu      sync.Mutex
	reloads []string
}

func (c *commands) Run(_ context.Context, argv []string) ([]byte, error) {
	verb, file, _ := strings.Cut(argv[len(argv)-1], " ")
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	switch verb {
	case "check":
		if c.failing.Load() || (c.refuse != "" && bytes.Contains(b, []byte(c.refuse))) {
			return []byte("check: refused\n"), errors.New("exit status 1")
		}
	case "reload":
		c.mu.Lock()
		c.reloads = append(c.reloads, string(b))
		c.mu.Unlock()
	default:
		return nil, fmt.Errorf("commands: unknown command %q", argv)
	}
	return nil, nil
}

func (c *commands) reloaded() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reloads)
}

// unitTemplate writes a native template of body and returns its
// configuration (checked and reloaded through commands) and destination.
func unitTemplate(t *testing.T, body string) (config.Template, string) {
	t.Helper()
	dir := t.TempDir()
	src, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "t.txt")
	if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := config.ParseTemplateFlag(src+":"+dest+":reload {{.src}}", dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Spec.Check = "check {{.src}}"
	return tmpl, dest
}

// listing is a template listing the services and their instance counts.
const listing = `{{range $k, $v := .Services}}{{$k}} {{len $v}}{{"\n"}}{{end}}`

func fileIs(path, want string) func() bool {
	return func() bool {
		b, err := os.ReadFile(path)
		return err == nil && string(b) == want
	}
}

// start runs a daemon until the end of the test, checking that Run
// returns nil.
func start(t *testing.T, st store.Store, rt runtime.Runtime, cfg Config, templates ...config.Template) *Daemon {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	d, err := New(st, rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, templates) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(within):
			t.Error("Run did not return after its context ended")
		}
	})
	return d
}

func healthz(t *testing.T, d *Daemon) (int, HealthReport) {
	t.Helper()
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var rep HealthReport
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("/healthz: %v: %s", err, rec.Body)
	}
	return rec.Code, rep
}

func metricsText(t *testing.T, d *Daemon) string {
	t.Helper()
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func check(rep HealthReport, name string) (Check, bool) {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

func putInstance(t *testing.T, st store.Store, svc, id string) string {
	t.Helper()
	key := records.ServiceKey("", svc, "h1", id)
	b, _ := json.Marshal(records.Instance{ID: id, Name: id, Service: svc, Host: "h1", State: records.StateRunning})
	if _, err := st.Put(t.Context(), key, b); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestUnitHealthDegraded: a template whose check keeps failing leaves no
// output and, past StallAfter, makes /healthz answer 200 "degraded",
// naming the template; once the check passes, the retry applies it and
// health is ok again.
func TestUnitHealthDegraded(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	cmds := &commands{}
	cmds.failing.Store(true)
	tmpl, dest := unitTemplate(t, listing)
	putInstance(t, st, "web", "c1")
	d := start(t, st, nil, Config{StallAfter: 200 * time.Millisecond, Commander: cmds}, tmpl)
	var (
		code int
		rep  HealthReport
	)
	await(t, "degraded", func() bool { code, rep = healthz(t, d); return rep.Status == StatusDegraded })
	c, _ := check(rep, "template "+tmpl.Name)
	if code != http.StatusOK || !rep.OK || !c.OK || !c.Degraded || !strings.Contains(c.Detail, "failing to apply") {
		t.Errorf("degraded: /healthz %d %+v", code, rep)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Errorf("%s written although its check fails", dest)
	}
	if m := metricsText(t, d); !strings.Contains(m, `berth_command_failures_total{command="check",template="`+tmpl.Name+`"}`) {
		t.Error("/metrics does not count the failed checks")
	}
	cmds.failing.Store(false)
	await(t, "ok once the check passes", func() bool { code, rep = healthz(t, d); return code == http.StatusOK && rep.Status == StatusOK })
	if !fileIs(dest, "web 1\n")() {
		t.Errorf("%s not applied after the fix", dest)
	}
}

// TestUnitHealthQuarantined: a record whose value makes the template's
// check fail is quarantined; the others are applied, /healthz says
// degraded (200) naming the key, and /metrics counts it.
func TestUnitHealthQuarantined(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	cmds := &commands{refuse: "evil"}
	tmpl, dest := unitTemplate(t, listing)
	putInstance(t, st, "web", "c1")
	bad := putInstance(t, st, "evil", "c2")
	putInstance(t, st, "api", "c3")
	d := start(t, st, nil, Config{StallAfter: time.Hour, Commander: cmds}, tmpl)
	var rep HealthReport
	await(t, "degraded by the quarantine", func() bool {
		var code int
		code, rep = healthz(t, d)
		return code == http.StatusOK && rep.Status == StatusDegraded
	})
	if c, _ := check(rep, "template "+tmpl.Name); !c.Degraded || !strings.Contains(c.Detail, "1 quarantined ("+bad+")") {
		t.Errorf("degraded report does not name %s: %+v", bad, rep)
	}
	await(t, "the good services applied", fileIs(dest, "api 1\nweb 1\n"))
	if want := `berth_quarantined_records{template="` + tmpl.Name + `"} 1`; !strings.Contains(metricsText(t, d), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// faulty is a store whose reads, or writes, fail or go unanswered while
// told to: the faults of an unreachable or frozen store.
type faulty struct {
	store.Store
	reads, writes atomic.Value // of fault
}

type fault int

const (
	answer fault = iota
	refuse
	silent // no answer (until the request's context ends or the mode changes)
)

func newFaulty(st store.Store) *faulty {
	f := &faulty{Store: st}
	f.reads.Store(answer)
	f.writes.Store(answer)
	return f
}

func (f *faulty) fail(ctx context.Context, mode *atomic.Value) error {
	switch mode.Load().(fault) {
	case refuse:
		return errors.New("faulty: connection refused")
	case silent: // until the request gives up, or the store answers again
		for mode.Load().(fault) == silent {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

func (f *faulty) Get(ctx context.Context, key string) (store.KV, error) {
	if err := f.fail(ctx, &f.reads); err != nil {
		return store.KV{}, err
	}
	return f.Store.Get(ctx, key)
}

func (f *faulty) List(ctx context.Context, prefix string) ([]store.KV, store.Revision, error) {
	if err := f.fail(ctx, &f.reads); err != nil {
		return nil, 0, err
	}
	return f.Store.List(ctx, prefix)
}

func (f *faulty) Txn(ctx context.Context, ops ...store.Op) (store.Revision, error) {
	if err := f.fail(ctx, &f.writes); err != nil {
		return 0, err
	}
	return f.Store.Txn(ctx, ops...)
}

// TestUnitHealthStore: a store that refuses reads, or leaves them
// unanswered, makes /healthz fail (503) past StallAfter, naming the store;
// the last output stays; health comes back with the store.
func TestUnitHealthStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode fault
		want string
	}{
		{"refusing", refuse, "connection refused"},
		{"silent", silent, ""}, // "no answer for", or the probe's deadline
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memstore.New()
			defer mem.Close()
			st := newFaulty(mem)
			tmpl, dest := unitTemplate(t, listing)
			putInstance(t, st, "api", "a1")
			d := start(t, st, nil, Config{StallAfter: 300 * time.Millisecond, Commander: &commands{}}, tmpl)
			await(t, "rendered", fileIs(dest, "api 1\n"))
			await(t, "healthy", func() bool { code, _ := healthz(t, d); return code == http.StatusOK })
			st.reads.Store(tc.mode)
			var rep HealthReport
			await(t, "unhealthy", func() bool { var code int; code, rep = healthz(t, d); return code == http.StatusServiceUnavailable })
			if c, _ := check(rep, "store"); rep.OK || rep.Status != StatusUnhealthy || c.OK || !strings.Contains(c.Detail, "reads failing for") || !strings.Contains(c.Detail, tc.want) {
				t.Errorf("health report: %+v", rep)
			}
			if !fileIs(dest, "api 1\n")() {
				t.Errorf("%s changed during the outage", dest)
			}
			st.reads.Store(answer)
			await(t, "healthy again", func() bool { code, _ := healthz(t, d); return code == http.StatusOK })
		})
	}
}

// host is a registering daemon's world: a scripted runtime with one
// container of service svc, a memory store server, and the test's client.
type host struct {
	rt   *runtimetest.Runtime
	srv  *memstore.Server
	view *memstore.Store
	c    runtime.Container
	key  string // the container's instance record
}

func newHost(t *testing.T) *host {
	t.Helper()
	h := &host{rt: runtimetest.New(), srv: memstore.NewServer()}
	h.view = h.srv.Open()
	t.Cleanup(func() { h.view.Close(); h.rt.Close() })
	h.c = h.run(t, "svc-1")
	h.key = records.ServiceKey(records.DefaultPrefix, "svc", "h1", h.c.ID)
	return h
}

func (h *host) run(t *testing.T, name string) runtime.Container {
	t.Helper()
	c, err := h.rt.Run(t.Context(), runtime.Spec{Name: name, Image: "svc:1", Labels: map[string]string{"berth.service": "svc"},
		Publish: []runtime.Port{{Port: 8080, Proto: "tcp"}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// client opens a client of the store for a daemon, closed at the end.
func (h *host) client(t *testing.T) *memstore.Store {
	st := h.srv.Open()
	t.Cleanup(func() { st.Close() })
	return st
}

func (h *host) present(keys ...string) func() bool {
	return func() bool {
		for _, k := range keys {
			if _, err := h.view.Get(context.Background(), k); err != nil {
				return false
			}
		}
		return true
	}
}

// dropAll deletes every record, as a store does when it revokes a lease
// lost in an outage, and returns the revision of the delete.
func (h *host) dropAll(t *testing.T) store.Revision {
	t.Helper()
	rev, err := h.view.Delete(t.Context(), records.Root(records.DefaultPrefix), store.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// registering is cfg with the registrar of host h1; the templates wait
// for its first reconcile however loaded the machine.
func registering(cfg Config) Config {
	cfg.Registrar = registrar.Config{Host: "h1", TTL: time.Minute, Resync: time.Hour, Drain: cfg.Registrar.Drain}
	cfg.SyncWait = time.Hour
	return cfg
}

// TestUnitHoldDuringReregister: the store drops this host's records (a
// lease lost in an outage); the template's watch is held back while the
// registrar writes them again, so that no output ever swapped in (each
// reload records one) lacks the instance.
func TestUnitHoldDuringReregister(t *testing.T) {
	h := newHost(t)
	cmds := &commands{}
	tmpl, dest := unitTemplate(t, `{{with index .Services "svc"}}{{len .}}{{else}}0{{end}}`+"\n")
	d := start(t, h.client(t), h.rt, registering(Config{StallAfter: time.Hour, Commander: cmds}), tmpl)
	await(t, "rendered", fileIs(dest, "1\n"))
	dropped := h.dropAll(t)
	await(t, "the record written again", func() bool {
		kv, err := h.view.Get(t.Context(), h.key)
		return err == nil && kv.ModRevision > dropped
	})
	await(t, "released", func() bool { return d.hold.held().IsZero() })
	if got := cmds.reloaded(); slices.ContainsFunc(got, func(s string) bool { return s != "1\n" }) {
		t.Errorf("outputs swapped in: %q; the gap was rendered", got)
	}
	if !fileIs(dest, "1\n")() {
		t.Errorf("%s lacks the instance after the re-registration", dest)
	}
	var holds int
	for line := range strings.Lines(metricsText(t, d)) {
		fmt.Sscanf(line, "berth_render_holds_total %d", &holds)
	}
	if holds < 1 {
		t.Error("no hold counted: the records were not taken for lost, the test proved nothing")
	}
	if _, rep := healthz(t, d); !rep.OK {
		t.Errorf("unhealthy after the re-registration: %+v", rep)
	}
}

// TestUnitRecordsDroppedComeBack: records the store drops are written
// again even when no template watches them: the store probe finds this
// host's record gone while the registrar still owns it.
func TestUnitRecordsDroppedComeBack(t *testing.T) {
	h := newHost(t)
	start(t, h.client(t), h.rt, registering(Config{StallAfter: 400 * time.Millisecond}))
	keys := []string{h.key, records.HostKey(records.DefaultPrefix, "h1")}
	await(t, "registered", h.present(keys...))
	h.dropAll(t)
	await(t, "written again", h.present(keys...))
}

// TestUnitRegistrationUnhealthy: lost records that cannot be written again
// (the store refuses writes) make the registration check fail past
// StallAfter; they are written once the store takes writes again.
func TestUnitRegistrationUnhealthy(t *testing.T) {
	h := newHost(t)
	st := newFaulty(h.client(t))
	d := start(t, st, h.rt, registering(Config{StallAfter: 300 * time.Millisecond}))
	await(t, "registered", h.present(h.key))
	st.writes.Store(refuse)
	h.dropAll(t)
	var rep HealthReport
	await(t, "registration failing", func() bool {
		_, rep = healthz(t, d)
		c, _ := check(rep, "registration")
		return !c.OK
	})
	if c, _ := check(rep, "registration"); rep.OK || !strings.Contains(c.Detail, "being written again") {
		t.Errorf("health report: %+v", rep)
	}
	st.writes.Store(answer)
	await(t, "written again", h.present(h.key))
	await(t, "healthy again", func() bool { _, rep = healthz(t, d); return rep.OK })
}

// storeHistory records the changes under a prefix, with when each was
// seen (never before it happened).
type storeHistory struct {
	mu   sync.Mutex
	evs  []store.Event
	seen []time.Time
}

func watchHistory(t *testing.T, st store.Store, prefix string) *storeHistory {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	_, rev, err := st.List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	h := &storeHistory{}
	ch := st.Watch(ctx, prefix, rev)
	go func() {
		for resp := range ch {
			h.mu.Lock()
			for _, ev := range resp.Events {
				h.evs, h.seen = append(h.evs, ev), append(h.seen, time.Now())
			}
			h.mu.Unlock()
		}
	}()
	return h
}

// of returns the states written at key ("deleted" for a delete) and when
// the last was seen.
func (h *storeHistory) of(t *testing.T, key string) ([]string, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	var last time.Time
	for i, ev := range h.evs {
		if ev.KV.Key != key {
			continue
		}
		last = h.seen[i]
		if ev.Type == store.EventDelete {
			out = append(out, "deleted")
			continue
		}
		var in records.Instance
		if err := json.Unmarshal(ev.KV.Value, &in); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(in.State))
	}
	return out, last
}

// runForShutdown starts a registering daemon as Run does and returns what
// shutdown takes.
func runForShutdown(t *testing.T, h *host, s Settings) (*Daemon, Settings, context.CancelFunc, <-chan error) {
	t.Helper()
	s.Daemon.Logger = testLogger(t)
	s = s.withDefaults()
	d, err := New(h.client(t), h.rt, s.Daemon)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(ctx, nil) }()
	return d, s, cancel, runDone
}

// TestUnitShutdownOrder: with StopContainers, the containers stop first,
// while the registrar runs: their records drain (written as draining,
// removed after the drain) before the daemon exits; with Remove they are
// removed too. Without, they keep running and their records stay, left to
// the lease.
func TestUnitShutdownOrder(t *testing.T) {
	const drain = 300 * time.Millisecond
	t.Run("stop and remove", func(t *testing.T) {
		h := newHost(t)
		other := h.run(t, "svc-2")
		keys := []string{h.key, records.ServiceKey(records.DefaultPrefix, "svc", "h1", other.ID)}
		d, s, cancel, runDone := runForShutdown(t, h, Settings{StopContainers: true, Remove: true, StopGrace: 5 * time.Second,
			Daemon: registering(Config{Registrar: registrar.Config{Drain: drain}})})
		await(t, "registered", h.present(keys...))
		hist := watchHistory(t, h.view, records.Root(records.DefaultPrefix))
		started := time.Now()
		if err := shutdown(h.rt, d, s, cancel, runDone); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			states, last := hist.of(t, k)
			if _, err := h.view.Get(t.Context(), k); !errors.Is(err, store.ErrNotFound) {
				// The registrar has stopped: a record left now stays for the lease.
				t.Errorf("%s still in the store after the daemon exited (%v)", k, err)
				continue
			}
			await(t, "the history", func() bool { states, last = hist.of(t, k); return len(states) == 2 })
			if !slices.Equal(states, []string{"draining", "deleted"}) {
				t.Errorf("writes of %s: %q, want draining, then deleted", k, states)
			}
			if took := last.Sub(started); took < drain {
				t.Errorf("%s removed %s into the shutdown, before its drain of %s", k, took, drain)
			}
		}
		if cs, err := h.rt.List(t.Context()); err != nil || len(cs) != 0 {
			t.Errorf("containers after --rm: %d (%v)", len(cs), err)
		}
	})
	t.Run("leave them running", func(t *testing.T) {
		h := newHost(t)
		d, s, cancel, runDone := runForShutdown(t, h, Settings{Daemon: registering(Config{Registrar: registrar.Config{Drain: drain}})})
		await(t, "registered", h.present(h.key))
		if err := shutdown(h.rt, d, s, cancel, runDone); err != nil {
			t.Fatal(err)
		}
		if c, err := h.rt.Inspect(t.Context(), h.c.ID); err != nil || !c.Running() {
			t.Errorf("container after the shutdown: %v %v", c.State, err)
		}
		if !h.present(h.key)() {
			t.Errorf("%s removed although the container runs on", h.key)
		}
	})
}

// TestUnitShutdownSignalWindow: during a shutdown that stops containers, a
// stop signal after the signal window cuts the grace short (the container
// is killed now); one within the window is the same request, and the
// grace is waited out.
func TestUnitShutdownSignalWindow(t *testing.T) {
	for _, tc := range []struct {
		name          string
		window, grace time.Duration
		hurried       bool
	}{
		{"after the window", time.Nanosecond, time.Hour, true},
		{"within the window", time.Hour, 300 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			if err := h.rt.SetBehavior(h.c.ID, runtimetest.Behavior{IgnoreStop: true}); err != nil {
				t.Fatal(err)
			}
			sigs := make(chan os.Signal, 1)
			d, s, cancel, runDone := runForShutdown(t, h, Settings{StopContainers: true, StopGrace: tc.grace, Signals: sigs, SignalWindow: tc.window,
				Daemon: registering(Config{})})
			await(t, "registered", h.present(h.key))
			done := make(chan error, 1)
			began := time.Now() // before the grace starts
			go func() { done <- shutdown(h.rt, d, s, cancel, runDone) }()
			await(t, "the stop", func() bool { return h.rt.Calls(runtimetest.OpStop) > 0 })
			sigs <- syscall.SIGTERM
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the shutdown did not end")
			}
			c, err := h.rt.Inspect(t.Context(), h.c.ID)
			if err != nil || c.Running() || c.ExitCode != 137 {
				t.Errorf("container after the shutdown: %v, exit %d (%v); want killed", c.State, c.ExitCode, err)
			}
			if !tc.hurried && time.Since(began) < tc.grace {
				t.Errorf("a signal within the window cut the grace of %s short", tc.grace)
			}
		})
	}
}
