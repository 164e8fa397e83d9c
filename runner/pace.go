package runner

import "time"

// Reload pacing: after a reload, a template's next render that could
// reload waits paceFactor times the check+reload time the last one took
// (render.Result.Cost), at most paceCap. It adds to the debouncer's
// min_reload_interval (the longer of the two holds). Run renders one cycle
// at a time, so at most one check+reload is ever in flight.
const (
	paceFactor = 2
	paceCap    = time.Minute
)

// pace is a template's reload pacing; owned by Run's goroutine.
type pace struct {
	cost      time.Duration // check+reload time of the last reload
	until     time.Time     // no render before this
	heldSince time.Time     // first render held back since the last one; zero: none
	timer     *time.Timer   // sends the template to due at until
}

// reloaded starts the interval after a reload that cost cost.
func (p *pace) reloaded(now time.Time, cost time.Duration) {
	p.cost = cost
	p.until = now.Add(min(paceFactor*cost, paceCap))
}

// hold reports whether a render due now must wait, and arms release to
// run when it may go ahead.
func (p *pace) hold(now time.Time, release func()) bool {
	if !now.Before(p.until) {
		return false
	}
	if p.heldSince.IsZero() {
		p.heldSince = now
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timer = time.AfterFunc(p.until.Sub(now), release)
	return true
}

// released returns how long the render going ahead now was held back
// (0: it was not) and forgets it.
func (p *pace) released(now time.Time) time.Duration {
	if p.heldSince.IsZero() {
		return 0
	}
	d := now.Sub(p.heldSince)
	p.heldSince = time.Time{}
	return d
}

func (p *pace) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}
