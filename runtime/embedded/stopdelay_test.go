package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

// TestStopDelay: with WithStopDelay, a stop announces itself (the kill
// event, on which the registrar drains the container) and sends the stop
// signal only after the delay: the process serves until then.
func TestStopDelay(t *testing.T) {
	const delay = 600 * time.Millisecond
	env := embeddedtest.NewEnv(t)
	r := embeddedtest.NewRuntime(t, env.With(embedded.WithStopDelay(delay))) // removes its container and bridge at the end
	importBusybox(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: []string{"sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.05; done"}})
	if err != nil {
		t.Fatal(err)
	}
	waitLogs(t, r, c.ID, "ready\n")
	events, _ := r.Events(ctx)
	start := time.Now()
	if err := r.Stop(ctx, c.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	var kill, stop time.Time // as the events say
	for kill.IsZero() || stop.IsZero() {
		select {
		case ev := <-events:
			if ev.Container.ID != c.ID {
				continue
			}
			switch ev.Type {
			case runtime.EventKill:
				kill = ev.Time
			case runtime.EventDie, runtime.EventStop:
				if stop.IsZero() {
					stop = ev.Time
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("events: kill after %v, stop after %v", kill, stop)
		}
	}
	if stop.Sub(kill) < delay {
		t.Errorf("the process stopped %v after the kill event, before the delay %v", stop.Sub(kill), delay)
	}
	if took < delay {
		t.Errorf("stop took %v, want at least the delay %v", took, delay)
	}
	if got, _ := r.Inspect(ctx, c.ID); got.ExitCode != 0 {
		t.Errorf("exit %d, want 0 (its TERM trap)", got.ExitCode)
	}
	t.Logf("stop took %v", took)
}
