package runner_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// kvTemplate writes a template listing the keys under prefix and returns
// its configuration.
func kvTemplate(t *testing.T, dir, name, prefix, text string) config.Template {
	t.Helper()
	src := filepath.Join(dir, name+".tmpl")
	if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return config.Template{
		Name: name, Src: src, Origin: name + ".toml:1",
		Options:  dialect.Options{Dialect: dialect.Native},
		Prefixes: []string{prefix},
		Spec:     render.Spec{Name: name, Dest: filepath.Join(dir, name+".out")},
	}
}

func startRunner(t *testing.T, st store.Store, ts ...config.Template) *runner.Runner {
	t.Helper()
	return startRunnerWith(t, runner.New(st, render.New(render.WithLogger(quietLogger())), runner.WithLogger(quietLogger())), ts...)
}

// startRunnerWith runs r on ts until the test ends.
func startRunnerWith(t *testing.T, r *runner.Runner, ts ...config.Template) *runner.Runner {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, ts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, _ := os.ReadFile(path)
		if string(got) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q, want %q", path, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTemplateEdits: an edited template re-renders; a broken edit keeps the
// previous version, is reported with file:line, and a fixed edit applies.
func TestTemplateEdits(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	st.Put(t.Context(), "/app/port", []byte("8080"))
	dir := t.TempDir()
	tmpl := kvTemplate(t, dir, "app", "/app/", `port={{ key "/app/port" }}`)
	r := startRunner(t, st, tmpl)
	waitFile(t, tmpl.Spec.Dest, "port=8080")

	// An editor's atomic save: write a temp file and rename it over.
	save := func(text string) {
		tmp := tmpl.Src + ".swp"
		os.WriteFile(tmp, []byte(text), 0o644)
		os.Rename(tmp, tmpl.Src)
	}
	save(`listen={{ key "/app/port" }}`)
	waitFile(t, tmpl.Spec.Dest, "listen=8080")

	save("listen={{ key \"/app/port\" \n{{ end }}")
	s := waitStatusOf(t, r, "app", func(s runner.TemplateStatus) bool { return s.LastError != nil })
	if !strings.Contains(s.LastError.Error(), "app.tmpl:") || !strings.Contains(s.LastError.Error(), "keeping the previous version") {
		t.Fatalf("broken edit reported as %v", s.LastError)
	}
	// Data still flows through the previous version of the template.
	st.Put(t.Context(), "/app/port", []byte("9090"))
	waitFile(t, tmpl.Spec.Dest, "listen=9090")

	save(`port {{ key "/app/port" }}`)
	waitFile(t, tmpl.Spec.Dest, "port 9090")
}

// TestUpdate: a configuration reload keeps unchanged templates, starts new
// ones (sharing mirrors), and stops removed ones.
func TestUpdate(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	ctx := t.Context()
	st.Put(ctx, "/a/x", []byte("1"))
	st.Put(ctx, "/b/y", []byte("2"))
	dir := t.TempDir()
	a := kvTemplate(t, dir, "a", "/a/", `{{ range tree "/a/" }}{{ .Key }}={{ .Value }};{{ end }}`)
	b := kvTemplate(t, dir, "b", "/b/", `{{ range tree "/b/" }}{{ .Key }}={{ .Value }};{{ end }}`)
	a2 := kvTemplate(t, dir, "a2", "/a/", `count={{ len (tree "/a/") }}`)
	r := startRunner(t, st, a, b)
	waitFile(t, a.Spec.Dest, "x=1;")
	waitFile(t, b.Spec.Dest, "y=2;")

	if err := r.Update(ctx, []config.Template{a, a2}); err != nil {
		t.Fatal(err)
	}
	waitFile(t, a2.Spec.Dest, "count=1")
	st.Put(ctx, "/a/z", []byte("3"))
	st.Put(ctx, "/b/y", []byte("changed"))
	waitFile(t, a.Spec.Dest, "x=1;z=3;")
	waitFile(t, a2.Spec.Dest, "count=2")
	time.Sleep(300 * time.Millisecond)
	if got, _ := os.ReadFile(b.Spec.Dest); string(got) != "y=2;" {
		t.Fatalf("removed template still renders: %q", got)
	}
	ss, _ := r.Status(ctx)
	if len(ss) != 2 || ss[0].Name != "a" || ss[1].Name != "a2" {
		t.Fatalf("status after update: %+v", ss)
	}

	// A bad configuration is refused and the running one stays.
	bad := a2
	bad.Spec.Dest = a.Spec.Dest
	if err := r.Update(ctx, []config.Template{a, bad}); err == nil {
		t.Fatal("two templates writing one destination accepted")
	}
	st.Put(ctx, "/a/w", []byte("4"))
	waitFile(t, a2.Spec.Dest, "count=3")
}

// TestOnceRendersAfterSync: one-shot mode renders once every prefix has
// synced, and reports what it wrote.
func TestOnceRendersAfterSync(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	st.Put(t.Context(), "/o/a", []byte("1"))
	dir := t.TempDir()
	tmpl := kvTemplate(t, dir, "o", "/o/", `{{ range tree "/o/" }}{{ .Key }}{{ end }}`)
	r := runner.New(st, render.New(render.WithLogger(quietLogger())), runner.WithLogger(quietLogger()))
	res, err := r.Once(t.Context(), []config.Template{tmpl})
	if err != nil || len(res) != 1 || res[0].Err != nil || !res[0].Changed {
		t.Fatalf("once: %v %+v", err, res)
	}
	waitFile(t, tmpl.Spec.Dest, "a")
}

// TestBrokenTemplateAtStart: a template that does not parse does not stop
// the daemon; it is reported, and renders once its file is fixed.
func TestBrokenTemplateAtStart(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	st.Put(t.Context(), "/app/port", []byte("8080"))
	dir := t.TempDir()
	good := kvTemplate(t, dir, "good", "/app/", `port={{ key "/app/port" }}`)
	broken := kvTemplate(t, dir, "broken", "/app/", `{{ if }}`)
	r := startRunner(t, st, good, broken)
	waitFile(t, good.Spec.Dest, "port=8080")
	s := waitStatusOf(t, r, "broken", func(s runner.TemplateStatus) bool { return s.LastError != nil })
	if !strings.Contains(s.LastError.Error(), "broken.tmpl:1") {
		t.Fatalf("error does not name file:line: %v", s.LastError)
	}
	os.WriteFile(broken.Src, []byte(`fixed {{ key "/app/port" }}`), 0o644)
	waitFile(t, broken.Spec.Dest, "fixed 8080")
}

// TestOnceFailsFast: one-shot mode does not wait out a store that cannot
// list; it fails with the store's error.
func TestOnceFailsFast(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	st.Close()
	tmpl := kvTemplate(t, t.TempDir(), "o", "/o/", `x`)
	r := runner.New(st, render.New(render.WithLogger(quietLogger())), runner.WithLogger(quietLogger()))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := r.Once(ctx, []config.Template{tmpl})
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("once on a closed store: %v (context %v)", err, ctx.Err())
	}
}

