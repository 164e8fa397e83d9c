package embedded

import (
	"bytes"
	"context"
	"time"

	"github.com/berthd/berth/internal/tick"
	"github.com/berthd/berth/runtime"
)

// Docker's health check defaults.
const (
	defaultHealthInterval = 30 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultHealthRetries  = 3
)

// healthLoop runs the health check every interval until ctx ends:
// starting → healthy on the first success, → unhealthy after retries
// consecutive failures (failures inside the start period do not count).
func (r *Runtime) healthLoop(ctx context.Context, c *ctr, rn *run, hc runtime.HealthCheck) {
	interval, timeout, retries := hc.Interval, hc.Timeout, hc.Retries
	if interval <= 0 {
		interval = defaultHealthInterval
	}
	if timeout <= 0 {
		timeout = defaultHealthTimeout
	}
	if retries <= 0 {
		retries = defaultHealthRetries
	}
	started := time.Now()
	failures := 0
	tick.Every(ctx, interval, func() {
		r.mu.Lock()
		rec := c.rec
		r.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, timeout)
		var out bytes.Buffer
		code, err := execIn(cctx, rn.lc, rec, ExecOptions{Cmd: hc.Cmd, Stdout: &out, Stderr: &out})
		cancel()
		if ctx.Err() != nil {
			return
		}
		ok := err == nil && code == 0
		next := rec.C.Health
		switch {
		case ok:
			failures = 0
			next = runtime.HealthHealthy
		case time.Since(started) < hc.StartPeriod:
		default:
			failures++
			if failures >= retries {
				next = runtime.HealthUnhealthy
			}
		}
		if next != rec.C.Health {
			r.update(c, func(rc *record) {
				if c.run == rn {
					rc.C.Health = next
				}
			}, runtime.EventHealthStatus)
		}
	})
}
