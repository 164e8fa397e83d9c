package bench

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// waitFor polls cond every millisecond until it holds.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// offMain runs fn off the calling goroutine and waits for it. Benchmarks
// that start containers need it: containerinit locks the main goroutine
// to the main thread (every wake-up would wait for that thread), and the
// daemon runs containers from its API handlers, not from main.
func offMain[T any](fn func() (T, error)) (T, error) {
	var (
		res T
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err = fn()
	}()
	<-done
	return res, err
}
