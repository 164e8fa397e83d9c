package embedded_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

// waitState polls until the container reaches want or the deadline.
func waitState(t *testing.T, r *embedded.Runtime, id string, want runtime.State) runtime.Container {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := r.Inspect(context.Background(), id)
		if err != nil {
			t.Fatalf("inspect %s: %v", id, err)
		}
		if c.State == want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: state %s, want %s", c.Name, c.State, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logsOf(t *testing.T, r *embedded.Runtime, id string) string {
	t.Helper()
	var b strings.Builder
	err := r.Logs(context.Background(), id, embedded.LogOptions{}, func(l embedded.LogLine) error {
		b.WriteString(l.Line)
		return nil
	})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	return b.String()
}

func importBusybox(t *testing.T, r *embedded.Runtime) {
	t.Helper()
	if _, err := r.Images().Import(context.Background(), fx.Busybox, "busybox:test"); err != nil {
		t.Fatalf("import: %v", err)
	}
}

func TestRunExitCodeAndLogs(t *testing.T) {
	r := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	importBusybox(t, r)
	ctx := context.Background()
	tests := []struct {
		name string
		cmd  []string
		code int
		logs string
	}{
		{"echo", []string{"sh", "-c", "echo hello; echo oops >&2"}, 0, "hello\noops\n"},
		{"exit3", []string{"sh", "-c", "exit 3"}, 3, ""},
		{"pid1", []string{"sh", "-c", "echo $$"}, 0, "1\n"},
		{"stdin is empty", []string{"sh", "-c", "cat; echo done"}, 0, "done\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: tc.cmd})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			got := waitState(t, r, c.ID, runtime.StateExited)
			if got.ExitCode != tc.code {
				t.Errorf("exit code %d, want %d", got.ExitCode, tc.code)
			}
			if l := logsOf(t, r, c.ID); l != tc.logs {
				t.Errorf("logs %q, want %q", l, tc.logs)
			}
			if err := r.Remove(ctx, c.ID); err != nil {
				t.Fatalf("rm: %v", err)
			}
		})
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return a
}

// waitLogs polls until the container's output contains want.
func waitLogs(t *testing.T, r *embedded.Runtime, id, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logsOf(t, r, id), want) {
		if time.Now().After(deadline) {
			t.Fatalf("container %s never printed %q; output %q", id[:12], want, logsOf(t, r, id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
