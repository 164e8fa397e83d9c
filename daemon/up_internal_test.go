package daemon

import (
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestUnitHurried: stop signals within the window of the first stop
// request are that request (a terminal's SIGINT plus a wrapper's SIGTERM);
// SIGHUP changes nothing; only a stop signal after the window cuts the
// wait short. On a fake clock: each signal is handled before the clock
// moves on (the channel is unbuffered, and a SIGHUP after each signal
// returns only once the watcher is back waiting).
func TestUnitHurried(t *testing.T) {
	const window = time.Second
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name  string
		after []time.Duration // when each signal is sent, from the first stop request
		sigs  []os.Signal
		want  bool // hurried
	}{
		{"SIGINT then SIGTERM at once", []time.Duration{0, 10 * time.Millisecond}, []os.Signal{os.Interrupt, syscall.SIGTERM}, false},
		{"a second signal at the window's end", []time.Duration{window}, []os.Signal{syscall.SIGTERM}, false},
		{"SIGHUP late", []time.Duration{2 * window}, []os.Signal{syscall.SIGHUP}, false},
		{"second SIGTERM after the window", []time.Duration{0, window + time.Millisecond}, []os.Signal{os.Interrupt, syscall.SIGTERM}, true},
		{"second SIGINT after the window", []time.Duration{2 * window}, []os.Signal{os.Interrupt}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			start := clock.now()
			sigs := make(chan os.Signal)
			ctx, cancel := hurried(sigs, window, clock.now, quiet)
			defer cancel()
			send := func(sig os.Signal) {
				select {
				case sigs <- sig:
				case <-ctx.Done(): // hurried already: the watcher is gone
				}
			}
			for i, sig := range tc.sigs {
				clock.advance(start.Add(tc.after[i]).Sub(clock.now()))
				send(sig)
				send(syscall.SIGHUP) // returns once sig is handled
			}
			if got := ctx.Err() != nil; got != tc.want {
				t.Errorf("hurried = %v, want %v", got, tc.want)
			}
		})
	}
}