// waitStatusOf waits until the named template's status meets cond.
func waitStatusOf(t *testing.T, r *runner.Runner, name string, cond func(runner.TemplateStatus) bool) runner.TemplateStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ss, err := r.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			if s.Name == name && cond(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s never met the condition: %+v", name, ss)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFileSource: with a file:// store, an edit of the YAML file (saved the
// way editors do: a temporary file renamed over it) re-renders; a broken
// edit keeps the last good output.
func TestFileSource(t *testing.T) {
	dir := t.TempDir()
	values := filepath.Join(dir, "values.yaml")
	os.WriteFile(values, []byte("app:\n  port: 8080\n"), 0o644)
	st := openStore(t, "file://"+values)
	tmpl := kvTemplate(t, t.TempDir(), "app", "/app/", `port={{ key "/app/port" }}`)
	startRunner(t, st, tmpl)
	waitFile(t, tmpl.Spec.Dest, "port=8080")

	save := func(text string) {
		tmp := filepath.Join(dir, ".values.yaml.swp")
		os.WriteFile(tmp, []byte(text), 0o644)
		os.Rename(tmp, values)
	}
	save("app:\n  port: 9090\n")
	waitFile(t, tmpl.Spec.Dest, "port=9090")
	save("app:\n  port: [unclosed\n")
	time.Sleep(500 * time.Millisecond)
	waitFile(t, tmpl.Spec.Dest, "port=9090")
	save("app:\n  port: 7070\n")
	waitFile(t, tmpl.Spec.Dest, "port=7070")
}

// TestWarnLoggedOnce: what a template reports with {{warn}} is logged when
// it first appears, not again at every render that still finds it, and
// again once it went away and came back.
func TestWarnLoggedOnce(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	st.Put(t.Context(), "/w/conflict", []byte("yes"))
	dir := t.TempDir()
	tmpl := kvTemplate(t, dir, "w", "/w/", `{{ if keyExists "/w/conflict" }}{{ warn "conflict found" }}{{ end }}n={{ len (ls "/w/") }}`)
	var logs testenv.SyncBuffer
	r := runner.New(st, render.New(render.WithLogger(quietLogger())), runner.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, []config.Template{tmpl}) }()
	defer func() { cancel(); <-done }()

	waitFile(t, tmpl.Spec.Dest, "n=1")
	st.Put(t.Context(), "/w/a", []byte("1"))
	waitFile(t, tmpl.Spec.Dest, "n=2")
	st.Put(t.Context(), "/w/b", []byte("1"))
	waitFile(t, tmpl.Spec.Dest, "n=3")
	if n := logs.Count("conflict found"); n != 1 {
		t.Fatalf("logged %d times over three renders, want once:\n%s", n, logs.String())
	}
	st.Delete(t.Context(), "/w/conflict")
	waitFile(t, tmpl.Spec.Dest, "n=2")
	st.Put(t.Context(), "/w/conflict", []byte("again"))
	waitFile(t, tmpl.Spec.Dest, "n=3")
	if n := logs.Count("conflict found"); n != 2 {
		t.Fatalf("logged %d times, want twice (it went away and came back):\n%s", n, logs.String())
	}
}

