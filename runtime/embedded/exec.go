package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime"
)

// ExecOptions describes a command to run in a running container; with
// TTY the terminal is a pty of the container's devpts.
type ExecOptions = runtime.ExecOptions

// TermSize is a terminal's size in characters.
type TermSize = runtime.TermSize

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
		return 0, runtime.Errorf(runtime.ErrConflict, "container %s is not running", ref)
	}
	return execIn(ctx, rn.lc, rec, opts)
}

func execIn(ctx context.Context, lc *libcontainer.Container, rec record, opts ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return 0, runtime.Errorf(runtime.ErrInvalid, "exec: no command")
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
	var consoleSock *os.File
	if opts.TTY {
		if !slices.ContainsFunc(p.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
			p.Env = append(p.Env, "TERM=xterm")
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, fmt.Errorf("exec: console socket: %w", err)
		}
		consoleSock = os.NewFile(uintptr(fds[0]), "console")
		defer consoleSock.Close()
		child := os.NewFile(uintptr(fds[1]), "console-child")
		defer child.Close()
		p.ConsoleSocket, p.Stdin, p.Stdout, p.Stderr = child, nil, nil, nil
		p.ConsoleWidth, p.ConsoleHeight = opts.Size.Cols, opts.Size.Rows
	}
	if err := lc.Run(p); err != nil {
		if st, serr := lc.Status(); serr != nil || st != libcontainer.Running {
			return 0, runtime.Errorf(runtime.ErrConflict, "exec: the container stopped")
		}
		err = startError(opts.Cmd[0], err)
		if errors.Is(err, runtime.ErrCommandNotFound) {
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
	if consoleSock == nil {
		code, _ := waitProcess(p)
		return code, ctx.Err()
	}
	p.ConsoleSocket.Close() // the init has its copy
	master, err := recvFd(consoleSock)
	if err != nil {
		_ = p.Signal(unix.SIGKILL)
		waitProcess(p)
		return 126, fmt.Errorf("exec: receive the terminal: %w", err)
	}
	return runTTY(ctx, p, master, stdin, stdout, opts.Resize), ctx.Err()
}

// runTTY copies stdin to the terminal and the terminal to stdout, applies
// resizes, and returns the exit code once the command ended and its
// output is read.
func runTTY(ctx context.Context, p *libcontainer.Process, master *os.File, stdin io.Reader, stdout io.Writer, resize <-chan TermSize) int {
	out := make(chan struct{})
	go func() {
		defer close(out)
		_, _ = io.Copy(stdout, master) // ends with EIO once every slave fd is closed
	}()
	go func() { _, _ = io.Copy(master, stdin) }()
	exited := make(chan int, 1)
	go func() {
		code, _ := waitProcess(p)
		exited <- code
	}()
	for {
		select {
		case sz, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Rows, Col: sz.Cols})
		case code := <-exited:
			// Background processes may keep the terminal open: read what
			// is there, then stop (closing the master ends the copy).
			select {
			case <-out:
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			master.Close()
			<-out
			return code
		}
	}
}

// recvFd receives one file descriptor (libcontainer's init sends the
// terminal's master this way) from sock.
func recvFd(sock *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), name, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("got %d control messages, want 1 (the init failed before sending its terminal?)", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, err
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	if len(fds) == 0 {
		return nil, errors.New("no descriptor in the message")
	}
	// Non-blocking, so the runtime's poller serves it and Close ends a
	// pending read.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
