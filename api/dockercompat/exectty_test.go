package dockercompat_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/internal/testenv"
)

// TestExecTTY: exec with a terminal (docker exec -t / -it) through the
// moby client (create with Tty and a console size, attach, resize, raw
// stream, exit code) and the real docker CLI (-t without a terminal of
// its own; -it under a pty the test opens, whose size the CLI follows).
func TestExecTTY(t *testing.T) {
	d := startDaemon(t)
	cli := mobyClient(t, d)
	ctx := context.Background()
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "tty1", Config: &container.Config{
		Image: "busybox:test", Cmd: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
	})

	t.Run("moby", func(t *testing.T) {
		ex, err := cli.ExecCreate(ctx, res.ID, client.ExecCreateOptions{
			Cmd: []string{"sh", "-c", "stty size; read x; stty size; tty; echo got $x; exit 7"},
			TTY: true, AttachStdin: true, AttachStdout: true,
			ConsoleSize: client.ConsoleSize{Height: 20, Width: 70},
		})
		if err != nil {
			t.Fatal(err)
		}
		att, err := cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{TTY: true})
		if err != nil {
			t.Fatal(err)
		}
		defer att.Close()
		out := &testenv.SyncBuffer{}
		copied := make(chan error, 1)
		go func() { _, err := io.Copy(out, att.Reader); copied <- err }()
		waitFor(t, 10*time.Second, "the first stty size (20 70)", func() bool { return strings.Contains(out.String(), "20 70\r\n") })
		if _, err := cli.ExecResize(ctx, ex.ID, client.ExecResizeOptions{Height: 40, Width: 120}); err != nil {
			t.Fatalf("exec resize: %v", err)
		}
		if _, err := att.Conn.Write([]byte("hello\n")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-copied:
			if err != nil {
				t.Errorf("exec stream: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the exec stream did not end within 10s; got %q", out.String())
		}
		// Raw: the terminal's own line endings and echo, no 8-byte frame
		// headers.
		if got := out.String(); !regexp.MustCompile(`^20 70\r\nhello\r\n40 120\r\n/dev/pts/[0-9]+\r\ngot hello\r\n$`).MatchString(got) {
			t.Errorf("exec -it output %q, want the sizes 20 70 then 40 120, the echo, a /dev/pts path and got hello, CRLF, unframed", got)
		}
		var ei client.ExecInspectResult
		waitFor(t, 10*time.Second, "the exec to be inspected as ended", func() bool {
			ei, err = cli.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
			return err == nil && !ei.Running
		})
		if ei.ExitCode != 7 {
			t.Errorf("exec exit code %d, want 7", ei.ExitCode)
		}
		if _, err := cli.ExecResize(ctx, ex.ID, client.ExecResizeOptions{Height: 1, Width: 1}); !cerrdefs.IsConflict(err) {
			t.Errorf("resize of an ended exec: %v, want a conflict", err)
		}
	})

	t.Run("resize errors", func(t *testing.T) {
		ex, err := cli.ExecCreate(ctx, res.ID, client.ExecCreateOptions{Cmd: []string{"true"}, AttachStdout: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.ExecResize(ctx, ex.ID, client.ExecResizeOptions{Height: 10, Width: 10}); !cerrdefs.IsInvalidArgument(err) {
			t.Errorf("resize of an exec without Tty: %v, want invalid argument", err)
		}
		if _, err := cli.ExecResize(ctx, "nosuchexec", client.ExecResizeOptions{Height: 10, Width: 10}); !cerrdefs.IsNotFound(err) {
			t.Errorf("resize of an unknown exec: %v, want not found", err)
		}
		resp, err := d.httpClient().Post("http://d/exec/"+ex.ID+"/resize?h=70000&w=1", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("resize h=70000: status %d, want 400", resp.StatusCode)
		}
	})

	t.Run("cli -t", func(t *testing.T) {
		r := docker(t, d.host, "exec", "-t", "tty1", "tty")
		if r.code != 0 || !regexp.MustCompile(`^/dev/pts/[0-9]+\r\n$`).MatchString(r.stdout) {
			t.Errorf("docker exec -t tty1 tty: exit %d stdout %q stderr %q; want 0 and a /dev/pts path", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("cli -it", func(t *testing.T) {
		master, slave := openPTY(t)
		// The CLI sends its terminal's size with the create request.
		if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 99}); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, "docker", "exec", "-it", "tty1", "sh", "-c", "tty; stty size; read x; stty size; echo got $x; exit 3")
		cmd.Env = dockerEnv(t, d.host)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		slave.Close() // the CLI has its copy
		out := &testenv.SyncBuffer{}
		go func() { _, _ = io.Copy(out, master) }() // ends with EIO when the CLI exits
		waitFor(t, 20*time.Second, "the container's stty size (33 99)", func() bool { return strings.Contains(out.String(), "33 99\r\n") })
		// The CLI follows its terminal's size (SIGWINCH) with exec resize.
		resizes := func() int { return strings.Count(d.log.String(), "/resize ") }
		before := resizes()
		if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 44, Col: 111}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the CLI's exec resize", func() bool { return resizes() > before })
		if _, err := master.Write([]byte("world\r")); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("docker exec -it: %v, want exit status 3; output %q", err, out.String())
		}
		waitFor(t, 5*time.Second, "the rest of the output", func() bool { return strings.Contains(out.String(), "got world") })
		if got := out.String(); !regexp.MustCompile(`^/dev/pts/[0-9]+\r\n33 99\r\nworld\r\n44 111\r\ngot world\r\n`).MatchString(got) {
			t.Errorf("docker exec -it output %q, want a /dev/pts path, 33 99, the echo, 44 111 and got world", got)
		}
	})
}

// openPTY opens a pseudo-terminal pair (/dev/ptmx and its /dev/pts/N),
// closed at cleanup.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}
