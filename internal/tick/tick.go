// Package tick runs a function on a fixed period until a context ends:
// the ticker loop of berth's background jobs (health checks, learner
// promotion, load generators).
package tick

import (
	"context"
	"time"
)

// Every calls fn every d, the first time after d, until ctx ends; a call
// in progress is not interrupted, and none starts once ctx has ended.
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil {
			return
		}
		fn()
	}
}
