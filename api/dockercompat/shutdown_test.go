package dockercompat_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// TestShutdownCutsStreams: when Serve's context ends, open streams
// (events, wait, logs -f, attach, exec) end and Serve returns at once;
// the containers keep running.
func TestShutdownCutsStreams(t *testing.T) {
	d := startDaemon(t)
	cli := mobyClient(t, d)
	ctx := context.Background()
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "long", Config: &container.Config{
		Image: "busybox:test", Cmd: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.ID
	if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := cli.Events(ctx, client.EventsListOptions{})
	wait := cli.ContainerWait(ctx, id, client.ContainerWaitOptions{})
	logs, err := cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	att, err := cli.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	ex, err := cli.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: []string{"sleep", "100"}, AttachStdout: true})
	if err != nil {
		t.Fatal(err)
	}
	exAtt, err := cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer exAtt.Close()
	time.Sleep(time.Second) // every stream is open on the server (a loaded CI machine needs more than 200ms)

	serveErr, took := d.shutdown()
	if serveErr != nil || took > 5*time.Second {
		t.Fatalf("Serve returned %v after %s with five streams open", serveErr, took)
	}
	ended := func(what string, r io.Reader) {
		t.Helper()
		done := make(chan error, 1)
		go func() { _, err := io.Copy(io.Discard, r); done <- err }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s stream still open 5s after the server stopped", what)
		}
	}
	ended("logs -f", logs)
	ended("attach", att.Reader)
	ended("exec", exAtt.Reader)
	select {
	case err := <-ev.Err:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("events ended with %v, want the stream's end", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("events stream still open 15s after the server stopped")
	}
	select {
	case err := <-wait.Error:
		if err == nil {
			t.Error("wait ended without an error")
		}
	case r := <-wait.Result:
		t.Errorf("wait answered %+v though the container still runs", r)
	case <-time.After(5 * time.Second):
		t.Error("wait still open")
	}
	c, err := d.rt.Inspect(ctx, id)
	if err != nil || !c.Running() {
		t.Errorf("the container after the server stopped: %v %v", c.State, err)
	}
}
