package runtimetest_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
	"github.com/berthd/berth/runtime/runtimetest"
)

// step is one action of the scenario, on the runtime under test.
type step struct {
	name string
	do   func(t *testing.T, r runtime.Runtime, ids map[string]string, seen func(name string, typ runtime.EventType))
}

// scenario: a stop the process obeys, a stop it ignores (killed after the
// grace period), a forced remove of a running container, plain removes.
// prefix makes the names unique on the shared engine.
func scenario(prefix string, spec func(name string, env ...string) runtime.Spec, script func(t *testing.T, r runtime.Runtime, c runtime.Container, b runtimetest.Behavior)) []step {
	run := func(name string, b runtimetest.Behavior, env ...string) step {
		return step{"run " + name, func(t *testing.T, r runtime.Runtime, ids map[string]string, seen func(string, runtime.EventType)) {
			c, err := r.Run(t.Context(), spec(prefix+name, env...))
			if err != nil {
				t.Fatal(err)
			}
			ids[name] = c.ID
			script(t, r, c, b)
			// Docker's runtime inspects when it reads the event: wait, so
			// the start snapshot is not of a container already stopping.
			seen(name, runtime.EventStart)
		}}
	}
	stop := func(name string, grace time.Duration) step {
		return step{"stop " + name, func(t *testing.T, r runtime.Runtime, ids map[string]string, _ func(string, runtime.EventType)) {
			if err := r.Stop(t.Context(), ids[name], grace); err != nil {
				t.Fatal(err)
			}
		}}
	}
	remove := func(name string, opts ...runtime.RemoveOption) step {
		return step{"remove " + name, func(t *testing.T, r runtime.Runtime, ids map[string]string, _ func(string, runtime.EventType)) {
			if err := r.Remove(t.Context(), ids[name], opts...); err != nil {
				t.Fatal(err)
			}
		}}
	}
	return []step{
		// whoami is a Go program: as PID 1 with no SIGTERM handler it exits 2.
		run("obeys", runtimetest.Behavior{CleanTerm: true}),
		stop("obeys", 10*time.Second),
		// WHOAMI_LINGER catches SIGTERM and keeps running.
		run("ignores", runtimetest.Behavior{IgnoreStop: true}, "WHOAMI_LINGER=1h"),
		stop("ignores", time.Second),
		run("forced", runtimetest.Behavior{TermExit: 2}),
		remove("forced", runtime.Force()),
		remove("obeys"),
		remove("ignores"),
	}
}

// summary is the part of an event the double must reproduce: what
// happened, and the state the container was left in.
func summary(ev runtime.Event, prefix string) string {
	s := fmt.Sprintf("%s %s", strings.TrimPrefix(ev.Container.Name, prefix), ev.Type)
	switch ev.Type {
	case runtime.EventKill:
		s += " " + ev.Signal
	case runtime.EventDie:
		s += fmt.Sprintf(" exit=%d", ev.Container.ExitCode)
	case runtime.EventStart:
		s += fmt.Sprintf(" running=%v ip=%v", ev.Container.Running(), ev.Container.IP != "")
	case runtime.EventStop, runtime.EventDestroy:
		s += fmt.Sprintf(" state=%s exit=%d", ev.Container.State, ev.Container.ExitCode)
	}
	return s
}

// record runs steps on r and returns the summaries of the events of the
// containers named with prefix, once the last one is destroyed.
func record(t *testing.T, r runtime.Runtime, prefix string, steps []step) []string {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, errc := r.Events(ctx)
	var (
		mu   sync.Mutex
		got  []string
		seen = map[string]bool{} // name and type
		done = make(chan struct{})
	)
	destroys := 0
	go func() {
		defer close(done)
		for ev := range ch {
			if !strings.HasPrefix(ev.Container.Name, prefix) {
				continue // another test's container on the shared engine
			}
			mu.Lock()
			got = append(got, summary(ev, prefix))
			seen[strings.TrimPrefix(ev.Container.Name, prefix)+" "+string(ev.Type)] = true
			if ev.Type == runtime.EventDestroy {
				destroys++
			}
			n := destroys
			mu.Unlock()
			if n == 3 {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // let a real event stream connect
	waitSeen := func(name string, typ runtime.EventType) {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			ok := seen[name+" "+string(typ)]
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s event for %s within 30s", typ, name)
			}
		}
	}
	ids := map[string]string{}
	for _, s := range steps {
		s.do(t, r, ids, waitSeen)
	}
	select {
	case <-done:
	case err := <-errc:
		t.Fatalf("event stream ended: %v", err)
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("not every container destroyed within 30s; events: %q", got)
	}
	return got
}

// TestDoubleMatchesDocker runs one scenario against the double and
// against the real Docker Engine and requires the same event sequence.
func TestDoubleMatchesDocker(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	network := testenv.DockerNetwork(t, img)
	k, v, _ := strings.Cut(img.Label, "=")
	prefix := "berth-double-" + img.Tag() + "-"
	spec := func(name string, env ...string) runtime.Spec {
		return runtime.Spec{Name: name, Image: img.Ref, Network: network, Env: env, Labels: map[string]string{k: v}}
	}

	real, err := docker.New(t.Context(), docker.Config{Host: "unix:///var/run/docker.sock"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { real.Close() })
	// A real process reacts to signals once it runs its handlers: wait
	// until whoami answers on the test's network.
	ready := func(t *testing.T, _ runtime.Runtime, c runtime.Container, _ runtimetest.Behavior) {
		cli := &http.Client{Timeout: time.Second}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			resp, err := cli.Get("http://" + net.JoinHostPort(c.IP, "8080") + "/")
			if err == nil {
				resp.Body.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not answering within 30s: %v", c.Name, err)
			}
		}
	}
	want := record(t, real, prefix, scenario(prefix, spec, ready))

	double := runtimetest.New()
	got := record(t, double, prefix, scenario(prefix, spec, func(t *testing.T, r runtime.Runtime, c runtime.Container, b runtimetest.Behavior) {
		if err := r.(*runtimetest.Runtime).SetBehavior(c.ID, b); err != nil {
			t.Fatal(err)
		}
	}))
	if !slices.Equal(got, want) {
		t.Fatalf("the double's events differ from Docker's:\n double: %q\n docker: %q", got, want)
	}
	t.Logf("%d events match: %q", len(got), got)
}
