package runtimetest_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/runtimetest"
)

// types reads n events from ch.
func types(t *testing.T, ch <-chan runtime.Event, n int) []string {
	t.Helper()
	var got []string
	for range n {
		select {
		case ev := <-ch:
			s := string(ev.Type)
			if ev.Signal != "" {
				s += " " + ev.Signal
			}
			got = append(got, s)
		case <-time.After(5 * time.Second):
			t.Fatalf("after %q: no more events", got)
		}
	}
	return got
}

func TestScripting(t *testing.T) {
	tests := []struct {
		name   string
		spec   runtime.Spec
		script func(r *runtimetest.Runtime, id string) error
		want   []string
	}{
		{"reload signal leaves it running", runtime.Spec{Network: runtime.NetworkHost},
			func(r *runtimetest.Runtime, id string) error { return r.Kill(id, "SIGHUP") },
			[]string{"create", "start", "kill SIGHUP"}},
		{"exit by itself", runtime.Spec{},
			func(r *runtimetest.Runtime, id string) error { return r.Exit(id, 3) },
			[]string{"create", "update", "start", "die", "update"}},
		{"health", runtime.Spec{Network: runtime.NetworkNone, Health: &runtime.HealthCheck{Cmd: []string{"true"}}},
			func(r *runtimetest.Runtime, id string) error { return r.SetHealth(id, runtime.HealthHealthy) },
			[]string{"create", "start", "health_status"}},
		{"stop of a stopped container does nothing", runtime.Spec{Network: runtime.NetworkHost},
			func(r *runtimetest.Runtime, id string) error {
				if err := r.Kill(id, "SIGKILL"); err != nil {
					return err
				}
				if err := r.Stop(t.Context(), id, time.Second); err != nil {
					return err
				}
				return r.SetHealth(id, runtime.HealthNone) // a marker after the no-op
			},
			[]string{"create", "start", "kill SIGKILL", "die", "health_status"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runtimetest.New()
			ch, _ := r.Events(t.Context())
			tc.spec.Image, tc.spec.Name = "img", "c"
			c, err := r.Run(t.Context(), tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.script(r, c.ID); err != nil {
				t.Fatal(err)
			}
			if got := types(t, ch, len(tc.want)); !slices.Equal(got, tc.want) {
				t.Fatalf("events %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFailuresAndLookup(t *testing.T) {
	r := runtimetest.New()
	c, err := r.Run(t.Context(), runtime.Spec{Name: "web", Image: "img"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(t.Context(), runtime.Spec{Name: "web", Image: "img"}); !errors.Is(err, runtime.ErrConflict) {
		t.Fatalf("second run of one name: %v, want ErrConflict", err)
	}
	for _, ref := range []string{c.ID, c.ID[:12], "web"} {
		if got, err := r.Inspect(t.Context(), ref); err != nil || got.ID != c.ID {
			t.Fatalf("inspect %q = %s, %v", ref, got.ID, err)
		}
	}
	if err := r.Remove(t.Context(), "web"); !errors.Is(err, runtime.ErrConflict) {
		t.Fatalf("remove of a running container: %v, want ErrConflict", err)
	}
	boom := errors.New("engine down")
	r.Fail(runtimetest.OpList, boom)
	if _, err := r.List(t.Context()); !errors.Is(err, boom) {
		t.Fatalf("list with an injected failure: %v", err)
	}
	r.Fail(runtimetest.OpList, nil)
	if l, err := r.List(t.Context()); err != nil || len(l) != 1 {
		t.Fatalf("list after clearing the failure: %v, %v", l, err)
	}
	if n := r.Calls(runtimetest.OpList); n != 2 {
		t.Fatalf("Calls(List) = %d, want 2", n)
	}
	// EndEvents ends a stream with its error after what was queued; a new
	// subscription works.
	ch, errc := r.Events(t.Context())
	if err := r.Kill("web", "SIGHUP"); err != nil {
		t.Fatal(err)
	}
	r.EndEvents(boom)
	if got := types(t, ch, 1); got[0] != "kill SIGHUP" {
		t.Fatalf("queued event %q", got)
	}
	if _, ok := <-ch; ok {
		t.Fatal("event channel open after EndEvents")
	}
	if err := <-errc; !errors.Is(err, boom) {
		t.Fatalf("stream error %v, want %v", err, boom)
	}
	ch2, _ := r.Events(t.Context())
	if err := r.Remove(t.Context(), "web", runtime.Force()); err != nil {
		t.Fatal(err)
	}
	if got := types(t, ch2, 4); !slices.Equal(got, []string{"kill SIGKILL", "die", "update", "destroy"}) {
		t.Fatalf("forced remove: %q", got)
	}
}
