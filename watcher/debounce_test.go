package watcher

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestDebouncer(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name        string
		wait        Wait
		minInterval time.Duration
		triggers    []time.Duration // when Trigger is called, from the start
		renders     []time.Duration // when Rendered is called (the runner rendering)
		want        []time.Duration // when C fires
	}{
		{"no wait fires at once", Wait{}, 0, []time.Duration{0, 10 * ms}, nil, []time.Duration{0, 10 * ms}},
		{"min after the last change", Wait{Min: 100 * ms, Max: time.Second}, 0,
			[]time.Duration{0, 50 * ms, 120 * ms}, nil, []time.Duration{220 * ms}},
		{"never past max", Wait{Min: 100 * ms, Max: 250 * ms}, 0,
			[]time.Duration{0, 80 * ms, 160 * ms, 240 * ms, 320 * ms}, nil, []time.Duration{250 * ms, 420 * ms}},
		{"max defaults to 4×min", Wait{Min: 100 * ms}, 0,
			[]time.Duration{0, 90 * ms, 180 * ms, 270 * ms, 360 * ms, 450 * ms}, nil, []time.Duration{400 * ms, 550 * ms}},
		{"separate bursts", Wait{Min: 50 * ms, Max: 200 * ms}, 0,
			[]time.Duration{0, 500 * ms}, nil, []time.Duration{50 * ms, 550 * ms}},
		{"reload budget delays the next render", Wait{}, time.Second,
			[]time.Duration{0, 100 * ms, 200 * ms}, []time.Duration{1 * ms}, []time.Duration{0, 1001 * ms}},
		{"budget after it has passed costs nothing", Wait{Min: 10 * ms, Max: 40 * ms}, 100 * ms,
			[]time.Duration{0, 500 * ms}, []time.Duration{20 * ms}, []time.Duration{10 * ms, 510 * ms}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				d := NewDebouncer(ctx, tc.wait, tc.minInterval)
				start := time.Now()
				var got []time.Duration
				done := make(chan struct{})
				go func() {
					defer close(done)
					for {
						select {
						case <-d.C():
							got = append(got, time.Since(start))
						case <-ctx.Done():
							return
						}
					}
				}()
				type step struct {
					at     time.Duration
					render bool
				}
				var steps []step
				for _, at := range tc.triggers {
					steps = append(steps, step{at, false})
				}
				for _, at := range tc.renders {
					steps = append(steps, step{at, true})
				}
				// Sort by time (insertion sort: tiny lists).
				for i := 1; i < len(steps); i++ {
					for j := i; j > 0 && steps[j].at < steps[j-1].at; j-- {
						steps[j], steps[j-1] = steps[j-1], steps[j]
					}
				}
				for _, s := range steps {
					time.Sleep(s.at - time.Since(start))
					synctest.Wait()
					if s.render {
						d.Rendered()
					} else {
						d.Trigger()
					}
					synctest.Wait()
				}
				time.Sleep(5 * time.Second)
				synctest.Wait()
				cancel()
				<-done
				if len(got) != len(tc.want) {
					t.Fatalf("fired at %v, want %v", got, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("fired at %v, want %v", got, tc.want)
					}
				}
			})
		})
	}
}
