package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

func importWeb(t *testing.T, r *embedded.Runtime) {
	t.Helper()
	if _, err := r.Images().Import(context.Background(), fx.Web, "web:test"); err != nil {
		t.Fatalf("import web: %v", err)
	}
}

func httpGet(t *testing.T, url string) string { t.Helper(); return embeddedtest.HTTPGet(t, url) }

func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestBridgeNetwork(t *testing.T) {
	env := embeddedtest.NewEnv(t)
	r := embeddedtest.NewRuntime(t, env)
	importWeb(t, r)
	ctx := context.Background()
	hostPort := freePort(t)
	a, err := r.Run(ctx, runtime.Spec{Name: "web-a", Image: "web:test", Hostname: "web-a", Cmd: []string{"/srv/web"},
		Publish: []runtime.Port{{Port: 8080, HostIP: "127.0.0.1", HostPort: hostPort}}})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	b, err := r.Run(ctx, runtime.Spec{Name: "web-b", Image: "web:test", Cmd: []string{"/srv/web"}})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if a.IP == "" || a.IP == b.IP || !env.Subnet.Contains(mustAddr(t, a.IP)) {
		t.Fatalf("IPs %q and %q: want two distinct addresses in %s", a.IP, b.IP, env.Subnet)
	}
	t.Run("host to container IP", func(t *testing.T) {
		if got := httpGet(t, fmt.Sprintf("http://%s:8080/", a.IP)); got != "hello from web-a\n" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("published port", func(t *testing.T) {
		if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort)); got != "hello from web-a\n" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("container to container", func(t *testing.T) {
		var out strings.Builder
		code, err := r.Exec(ctx, "web-b", embedded.ExecOptions{
			Cmd:    []string{"sh", "-c", fmt.Sprintf("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 %s 8080", a.IP)},
			Stdout: &out, Stderr: &out,
		})
		if err != nil || code != 0 || !strings.Contains(out.String(), "hello from web-a") {
			t.Errorf("exec: code %d err %v output %q", code, err, out.String())
		}
	})
	t.Run("host port taken", func(t *testing.T) {
		_, err := r.Run(ctx, runtime.Spec{Image: "web:test", Cmd: []string{"/srv/web"},
			Publish: []runtime.Port{{Port: 8080, HostIP: "127.0.0.1", HostPort: hostPort}}})
		if !errors.Is(err, runtime.ErrConflict) || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("err = %v, want a conflict naming the taken address", err)
		}
		cs, _ := r.List(ctx)
		if len(cs) != 2 {
			t.Errorf("%d containers after the failed run, want 2", len(cs))
		}
	})
	t.Run("address kept across restart, released on rm", func(t *testing.T) {
		if err := r.Restart(ctx, "web-b", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		got, _ := r.Inspect(ctx, "web-b")
		if got.IP != b.IP {
			t.Errorf("IP after restart %s, want %s", got.IP, b.IP)
		}
		if err := r.Remove(ctx, "web-b", runtime.Force()); err != nil {
			t.Fatal(err)
		}
		c, err := r.Run(ctx, runtime.Spec{Image: "web:test", Cmd: []string{"/srv/web"}})
		if err != nil {
			t.Fatal(err)
		}
		if c.IP == a.IP {
			t.Errorf("new container got web-a's address %s", c.IP)
		}
	})
}

func TestHostNetwork(t *testing.T) {
	r := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	importWeb(t, r)
	port := freePort(t)
	_, err := r.Run(context.Background(), runtime.Spec{Image: "web:test", Network: runtime.NetworkHost,
		Env: []string{fmt.Sprintf("PORT=%d", port)}, Cmd: []string{"/srv/web"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); !strings.HasPrefix(got, "hello from ") {
		t.Errorf("got %q", got)
	}
}

// TestConcurrentRuns starts containers in parallel: every one gets its
// own address and nothing collides.
func TestConcurrentRuns(t *testing.T) {
	r := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	importBusybox(t, r)
	const n = 8
	ips := make(chan string, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			c, err := r.Run(context.Background(), runtime.Spec{Name: fmt.Sprintf("c%d", i), Image: "busybox:test", Cmd: []string{"sleep", "1000"}})
			if err != nil {
				errs <- err
				return
			}
			ips <- c.IP
		}()
	}
	seen := map[string]bool{}
	for range n {
		select {
		case err := <-errs:
			t.Fatal(err)
		case ip := <-ips:
			if seen[ip] {
				t.Errorf("address %s handed out twice", ip)
			}
			seen[ip] = true
		}
	}
}
