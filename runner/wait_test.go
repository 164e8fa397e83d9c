package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/watcher"
)

// scriptedSource is a runner.Source the test drives: set changes its
// content (a new generation), poke notifies without a change, as a source
// may for an event that changed nothing a template sees.
type scriptedSource struct {
	mu     sync.Mutex
	snap   watcher.Snapshot
	subs   map[chan struct{}]struct{}
	synced chan struct{}
}

func newScriptedSource(names ...string) *scriptedSource {
	s := &scriptedSource{subs: map[chan struct{}]struct{}{}, synced: make(chan struct{})}
	s.set(names...)
	close(s.synced)
	return s
}

func (s *scriptedSource) set(names ...string) {
	s.mu.Lock()
	cs := []records.Container{}
	for _, n := range names {
		cs = append(cs, records.Container{Name: n})
	}
	s.snap = watcher.Snapshot{Containers: cs, Generation: s.snap.Generation + 1}
	s.mu.Unlock()
	s.poke()
}

func (s *scriptedSource) poke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (s *scriptedSource) Run(ctx context.Context) { <-ctx.Done() }
func (s *scriptedSource) Synced() <-chan struct{} { return s.synced }
func (s *scriptedSource) Health() watcher.Health {
	return watcher.Health{Prefix: "scripted", Synced: true}
}
func (s *scriptedSource) Snapshot() watcher.Snapshot { s.mu.Lock(); defer s.mu.Unlock(); return s.snap }
func (s *scriptedSource) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() { s.mu.Lock(); delete(s.subs, ch); s.mu.Unlock() }
}

// TestUnitQuietWindowIgnoresNonDataNotifications: with wait min:max, a
// source that keeps notifying every min/2 without changing its data (a
// Docker create, network connect or signal of a container no template
// shows) does not restart the quiet window of a real change: the change
// is rendered about min after it, long before max. (Were the window
// re-armed by each notification, the render would come at max.)
func TestUnitQuietWindowIgnoresNonDataNotifications(t *testing.T) {
	wait := config.Wait{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	src := newScriptedSource("a")
	dir := t.TempDir()
	tmpl, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out")
	os.WriteFile(tmpl, []byte("{{ range $ }}{{ .Name }}\n{{ end }}"), 0o644)
	conf := config.Template{Name: "t", Src: tmpl, Origin: "t.toml:1", Wait: wait,
		Options: dialect.Options{Dialect: dialect.DockerGen},
		Spec:    render.Spec{Name: "t", Dest: dest}}
	r := runner.New(nil, render.New(render.WithLogger(quietLogger())), runner.WithLogger(quietLogger()),
		runner.WithSources(func(config.Template) []string { return []string{"scripted"} },
			func(string) runner.Source { return src }),
	)
	startRunnerWith(t, r, conf)
	waitFile(t, dest, "a\n")

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	changed := time.Now()
	src.set("a", "b")
	wg.Go(func() {
		tk := time.NewTicker(wait.Min / 2)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				src.poke()
			case <-ctx.Done():
				return
			}
		}
	})
	for !strings.Contains(readFile(dest), "b\n") {
		if time.Since(changed) > wait.Max+5*time.Second {
			t.Fatal("the change was never rendered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(changed)
	if took >= wait.Max/2 {
		t.Fatalf("rendered %v after the change with wait %v: notifications that changed nothing held the quiet window", took, wait)
	}
	t.Logf("rendered %v after the change (wait %v), notified every %v meanwhile", took.Round(time.Millisecond), wait, wait.Min/2)
}

// TestUnitTriggers: a template that ignores data changes and ticks every
// 300ms (docker-gen's interval without watch) renders a change only at the
// next tick, and every tick reaches the applied hook as a Tick, changed or
// not; a regeneration renders at once.
func TestUnitTriggers(t *testing.T) {
	const every = 300 * time.Millisecond
	src := newScriptedSource("a")
	dir := t.TempDir()
	tmpl, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out")
	os.WriteFile(tmpl, []byte("{{ range $ }}{{ .Name }}\n{{ end }}"), 0o644)
	conf := config.Template{Name: "t", Src: tmpl, Origin: "t.toml:1",
		Options: dialect.Options{Dialect: dialect.DockerGen},
		Spec:    render.Spec{Name: "t", Dest: dest}}
	applied := make(chan runner.Applied, 100)
	regenerate := make(chan struct{})
	r := runner.New(nil, render.New(render.WithLogger(quietLogger())), runner.WithLogger(quietLogger()),
		runner.WithSources(func(config.Template) []string { return []string{"scripted"} },
			func(string) runner.Source { return src }),
		runner.WithTriggers(func(config.Template) runner.Triggers { return runner.Triggers{IgnoreData: true, Every: every} }),
		runner.WithApplied(func(_ context.Context, a runner.Applied) { applied <- a }),
		runner.WithRegenerate(regenerate))
	startRunnerWith(t, r, conf)
	next := func() runner.Applied {
		t.Helper()
		select {
		case a := <-applied:
			return a
		case <-time.After(10 * every):
			t.Fatal("no render")
		}
		return runner.Applied{}
	}
	if a := next(); a.Tick || !a.Result.Changed {
		t.Fatalf("first render: %+v", a)
	}
	if a := next(); !a.Tick || a.Result.Changed {
		t.Fatalf("a tick with nothing changed: %+v", a)
	}
	src.set("a", "b")
	changed := time.Now()
	a := next()
	if !a.Tick || !a.Result.Changed || readFile(dest) != "a\nb\n" {
		t.Fatalf("the change came %+v, dest %q", a, readFile(dest))
	}
	if time.Since(changed) > every+every/2 {
		t.Errorf("the change was rendered %v after it, not at the next tick", time.Since(changed))
	}
	src.set("a", "b", "c")
	regenerate <- struct{}{}
	if a := next(); readFile(dest) != "a\nb\nc\n" || !a.Result.Changed {
		t.Fatalf("regeneration: %+v, dest %q", a, readFile(dest))
	}
}
