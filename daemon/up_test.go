package daemon_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render/dialect"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// listTemplate writes a template listing the services and their instance
// counts, and returns its configuration.
func listTemplate(t *testing.T, dir, name string) (config.Template, string) {
	t.Helper()
	src, dest := filepath.Join(dir, name+".tmpl"), filepath.Join(dir, name+".txt")
	if err := os.WriteFile(src, []byte(`{{range $k, $v := .Services}}{{$k}} {{len $v}}{{"\n"}}{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := config.ParseTemplateFlag(src+":"+dest, dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	return tmpl, dest
}

// TestRunNoRuntime starts the whole daemon in-process, without cobra, as a
// sidecar (runtime none) on a real etcd: it serves /healthz and /metrics,
// renders, re-reads its templates on SIGHUP, and stops cleanly on SIGTERM
// and on the end of its context.
func TestRunNoRuntime(t *testing.T) {
	cluster := testenv.StartEtcd(t, 1)
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	dir := t.TempDir()
	first, firstDest := listTemplate(t, dir, "first")
	second, secondDest := listTemplate(t, dir, "second")
	settings := func(sigs chan os.Signal) daemon.Settings {
		return daemon.Settings{
			Runtime:   daemon.RuntimeNone,
			StateDir:  t.TempDir(),
			StoreURL:  "etcd://" + cluster.Members[0].ClientURL[len("http://"):],
			Listen:    freePort(t),
			Templates: []config.Template{first},
			Reload:    func() ([]config.Template, error) { return []config.Template{first, second}, nil },
			Daemon:    daemon.Config{Logger: quiet},
			Signals:   sigs,
		}
	}
	waitFile := func(path, want string) {
		t.Helper()
		daemon.Eventually(t, path, 15*time.Second, func() bool {
			b, err := os.ReadFile(path)
			return err == nil && string(b) == want
		})
	}

	t.Run("signals", func(t *testing.T) {
		sigs := make(chan os.Signal, 1)
		s := settings(sigs)
		done := make(chan error, 1)
		go func() { done <- daemon.Run(t.Context(), s) }()
		daemon.Eventually(t, "/healthz 200", 15*time.Second, func() bool {
			code, _, err := httpGet("http://" + s.Listen + "/healthz")
			return err == nil && code == http.StatusOK
		})
		if code, body, err := httpGet("http://" + s.Listen + "/metrics"); err != nil || code != http.StatusOK || len(body) == 0 {
			t.Errorf("/metrics: %d %v", code, err)
		}
		waitFile(firstDest, "")
		sigs <- syscall.SIGHUP
		waitFile(secondDest, "")
		sigs <- syscall.SIGTERM
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after SIGTERM: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after SIGTERM")
		}
		if _, _, err := httpGet("http://" + s.Listen + "/healthz"); err == nil {
			t.Error("/healthz still served after the stop")
		}
	})

	t.Run("context", func(t *testing.T) {
		s := settings(nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- daemon.Run(ctx, s) }()
		daemon.Eventually(t, "/healthz 200", 15*time.Second, func() bool {
			code, _, err := httpGet("http://" + s.Listen + "/healthz")
			return err == nil && code == http.StatusOK
		})
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	})

	t.Run("bad settings", func(t *testing.T) {
		for _, s := range []daemon.Settings{
			{Runtime: "podman"},
			{Runtime: daemon.RuntimeNone, Remove: true},
			{Runtime: daemon.RuntimeNone, StateDir: t.TempDir(), StoreURL: settings(nil).StoreURL, Listen: "127.0.0.1:notaport", Daemon: daemon.Config{Logger: quiet}},
		} {
			if err := daemon.Run(t.Context(), s); !errors.Is(err, daemon.ErrSettings) {
				t.Errorf("%+v: %v, want ErrSettings", s, err)
			}
		}
	})
}
