package api_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

var fx *embeddedtest.Fixtures

func TestMain(m *testing.M) { embeddedtest.Main(m, &fx) }

// serve starts a daemon API for a fresh runtime and returns its client.
func serve(t *testing.T) *api.Client {
	t.Helper()
	r := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	sock := filepath.Join(t.TempDir(), "berth.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v %v, want 0660", fi.Mode(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(r).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	c := api.NewClient(sock)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestContainerAPI(t *testing.T) {
	c := serve(t)
	ctx := context.Background()
	if _, err := c.Import(ctx, fx.Busybox, "busybox:test"); err != nil {
		t.Fatal(err)
	}
	imgs, err := c.Images(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].RepoTags[0] != "busybox:test" {
		t.Fatalf("images: %v %v", imgs, err)
	}
	evctx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	events, _ := c.Events(evctx)

	ctr, err := c.Run(ctx, runtime.Spec{Name: "one", Image: "busybox:test", Labels: map[string]string{"app": "a"},
		Cmd: []string{"sh", "-c", "echo started; sleep 1000"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, runtime.Spec{Name: "two", Image: "busybox:test", Labels: map[string]string{"app": "b"}, Cmd: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts api.ListOptions
		want int
	}{
		{"all", api.ListOptions{All: true}, 2},
		{"label app=a", api.ListOptions{All: true, Labels: []string{"app=a"}}, 1},
		{"label app", api.ListOptions{All: true, Labels: []string{"app"}}, 2},
		{"label app=c", api.ListOptions{All: true, Labels: []string{"app=c"}}, 0},
	}
	for _, tc := range tests {
		if cs, err := c.ListFiltered(ctx, tc.opts); err != nil || len(cs) != tc.want {
			t.Errorf("%s: %d containers (%v), want %d", tc.name, len(cs), err, tc.want)
		}
	}
	var out, errOut strings.Builder
	code, err := c.Exec(ctx, "one", api.ExecRequest{Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 5"}}, api.ExecIO{Stdout: &out, Stderr: &errOut})
	if err != nil || code != 5 || out.String() != "out\n" || errOut.String() != "err\n" {
		t.Errorf("exec: %d %v %q %q", code, err, out.String(), errOut.String())
	}
	if _, err := c.Exec(ctx, "one", api.ExecRequest{Cmd: []string{"nope"}}, api.ExecIO{Stdout: &out, Stderr: &errOut}); !errors.Is(err, runtime.ErrCommandNotFound) {
		t.Errorf("exec nope: %v", err)
	}
	execIOTests(ctx, t, c)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var logs strings.Builder
		if err := c.Logs(ctx, ctr.ID, runtime.LogOptions{}, func(l runtime.LogLine) error { logs.WriteString(l.Line); return nil }); err != nil {
			t.Fatal(err)
		}
		if logs.String() == "started\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs %q", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.Stop(ctx, "one", 0); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Inspect(ctx, "one"); err != nil || got.State != runtime.StateExited || got.ExitCode != 137 {
		t.Errorf("after stop: %+v %v", got.State, err)
	}
	if err := c.Remove(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inspect(ctx, "one"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("inspect removed: %v", err)
	}
	if _, err := c.Run(ctx, runtime.Spec{Name: "two", Image: "busybox:test", Cmd: []string{"true"}}); !errors.Is(err, runtime.ErrConflict) {
		t.Errorf("name in use: %v", err)
	}
	var seen []string
	timeout := time.After(10 * time.Second)
	for len(seen) < 6 {
		select {
		case ev := <-events:
			if ev.Container.Name == "one" {
				seen = append(seen, string(ev.Type))
			}
		case <-timeout:
			t.Fatalf("events for one: %v", seen)
		}
	}
	if strings.Join(seen, ",") != "create,start,kill,die,stop,destroy" {
		t.Errorf("events %v", seen)
	}
}

func TestLogsFollow(t *testing.T) {
	c := serve(t)
	ctx := context.Background()
	if _, err := c.Import(ctx, fx.Busybox, "busybox:test"); err != nil {
		t.Fatal(err)
	}
	ctr, err := c.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: []string{"sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.2; done; echo bye >&2"}})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	done := make(chan error, 1)
	go func() {
		done <- c.Logs(ctx, ctr.ID, runtime.LogOptions{Follow: true}, func(l runtime.LogLine) error {
			if l.Time.IsZero() {
				t.Errorf("line %q without a timestamp", l.Line)
			}
			lines = append(lines, l.Stream+":"+l.Line)
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("logs -f did not end when the container exited")
	}
	if got := strings.Join(lines, ""); got != "stdout:line 1\nstdout:line 2\nstdout:line 3\nstderr:bye\n" {
		t.Errorf("followed %q", got)
	}
	var tail []string
	if err := c.Logs(ctx, ctr.ID, runtime.LogOptions{Tail: 2}, func(l runtime.LogLine) error { tail = append(tail, l.Line); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(tail, "") != "line 3\nbye\n" {
		t.Errorf("tail 2: %q", tail)
	}
}

// execIOTests: exec with stdin streamed in (binary data intact, and the
// command sees its end), and with a terminal that is resized while the
// command waits for input.
func execIOTests(ctx context.Context, t *testing.T, c *api.Client) {
	t.Helper()
	data := strings.Repeat("\x00\xff binary \xe2\x82", 10000)
	var out strings.Builder
	code, err := c.Exec(ctx, "one", api.ExecRequest{Cmd: []string{"sh", "-c", "cat; echo end"}, Stdin: true},
		api.ExecIO{Stdin: strings.NewReader(data), Stdout: &out})
	if err != nil || code != 0 || out.String() != data+"end\n" {
		t.Errorf("exec -i: code %d err %v, %d bytes out, want %d", code, err, out.Len(), len(data)+4)
	}

	resize := make(chan runtime.TermSize, 1)
	stdinR, stdinW := io.Pipe()
	var tout testenv.SyncBuffer
	go func() {
		defer stdinW.Close()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(tout.String(), "24 80") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		resize <- runtime.TermSize{Rows: 50, Cols: 132}
		time.Sleep(200 * time.Millisecond) // the resize and the input travel apart
		_, _ = io.WriteString(stdinW, "go\n")
	}()
	code, err = c.Exec(ctx, "one", api.ExecRequest{Cmd: []string{"sh", "-c", "stty size; read x; stty size; exit 3"},
		Stdin: true, TTY: true, Size: runtime.TermSize{Rows: 24, Cols: 80}},
		api.ExecIO{Stdin: stdinR, Stdout: &tout, Resize: resize})
	if err != nil || code != 3 || !strings.Contains(tout.String(), "24 80\r\n") || !strings.Contains(tout.String(), "50 132\r\n") {
		t.Errorf("exec -it: code %d err %v out %q", code, err, tout.String())
	}
}
