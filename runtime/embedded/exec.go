package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime"
)

// ExecOptions describes a command to run in a running container.
type ExecOptions struct {
	Cmd    []string
	Env    []string // added to the container's
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Exec runs a command inside a running container (its namespaces,
// cgroup, capabilities and seccomp profile) and returns its exit code.
// When ctx ends the command is killed.
func (r *Runtime) Exec(ctx context.Context, ref string, opts ExecOptions) (int, error) {
	c, err := r.lookup(ref)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	rn, rec := c.run, c.rec
	r.mu.Unlock()
	if rn == nil {
		return 0, fmt.Errorf("container %s is not running: %w", ref, runtime.ErrConflict)
	}
	return execIn(ctx, rn.lc, rec, opts)
}

func execIn(ctx context.Context, lc *libcontainer.Container, rec record, opts ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return 0, fmt.Errorf("exec: no command: %w", runtime.ErrInvalid)
	}
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	stdin := opts.Stdin
	if stdin == nil {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			return 0, err
		}
		defer devnull.Close()
		stdin = devnull
	}
	p := &libcontainer.Process{
		Args: opts.Cmd, Env: mergeEnv(rec.C.Env, opts.Env), Cwd: rec.C.WorkingDir,
		UID: int(rec.UID), GID: int(rec.GID),
		Stdin: stdin, Stdout: stdout, Stderr: stderr,
	}
	if err := lc.Run(p); err != nil {
		if st, serr := lc.Status(); serr != nil || st != libcontainer.Running {
			return 0, fmt.Errorf("exec: the container stopped: %w", runtime.ErrConflict)
		}
		err = startError(opts.Cmd[0], err)
		if errors.Is(err, ErrCommandNotFound) {
			return 127, err
		}
		return 126, err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Signal(unix.SIGKILL)
		case <-done:
		}
	}()
	code, _ := waitProcess(p)
	return code, ctx.Err()
}
