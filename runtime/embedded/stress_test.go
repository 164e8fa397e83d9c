package embedded_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

// TestConcurrentOperations races stop, restart, exec, inspect and rm on
// the same containers: every call returns (no deadlock), errors are only
// the expected kinds, and rm leaves nothing behind.
func TestConcurrentOperations(t *testing.T) {
	env := embeddedtest.NewEnv(t)
	r := embeddedtest.NewRuntime(t, env)
	importBusybox(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ids []string
	for range 3 {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: []string{"sleep", "1000"}, Restart: runtime.RestartPolicy{Name: "always"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	expected := func(err error) bool {
		return err == nil || errors.Is(err, runtime.ErrNotFound) || errors.Is(err, runtime.ErrConflict)
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		ops := []func() error{
			func() error { return r.Stop(ctx, id, 0) },
			func() error { return r.Restart(ctx, id, 0) },
			func() error { _, err := r.Exec(ctx, id, embedded.ExecOptions{Cmd: []string{"true"}}); return err },
			func() error { _, err := r.Inspect(ctx, id); return err },
			func() error { return r.Start(ctx, id) },
			func() error { return r.Remove(ctx, id, runtime.Force()) },
		}
		for _, op := range ops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := op(); !expected(err) {
					t.Errorf("container %s: %v", id[:12], err)
				}
			}()
		}
	}
	wg.Wait()
	for _, id := range ids {
		_ = r.Remove(ctx, id, runtime.Force())
		if left := embeddedtest.ContainerLeftovers(env, id); len(left) > 0 {
			t.Errorf("container %s left: %v", id[:12], left)
		}
	}
}
