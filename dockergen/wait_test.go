package dockergen_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// TestWaitIgnoresEventsThatChangeNoData: with -wait 1s:10s, Docker
// events that change nothing the template sees, arriving from the moment
// a container it shows started (signals sent to a container it shows,
// every min/4; other containers that its filter leaves out being created,
// connected and started), do not hold the render back: the new container
// is in the file well before max after its start returned. (Were the
// quiet window re-armed by each event, the render would come at max.)
func TestWaitIgnoresEventsThatChangeNoData(t *testing.T) {
	img := dockertest.BuildImage(t)
	network := testenv.DockerNetwork(t, img)
	rt := dockertest.Engine(t)
	tag := img.Tag()
	k, v, _ := strings.Cut(img.Label, "=")
	run := func(ctx context.Context, name string, shown bool) (runtime.Container, error) {
		labels := map[string]string{k: v}
		if shown {
			labels["berth.test.shown"] = "1"
		}
		return rt.Run(ctx, runtime.Spec{Name: name + "-" + tag, Image: img.Ref, Network: network, Labels: labels})
	}
	wait := config.Wait{Min: time.Second, Max: 10 * time.Second}
	dir := t.TempDir()
	tmpl, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out")
	os.WriteFile(tmpl, []byte("{{ range $ }}{{ .Name }}\n{{ end }}"), 0o644)
	conf := config.Template{Name: "wait", Src: tmpl, Origin: "test", Wait: wait,
		Options: dialect.Options{Dialect: dialect.DockerGen},
		Spec:    render.Spec{Name: "wait", Dest: dest},
		DockerGen: &config.DockerGenExtras{Watch: true,
			ContainerFilter: map[string][]string{"label": {img.Label, "berth.test.shown=1"}}}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	g, err := dockergen.New(rt, render.New(render.WithLogger(quiet)), quiet, []config.Template{conf}, dockergen.Filters{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	first, err := run(t.Context(), "first", true)
	if err != nil {
		t.Fatal(err)
	}
	waitRendered := func(name string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			if b, _ := os.ReadFile(dest); strings.Contains(string(b), name+"\n") {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("%s never rendered %s", dest, name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitRendered(first.Name, 30*time.Second)

	target, err := run(t.Context(), "target", true)
	if err != nil {
		t.Fatal(err)
	}
	noise, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { // a kill event for a container the template shows, every min/4
		tk := time.NewTicker(wait.Min / 4)
		defer tk.Stop()
		for {
			rt.Signal(noise, first.ID, "SIGHUP")
			select {
			case <-tk.C:
			case <-noise.Done():
				return
			}
		}
	})
	wg.Go(func() { // create, connect and start events of containers the filter leaves out
		for i := 0; noise.Err() == nil; i++ {
			if _, err := run(noise, "noise"+strconv.Itoa(i), false); err != nil && noise.Err() == nil {
				t.Errorf("noise container: %v", err)
			}
		}
	})
	took := waitRendered(target.Name, wait.Max+30*time.Second)
	stop()
	wg.Wait()
	if took >= wait.Max/2 {
		t.Fatalf("%s rendered %v after its start returned, with wait %v: events that changed no data held the quiet window", target.Name, took, wait)
	}
	t.Logf("rendered %v after the start returned (wait %v), with events that change no data meanwhile", took.Round(time.Millisecond), wait)
}
