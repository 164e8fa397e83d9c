package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/api/dockercompat"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

// compatTemplate reads what nginx-proxy's template reads: the env, the
// legacy .IP, .Addresses (exposed ports) and .Networks.
const compatTemplate = `# {{ len $ }} container(s), API {{ $.Docker.ApiVersion }}
{{ range $host, $containers := groupByMulti $ "Env.VIRTUAL_HOST" "," }}
upstream {{ $host }} {
{{- range $c := $containers }}
{{- $addr := first $c.Addresses }}
{{- $net := first $c.Networks }}
    server {{ $c.IP }}:{{ $addr.Port }}; # {{ $c.Name }} on {{ $net.Name }} {{ $net.IP }}
{{- end }}
}
{{ end }}`

// TestDockerGenOnDockerCompat runs berth docker-gen -endpoint
// unix://<sock> -watch against the Docker-compatible API of an embedded
// runtime: it renders the runtime's containers and re-renders on start
// and stop.
func TestDockerGenOnDockerCompat(t *testing.T) {
	rt := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := embeddedtest.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Images().Import(t.Context(), rootfs, "busybox:test"); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "bdg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "docker.sock")
	ln, err := dockercompat.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- dockercompat.NewServer(rt).Serve(sctx, ln) }()
	t.Cleanup(func() {
		scancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	start := func(name, vhost string) runtime.Container {
		t.Helper()
		c, err := rt.Create(t.Context(), runtime.Spec{Name: name, Image: "busybox:test", Env: []string{"VIRTUAL_HOST=" + vhost},
			Cmd: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}},
			runtime.Port{Port: 80, Proto: "tcp"})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(t.Context(), c.ID); err != nil {
			t.Fatal(err)
		}
		c, err = rt.Inspect(t.Context(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dir := t.TempDir()
	tmpl, dest := filepath.Join(dir, "nginx.tmpl"), filepath.Join(dir, "default.conf")
	if err := os.WriteFile(tmpl, []byte(compatTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	a := start("a1", "a.localhost")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"docker-gen", "-endpoint", "unix://" + sock, "-watch", "-wait", "50ms:200ms",
			"-only-exposed", tmpl, dest}, strings.NewReader(""), &out, &errb)
	}()
	contains := func(want ...string) string {
		t.Helper()
		return waitFileContains(t, dest, &errb, want...)
	}
	contains("# 1 container(s), API 1.51", "upstream a.localhost {\n    server "+a.IP+":80; # a1 on bridge "+a.IP)

	b := start("b1", "a.localhost,b.localhost")
	got := contains("# 2 container(s)", "server "+b.IP+":80; # b1", "upstream b.localhost")
	if strings.Count(got, "# b1") != 2 {
		t.Fatalf("b1 is not under both of its hosts:\n%s", got)
	}
	if err := rt.Stop(t.Context(), a.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	got = contains("# 1 container(s)")
	if strings.Contains(got, "a1") {
		t.Fatalf("stopped container still rendered:\n%s", got)
	}
	if err := rt.Start(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	t.Logf("after a1 started again:\n%s", contains("# 2 container(s)", "# a1"))
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("docker-gen exited %d: %s", code, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("docker-gen did not end within 15s of its context")
	}
}