// TestGuardsHoldAcrossRestart: records lost while berth was down (a lease
// that expired in an outage) do not empty the output on the first render
// of the next daemon: max_shrink remembers the last good count across the
// restart, and an empty output never replaces a non-empty one.
func TestGuardsHoldAcrossRestart(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	ctx := t.Context()
	for i := range 10 {
		st.Put(ctx, "/up/"+strconv.Itoa(i), []byte("x"))
	}
	dir := t.TempDir()
	shrink := kvTemplate(t, dir, "shrink", "/up/", `{{ range tree "/up/" }}server {{ .Key }};{{ end }}`)
	shrink.Spec.MaxShrink = 0.5
	empty := kvTemplate(t, dir, "empty", "/up/", `{{ range tree "/up/" }}server {{ .Key }};{{ end }}`)
	want := "server 0;server 1;server 2;server 3;server 4;server 5;server 6;server 7;server 8;server 9;"

	ctx1, stop := context.WithCancel(ctx)
	r := runner.New(st, render.New(render.WithLogger(quietLogger())), runner.WithLogger(quietLogger()))
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx1, []config.Template{shrink, empty}) }()
	waitFile(t, shrink.Spec.Dest, want)
	waitFile(t, empty.Spec.Dest, want)
	stop()
	<-done

	// The outage: eight records (shrink) or all of them (empty) are gone.
	st.Delete(ctx, "/up/", store.WithPrefix())
	st.Put(ctx, "/up/0", []byte("x"))
	st.Put(ctx, "/up/1", []byte("x"))
	r = startRunner(t, st, shrink, empty) // a new process: a new Renderer
	s := waitStatusOf(t, r, "shrink", func(s runner.TemplateStatus) bool { return s.LastError != nil })
	if !errors.Is(s.LastError, render.ErrRefused) || s.FailingSince.IsZero() {
		t.Fatalf("shrink after the restart: %v (failing since %v)", s.LastError, s.FailingSince)
	}
	waitFile(t, empty.Spec.Dest, "server 0;server 1;") // no max_shrink: applied
	st.Delete(ctx, "/up/", store.WithPrefix())
	s = waitStatusOf(t, r, "empty", func(s runner.TemplateStatus) bool { return s.LastError != nil })
	if !errors.Is(s.LastError, render.ErrRefused) || !strings.Contains(s.LastError.Error(), "allow_empty") {
		t.Fatalf("empty output: %v", s.LastError)
	}
	if got, _ := os.ReadFile(shrink.Spec.Dest); string(got) != want {
		t.Fatalf("shrink dest = %q after the restart, want the last good output", got)
	}
	if got, _ := os.ReadFile(empty.Spec.Dest); string(got) != "server 0;server 1;" {
		t.Fatalf("empty dest = %q, want the last good output", got)
	}
}

// TestQuarantineExecError: a record on which the template fails to
// execute (here a value it refuses with sprig's fail) is quarantined like
// one that fails the check: the others render, including records written
// after it; deleting it releases it; written again with a good value it is
// rendered.
func TestQuarantineExecError(t *testing.T) {
	st := openStore(t, "embedded://"+t.TempDir())
	ctx := t.Context()
	st.Put(ctx, "/e/a", []byte("1"))
	dir := t.TempDir()
	tmpl := kvTemplate(t, dir, "e", "/e/", `{{ range tree "/e/" }}{{ if eq .Value "bad" }}{{ fail "refusing bad" }}{{ end }}{{ .Key }}={{ .Value }};{{ end }}`)
	r := startRunner(t, st, tmpl)
	waitFile(t, tmpl.Spec.Dest, "a=1;")

	st.Put(ctx, "/e/b", []byte("bad"))
	st.Put(ctx, "/e/c", []byte("3"))
	waitFile(t, tmpl.Spec.Dest, "a=1;c=3;")
	s := waitStatusOf(t, r, "e", func(s runner.TemplateStatus) bool { return len(s.Quarantined) == 1 })
	if q := s.Quarantined[0]; q.Key != "/e/b" || !strings.Contains(q.Reason, "refusing bad") || s.LastError != nil {
		t.Fatalf("status %+v", s)
	}
	st.Put(ctx, "/e/d", []byte("4"))
	waitFile(t, tmpl.Spec.Dest, "a=1;c=3;d=4;")
	st.Delete(ctx, "/e/b")
	waitStatusOf(t, r, "e", func(s runner.TemplateStatus) bool { return len(s.Quarantined) == 0 })
	st.Put(ctx, "/e/b", []byte("2"))
	waitFile(t, tmpl.Spec.Dest, "a=1;b=2;c=3;d=4;")
}
