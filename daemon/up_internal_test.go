package daemon

import (
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestHurried: stop signals within the window of the first stop request
// are that request (a terminal's SIGINT plus a wrapper's SIGTERM); SIGHUP
// changes nothing; only a stop signal after the window cuts the wait short.
func TestHurried(t *testing.T) {
	const window = 300 * time.Millisecond
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name  string
		after []time.Duration // when each signal is sent, from the first stop request
		sigs  []os.Signal
		want  bool // hurried
	}{
		{"SIGINT then SIGTERM at once", []time.Duration{0, 10 * time.Millisecond}, []os.Signal{os.Interrupt, syscall.SIGTERM}, false},
		{"SIGHUP late", []time.Duration{2 * window}, []os.Signal{syscall.SIGHUP}, false},
		{"second SIGTERM after the window", []time.Duration{0, 2 * window}, []os.Signal{os.Interrupt, syscall.SIGTERM}, true},
		{"second SIGINT after the window", []time.Duration{2 * window}, []os.Signal{os.Interrupt}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sigs := make(chan os.Signal, len(tc.sigs))
			first := time.Now()
			ctx, cancel := hurried(sigs, first, window, quiet)
			defer cancel()
			for i, sig := range tc.sigs {
				time.Sleep(time.Until(first.Add(tc.after[i])))
				sigs <- sig
			}
			// Give the watcher every chance to act on what it received.
			select {
			case <-ctx.Done():
			case <-time.After(time.Until(first.Add(tc.after[len(tc.after)-1] + 2*time.Second))):
			}
			if got := ctx.Err() != nil; got != tc.want {
				t.Errorf("hurried = %v, want %v", got, tc.want)
			}
		})
	}
}
