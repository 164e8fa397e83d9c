package dockergen_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dockergen"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
)

// BenchmarkRunToFile measures, with -containers containers running, the
// time from a container's start returning to the rendered file naming it,
// and the Docker API calls berth makes per event (docker-gen makes 3 + N:
// info, list, networks, and one inspect per container).
//
//	go test ./dockergen -run '^$' -bench RunToFile -benchtime 20x
func BenchmarkRunToFile(b *testing.B) {
	const running = 200
	img := testenv.BuildDockerImage(b)
	network := testenv.DockerNetwork(b, img)
	rt, err := docker.New(b.Context(), docker.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	k, v, _ := strings.Cut(img.Label, "=")
	tag := img.Tag()
	spec := func(name string) runtime.Spec {
		return runtime.Spec{Name: name + "-" + tag, Image: img.Ref, Network: network,
			Labels: map[string]string{k: v}, Env: []string{"VIRTUAL_HOST=" + name + ".localhost"}}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range running {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := rt.Run(b.Context(), spec("bg"+strconv.Itoa(i))); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()

	dir := b.TempDir()
	tmpl, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out")
	os.WriteFile(tmpl, []byte(`{{ range $ }}{{ .Name }} {{ .IP }}
{{ end }}`), 0o644)
	conf := config.Template{Name: "bench", Src: tmpl, Origin: "bench",
		Options:   dialect.Options{Dialect: dialect.DockerGen},
		Spec:      render.Spec{Name: "bench", Dest: dest},
		DockerGen: &config.DockerGenExtras{Watch: true, ContainerFilter: map[string][]string{"label": {img.Label}}}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	g, err := dockergen.New(rt, render.New(render.WithLogger(quiet)), quiet, []config.Template{conf}, dockergen.Filters{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	waitFor(b, dest, "bg0-"+tag)

	starter, err := docker.New(b.Context(), docker.Config{}) // a separate client: its calls are not berth's
	if err != nil {
		b.Fatal(err)
	}
	defer starter.Close()
	var total time.Duration
	calls := rt.APICalls()
	b.ResetTimer()
	for i := range b.N {
		c, err := starter.Run(b.Context(), spec("new"+strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		waitFor(b, dest, c.Name)
		total += time.Since(start)
	}
	b.StopTimer()
	time.Sleep(time.Second) // let trailing events (network connect) be handled
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/run-to-file")
	b.ReportMetric(float64(rt.APICalls()-calls)/float64(b.N), "api-calls/container-start")
}

func waitFor(b *testing.B, path, name string) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if data, _ := os.ReadFile(path); strings.Contains(string(data), name+" ") {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never rendered %s", path, name)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkWaitStartToFile is issue #22's measurement: with -wait
// 500ms:2s, containers started one at a time, each 300 ms after the
// previous one reached the file; it reports p50/p90 from a start returning
// to the file naming it, and renders (notify runs) per start. The target:
// p50 within min + 100 ms, one render per start.
//
//	go test ./dockergen -run '^$' -bench WaitStartToFile -benchtime 50x
func BenchmarkWaitStartToFile(b *testing.B) {
	img := testenv.BuildDockerImage(b)
	network := testenv.DockerNetwork(b, img)
	rt, err := docker.New(b.Context(), docker.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	k, v, _ := strings.Cut(img.Label, "=")
	tag := img.Tag()
	dir := b.TempDir()
	tmpl, dest, notified := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out"), filepath.Join(dir, "notified")
	os.WriteFile(tmpl, []byte(`{{ range $ }}{{ .Name }} {{ .IP }}
{{ end }}`), 0o644)
	conf := config.Template{Name: "bench", Src: tmpl, Origin: "bench",
		Options:   dialect.Options{Dialect: dialect.DockerGen},
		Wait:      config.Wait{Min: 500 * time.Millisecond, Max: 2 * time.Second},
		Spec:      render.Spec{Name: "bench", Dest: dest, Reload: "echo >> " + notified},
		DockerGen: &config.DockerGenExtras{Watch: true, ContainerFilter: map[string][]string{"label": {img.Label}}}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	g, err := dockergen.New(rt, render.New(render.WithLogger(quiet)), quiet, []config.Template{conf}, dockergen.Filters{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	starter, err := docker.New(b.Context(), docker.Config{}) // a separate client: its calls are not berth's
	if err != nil {
		b.Fatal(err)
	}
	defer starter.Close()
	renders := func() int { n, _ := os.ReadFile(notified); return strings.Count(string(n), "\n") }
	for deadline := time.Now().Add(30 * time.Second); renders() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("no first render")
		}
	}
	before := renders()
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		c, err := starter.Run(b.Context(), runtime.Spec{Name: "w" + strconv.Itoa(i) + "-" + tag, Image: img.Ref, Network: network,
			Labels: map[string]string{k: v}})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		waitFor(b, dest, c.Name)
		lat = append(lat, time.Since(start))
		time.Sleep(300 * time.Millisecond)
	}
	b.StopTimer()
	time.Sleep(2 * time.Second) // a render still due at max is counted
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*9+9)/10-1].Milliseconds()), "p90-ms")
	b.ReportMetric(float64(renders()-before)/float64(b.N), "renders/start")
}
