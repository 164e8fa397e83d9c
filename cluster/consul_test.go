package cluster_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
	"github.com/berthd/berth/store/backend"
)

// TestConsulAgentCluster: the many-hosts scenario on an existing Consul
// cluster, not dev mode: a server and two client agents, one per host.
// Each host's registrar and runner use only its own agent. A container
// (real Docker Engine) is registered by both hosts, and both hosts'
// templates converge on both hosts' records; when host 1's agent is
// killed (kill -9), its records leave host 0's output (the server fails
// its node and drops its session), and host 0's stay.
func TestConsulAgentCluster(t *testing.T) {
	cc := testenv.StartConsulCluster(t, 2)
	img := testenv.BuildDockerImage(t)
	net := testenv.DockerNetwork(t, img)
	rt, err := docker.New(t.Context(), docker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	tag := img.Tag()
	prefix := "/consul-" + tag
	service := "svc-" + tag
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	text := `{{ range (index .Services "` + service + `") }}{{ .Host }}
{{ end }}`
	var outs []string
	for i, agent := range cc.Clients {
		host := []string{"a", "b"}[i] + tag
		st, err := backend.Open(t.Context(), "consul://"+agent.Addr, backend.WithLogger(log))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		reg, err := registrar.New(st, rt, registrar.Config{Host: host, Prefix: prefix, TTL: 10 * time.Second, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		src := filepath.Join(dir, "hosts.tmpl")
		if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		tmpl := config.Template{
			Name: "hosts", Src: src, Origin: "test",
			Options:  dialect.Options{Dialect: dialect.Native, Prefix: prefix},
			Prefixes: []string{prefix + "/services/"},
			Spec:     render.Spec{Name: "hosts", Dest: filepath.Join(dir, "hosts"), AllowEmpty: true},
		}
		outs = append(outs, tmpl.Spec.Dest)
		r := runner.New(st, render.New(render.WithLogger(log)), runner.WithLogger(log))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{}, 2)
		go func() { reg.Run(ctx); done <- struct{}{} }()
		go func() { r.Run(ctx, []config.Template{tmpl}); done <- struct{}{} }()
		t.Cleanup(func() { cancel(); <-done; <-done })
	}
	k, v, _ := strings.Cut(img.Label, "=")
	if _, err := rt.Run(t.Context(), runtime.Spec{Name: "web-" + tag, Image: img.Ref, Network: net,
		Labels: map[string]string{k: v, "berth.service": service}}); err != nil {
		t.Fatal(err)
	}
	both := "a" + tag + "\nb" + tag + "\n"
	wait := func(what, path, want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			got, _ := os.ReadFile(path)
			if string(got) == want {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("%s: %s = %q, want %q", what, path, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i, out := range outs {
		wait("both hosts' records on host "+string(rune('0'+i)), out, both, 60*time.Second)
	}
	cc.Clients[1].Kill()
	took := wait("host 1's records gone after its agent died", outs[0], "a"+tag+"\n", 90*time.Second)
	t.Logf("host 1's records left host 0's output %s after its agent was killed (ttl 10s)", took.Round(100*time.Millisecond))
}
