package dockercompat_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/api/dockercompat"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

var fx *embeddedtest.Fixtures

func TestMain(m *testing.M) { embeddedtest.Main(m, &fx) }

// daemon is a dockercompat server on its own socket, backed by a real
// embedded runtime on its own bridge, subnet and state dir.
type daemon struct {
	sock string // socket path
	host string // DOCKER_HOST value
	rt   *embedded.Runtime
	log  *testenv.SyncBuffer
	// shutdown ends Serve's context and returns Serve's error and how
	// long it took to return (the test cleanup calls it too).
	shutdown func() (error, time.Duration)
}

// The embedded runtime is what berth up serves the Docker API for.
var (
	_ runtime.Engine       = (*embedded.Runtime)(nil)
	_ dockercompat.Backend = (*embedded.Runtime)(nil)
)

// startDaemon starts a server and the runtime behind it, with the
// busybox fixture imported as busybox:test. Cleanup stops the server,
// removes every container and checks nothing is left on the host.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	rt := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	if _, err := rt.Images().Import(context.Background(), fx.Busybox, "busybox:test"); err != nil {
		t.Fatalf("import busybox: %v", err)
	}
	// Unix socket paths are short (108 bytes): not under t.TempDir().
	dir, err := os.MkdirTemp("", "bdc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	ln, err := dockercompat.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{sock: sock, host: "unix://" + sock, rt: rt, log: &testenv.SyncBuffer{}}
	srv := dockercompat.NewServer(rt, dockercompat.WithVersion("0.0.0-test"),
		dockercompat.WithLogger(slog.New(slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	var serveErr error
	var took time.Duration
	d.shutdown = func() (error, time.Duration) {
		once.Do(func() {
			t0 := time.Now()
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(10 * time.Second):
				serveErr = errors.New("Serve did not return within 10s of its context ending")
			}
			took = time.Since(t0)
		})
		return serveErr, took
	}
	t.Cleanup(func() {
		if err, _ := d.shutdown(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return d
}

// loadDockerImage copies an image of the real Docker Engine into the
// embedded runtime (docker save, then the image store's Load), so both
// daemons run the same image under the same name.
func loadDockerImage(t *testing.T, d *daemon, ref string) {
	t.Helper()
	tar := filepath.Join(t.TempDir(), "image.tar")
	if out, err := exec.Command("docker", "save", "-o", tar, ref).CombinedOutput(); err != nil {
		t.Fatalf("docker save %s: %v\n%s", ref, err, out)
	}
	if _, err := d.rt.Images().Load(context.Background(), tar); err != nil {
		t.Fatalf("load %s into the embedded runtime: %v", ref, err)
	}
}

// cliResult is one docker CLI invocation.
type cliResult struct {
	args           []string
	code           int
	stdout, stderr string
}

// docker runs the docker CLI against host ("" for the machine's Docker
// Engine) with its own empty config dir.
func docker(t *testing.T, host string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = dockerEnv(t, host)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := cliResult{args: args, stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return res
}

func dockerEnv(t *testing.T, host string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DOCKER_") {
			env = append(env, e)
		}
	}
	env = append(env, "DOCKER_CONFIG="+t.TempDir())
	if host != "" {
		env = append(env, "DOCKER_HOST="+host)
	}
	return env
}

// httpClient talks to the daemon's socket directly.
func (d *daemon) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.sock)
	}}}
}
