package dockergen_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dockergen"
	"github.com/berthd/berth/dockergen/dockertest"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime"
)

// TestNotifyContainers: after a render that changed the destination, the
// containers a configuration names get their signal (a probe counts the
// SIGHUPs it receives), the running containers its notify filter selects
// get the filter's signal, and -1 restarts a container; a render that
// changed nothing signals nobody.
func TestNotifyContainers(t *testing.T) {
	img := dockertest.BuildImage(t)
	network := testenv.DockerNetwork(t, img)
	rt := dockertest.Engine(t)
	tag := img.Tag()
	k, v, _ := strings.Cut(img.Label, "=")
	start := func(name string, labels map[string]string, env ...string) runtime.Container {
		t.Helper()
		labels[k] = v
		c, err := rt.Run(t.Context(), runtime.Spec{Name: name + "-" + tag, Image: img.Ref, Network: network, Labels: labels, Env: env})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	byName := start("byname", map[string]string{})
	byFilter := start("byfilter", map[string]string{"berth.test.role": "proxy"})
	stopped := start("stopped", map[string]string{"berth.test.role": "proxy"})
	if err := rt.Stop(t.Context(), stopped.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	restarted := start("restarted", map[string]string{})

	dir := t.TempDir()
	tmpl, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out")
	os.WriteFile(tmpl, []byte(`{{ range $ }}{{ if .Env.BACKEND }}{{ .Name }}
{{ end }}{{ end }}`), 0o644)
	conf := config.Template{Name: "notify", Src: tmpl, Origin: "test",
		Options: dialect.Options{Dialect: dialect.DockerGen},
		Wait:    config.Wait{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		Spec:    render.Spec{Name: "notify", Dest: dest},
		DockerGen: &config.DockerGenExtras{Watch: true, ContainerFilter: map[string][]string{"label": {img.Label}},
			NotifyContainers: map[string]int{byName.Name: 1, restarted.Name: -1},
			// Both labels (ANDed): the role alone would also pick the
			// probes of tests running in parallel on the same engine.
			NotifyContainersFilter: map[string][]string{"label": {"berth.test.role=proxy", img.Label}}, // signal unset: SIGHUP
		}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	g, err := dockergen.New(rt, render.New(render.WithLogger(quiet)), quiet, []config.Template{conf}, dockergen.Filters{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	regenerate := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, regenerate) }()
	defer func() { cancel(); <-done }()

	hups := func(want int) {
		t.Helper()
		for _, c := range []runtime.Container{byName, byFilter} {
			deadline := time.Now().Add(15 * time.Second)
			for dockertest.Hups(t, c.IP) < want && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		}
		time.Sleep(300 * time.Millisecond) // room for a signal too many
		for _, c := range []runtime.Container{byName, byFilter} {
			if got := dockertest.Hups(t, c.IP); got != want {
				t.Fatalf("%s received %d SIGHUPs, want %d", c.Name, got, want)
			}
		}
	}
	contains := func(name string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if b, _ := os.ReadFile(dest); strings.Contains(string(b), name+"\n") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never rendered %s", dest, name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// The first render creates the destination: a change.
	deadline := time.Now().Add(15 * time.Second)
	for _, err := os.Stat(dest); err != nil; _, err = os.Stat(dest) {
		if time.Now().After(deadline) {
			t.Fatal("no first render")
		}
		time.Sleep(10 * time.Millisecond)
	}
	hups(1)
	after, err := rt.Inspect(t.Context(), restarted.ID)
	for deadline := time.Now().Add(20 * time.Second); err == nil && !after.Started.After(restarted.Started); {
		if time.Now().After(deadline) {
			t.Fatalf("%s (signal -1) was not restarted: started %v, before %v", restarted.Name, after.Started, restarted.Started)
		}
		time.Sleep(50 * time.Millisecond)
		after, err = rt.Inspect(t.Context(), restarted.ID)
	}
	if err != nil {
		t.Fatal(err)
	}

	b1 := start("b1", map[string]string{}, "BACKEND=1")
	contains(b1.Name)
	hups(2)

	// Renders that change nothing: a regeneration (docker-gen's SIGHUP) and
	// an event about a container the template leaves out. Then a change:
	// exactly one more signal.
	regenerate <- struct{}{}
	start("other", map[string]string{})
	time.Sleep(300 * time.Millisecond)
	b2 := start("b2", map[string]string{}, "BACKEND=1")
	contains(b2.Name)
	hups(3)
}
