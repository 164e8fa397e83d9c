package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

func TestLifecycle(t *testing.T) {
	env := embeddedtest.NewEnv(t)
	r := embeddedtest.NewRuntime(t, env)
	importBusybox(t, r)
	ctx := context.Background()
	sleeper := runtime.Spec{Image: "busybox:test", Cmd: []string{"sleep", "1000"}}

	t.Run("stop after grace kills", func(t *testing.T) {
		c, err := r.Run(ctx, sleeper) // sleep as pid 1 ignores SIGTERM
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := r.Stop(ctx, c.ID, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		got, _ := r.Inspect(ctx, c.ID)
		if got.State != runtime.StateExited || got.ExitCode != 137 || time.Since(start) < 300*time.Millisecond {
			t.Errorf("state %s exit %d after %v, want exited 137 after the grace period", got.State, got.ExitCode, time.Since(start))
		}
	})
	t.Run("stop with trap exits cleanly", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: []string{"sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done"}})
		if err != nil {
			t.Fatal(err)
		}
		waitLogs(t, r, c.ID, "ready\n")
		if err := r.Stop(ctx, c.ID, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got, _ := r.Inspect(ctx, c.ID); got.ExitCode != 0 {
			t.Errorf("exit %d, want 0", got.ExitCode)
		}
	})
	t.Run("kill", func(t *testing.T) {
		c, err := r.Run(ctx, sleeper)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Kill(ctx, c.ID, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if got := waitState(t, r, c.ID, runtime.StateExited); got.ExitCode != 137 {
			t.Errorf("exit %d, want 137", got.ExitCode)
		}
	})
	t.Run("rm running needs force", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: []string{"sleep", "1000"}, Memory: 64 << 20,
			Publish: []runtime.Port{{Port: 80, HostIP: "127.0.0.1", HostPort: freePort(t)}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Remove(ctx, c.ID); !errors.Is(err, runtime.ErrConflict) {
			t.Fatalf("rm running: %v, want a conflict", err)
		}
		if err := r.Remove(ctx, c.ID, runtime.Force()); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Inspect(ctx, c.ID); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("inspect after rm: %v, want not found", err)
		}
		if left := embeddedtest.ContainerLeftovers(env, c.ID); len(left) > 0 {
			t.Errorf("left after rm: %v", left)
		}
	})
	t.Run("exec", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Env: []string{"X=y"}, Cmd: []string{"sleep", "1000"}})
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		code, err := r.Exec(ctx, c.ID, embedded.ExecOptions{Cmd: []string{"sh", "-c", "echo $X; cat /proc/1/cmdline; exit 4"}, Stdout: &out})
		if err != nil || code != 4 || out.String() != "y\nsleep\x001000\x00" {
			t.Errorf("exec: code %d err %v out %q", code, err, out.String())
		}
		code, err = r.Exec(ctx, c.ID, embedded.ExecOptions{Cmd: []string{"nope"}})
		if !errors.Is(err, runtime.ErrCommandNotFound) || code != 127 {
			t.Errorf("exec nope: code %d err %v, want 127 and command not found", code, err)
		}
		out.Reset()
		code, err = r.Exec(ctx, c.ID, embedded.ExecOptions{Cmd: []string{"sh", "-c", "tty; read x; echo got $x"},
			Stdin: strings.NewReader("hi\n"), Stdout: &out})
		if err != nil || code != 0 || out.String() != "not a tty\ngot hi\n" {
			t.Errorf("exec with stdin: code %d err %v out %q", code, err, out.String())
		}
		// A terminal of the given size, resized while the command runs;
		// its input echoes and its output ends lines with \r\n.
		var tout testenv.SyncBuffer
		resize := make(chan embedded.TermSize) // unbuffered: a send returns once Exec has it
		stdinR, stdinW := io.Pipe()
		go func() {
			defer stdinW.Close()
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(tout.String(), "30 100") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			// Sent twice: Exec applies a resize before it takes the next,
			// so the second send returns once the first is in effect.
			resize <- embedded.TermSize{Rows: 40, Cols: 120}
			resize <- embedded.TermSize{Rows: 40, Cols: 120}
			_, _ = io.WriteString(stdinW, "hi\n")
		}()
		code, err = r.Exec(ctx, c.ID, embedded.ExecOptions{
			Cmd: []string{"sh", "-c", "tty; stty size; read x; stty size; echo got $x $TERM; exit 5"}, TTY: true,
			Size: embedded.TermSize{Rows: 30, Cols: 100}, Resize: resize, Stdin: stdinR, Stdout: &tout})
		if err != nil || code != 5 {
			t.Errorf("exec -t: code %d err %v, want 5", code, err)
		}
		for _, want := range []string{"/dev/pts/", "30 100\r\n", "hi\r\n", "40 120\r\n", "got hi xterm\r\n"} {
			if !strings.Contains(tout.String(), want) {
				t.Errorf("exec -t output %q lacks %q", tout.String(), want)
			}
		}
	})
}

// TestBadInput: each error is clear and nothing is left half-created.
func TestBadInput(t *testing.T) {
	env := embeddedtest.NewEnv(t)
	r := embeddedtest.NewRuntime(t, env)
	importBusybox(t, r)
	ctx := context.Background()
	if _, err := r.Run(ctx, runtime.Spec{Name: "taken", Image: "busybox:test", Cmd: []string{"sleep", "1000"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec runtime.Spec
		is   error
		msg  string
	}{
		{"unknown image", runtime.Spec{Image: "nope:1", Cmd: []string{"true"}}, runtime.ErrNotFound, `unable to find image "nope:1"`},
		{"bad reference", runtime.Spec{Image: "UPPER/Case::x", Cmd: []string{"true"}}, runtime.ErrInvalid, "bad image reference"},
		{"name in use", runtime.Spec{Name: "taken", Image: "busybox:test", Cmd: []string{"true"}}, runtime.ErrConflict, `name "taken" is already in use`},
		{"invalid memory", runtime.Spec{Image: "busybox:test", Memory: 1024, Cmd: []string{"true"}}, runtime.ErrInvalid, "invalid memory value 1024"},
		{"command not found", runtime.Spec{Image: "busybox:test", Cmd: []string{"nope"}}, runtime.ErrCommandNotFound, `exec: "nope": executable file not found in $PATH`},
		{"unknown user", runtime.Spec{Image: "busybox:test", User: "ghost", Cmd: []string{"true"}}, runtime.ErrInvalid, `user "ghost"`},
		{"no command", runtime.Spec{Image: "busybox:test"}, runtime.ErrInvalid, "no command specified"},
	}
	before := fmt.Sprint(embeddedtest.Leftovers(env))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Run(ctx, tc.spec)
			if after := fmt.Sprint(embeddedtest.Leftovers(env)); after != before {
				t.Errorf("host state changed by the failed run: %s, was %s", after, before)
			}
			if ents, _ := os.ReadDir(filepath.Join(env.StateDir, "containers")); len(ents) != 1 {
				t.Errorf("%d container dirs after the failed run, want 1", len(ents))
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.is, tc.msg)
			}
			cs, _ := r.List(ctx)
			if len(cs) != 1 {
				t.Errorf("%d containers after the failure, want 1", len(cs))
			}
		})
	}
}
