package embedded_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

// waitGone waits until the container is removed, then checks that nothing
// of it is left on the host.
func waitGone(t *testing.T, env embeddedtest.Env, r *embedded.Runtime, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := r.Inspect(context.Background(), id)
		if errors.Is(err, runtime.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still there (%s, err %v), want it auto-removed", id[:12], c.State, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if left := embeddedtest.ContainerLeftovers(env, id); len(left) > 0 {
		t.Errorf("left after the auto-remove: %v", left)
	}
}

// TestAutoRemove: a container with Spec.AutoRemove (docker run --rm) is
// removed when its process exits, by itself or stopped or killed, once
// the readers of its output have read it; a restart keeps it; it
// conflicts with a restart policy; one that exited while no runtime
// watched is removed when the next one starts.
func TestAutoRemove(t *testing.T) {
	env := embeddedtest.NewEnv(t)
	embeddedtest.CleanupEnv(t, env)
	ctx := context.Background()
	r, err := embedded.New(ctx, env.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	importBusybox(t, r)
	loop := []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}

	t.Run("exits by itself, output read to the end", func(t *testing.T) {
		// As docker run --rm: create, hold (attach), start, read.
		c, err := r.Create(ctx, runtime.Spec{Image: "busybox:test", AutoRemove: true, Cmd: []string{"sh", "-c", "echo one; echo two; exit 3"}})
		if err != nil {
			t.Fatal(err)
		}
		release, err := r.HoldRemoval(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		got := waitState(t, r, c.ID, runtime.StateExited)
		if got.ExitCode != 3 {
			t.Errorf("exit %d, want 3", got.ExitCode)
		}
		time.Sleep(200 * time.Millisecond) // held: still there
		var out strings.Builder
		if err := r.Logs(ctx, c.ID, runtime.LogOptions{Follow: true}, func(l runtime.LogLine) error { out.WriteString(l.Line); return nil }); err != nil {
			t.Fatalf("logs of a held container: %v", err)
		}
		if out.String() != "one\ntwo\n" {
			t.Errorf("output %q", out.String())
		}
		release()
		waitGone(t, env, r, c.ID)
	})
	t.Run("stopped", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", AutoRemove: true, Cmd: loop})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Stop(ctx, c.ID, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		waitGone(t, env, r, c.ID)
	})
	t.Run("killed", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", AutoRemove: true, Cmd: []string{"sleep", "1000"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Kill(ctx, c.ID, 9); err != nil {
			t.Fatal(err)
		}
		waitGone(t, env, r, c.ID)
	})
	t.Run("restarted stays", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", AutoRemove: true, Cmd: loop})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Restart(ctx, c.ID, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if got, err := r.Inspect(ctx, c.ID); err != nil || !got.Running() {
			t.Fatalf("after restart: %s %v, want running", got.State, err)
		}
		if err := r.Stop(ctx, c.ID, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		waitGone(t, env, r, c.ID)
	})
	t.Run("not with a restart policy", func(t *testing.T) {
		_, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", AutoRemove: true, Restart: runtime.RestartPolicy{Name: "always"}, Cmd: loop})
		if !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), "conflicts with restart policy") {
			t.Fatalf("AutoRemove with restart always: %v, want invalid", err)
		}
	})
	t.Run("exited while no runtime watched", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", AutoRemove: true, Cmd: []string{"sh", "-c", "sleep 0.5"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		r, err = embedded.New(ctx, env.Options()...)
		if err != nil {
			t.Fatal(err)
		}
		waitGone(t, env, r, c.ID)
	})
}
