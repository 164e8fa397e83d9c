package watcher

import (
	"context"
	"time"
)

// Wait is a quiescence window with docker-gen's and consul-template's
// semantics: a render happens Min after the last change of a burst, but
// never later than Max after its first change. Max defaults to 4×Min.
type Wait struct {
	Min, Max time.Duration
}

// IsZero reports whether w asks for no waiting.
func (w Wait) IsZero() bool { return w.Min == 0 && w.Max == 0 }

// String formats w as "min:max" ("" for no waiting).
func (w Wait) String() string {
	if w.IsZero() {
		return ""
	}
	return w.Min.String() + ":" + w.Max.String()
}

// Debouncer turns change notifications into render triggers, in one place:
// the quiescence window (every Trigger re-arms Min, never past Max) and the
// reload budget (no trigger sooner than MinInterval after the last
// Rendered). The runner also uses one per template as the settle window
// of its files: an edit is re-read only once its writes went quiet. All its timing goes through the time package, so tests run it
// under testing/synctest.
type Debouncer struct {
	wait        Wait
	minInterval time.Duration

	in       chan struct{}
	rendered chan time.Time
	out      chan struct{}
}

// NewDebouncer starts a debouncer that runs until ctx ends.
func NewDebouncer(ctx context.Context, w Wait, minInterval time.Duration) *Debouncer {
	if w.Min > 0 && w.Max < w.Min {
		w.Max = 4 * w.Min
	}
	d := &Debouncer{
		wait: w, minInterval: minInterval,
		in:       make(chan struct{}, 1),
		rendered: make(chan time.Time, 1),
		out:      make(chan struct{}, 1),
	}
	go d.run(ctx)
	return d
}

// Trigger reports a change. It never blocks.
func (d *Debouncer) Trigger() {
	select {
	case d.in <- struct{}{}:
	default: // one is already queued; the debouncer re-arms once for both
	}
}

// Rendered reports that a render (and its reload) just happened, starting
// the reload budget. It never blocks.
func (d *Debouncer) Rendered() {
	now := time.Now()
	select {
	case d.rendered <- now:
	default:
		select { // replace the queued time with the newer one
		case <-d.rendered:
		default:
		}
		select {
		case d.rendered <- now:
		default:
		}
	}
}

// C delivers a value when a render is due. Triggers that arrive while one is
// pending coalesce into it.
func (d *Debouncer) C() <-chan struct{} { return d.out }

func (d *Debouncer) run(ctx context.Context) {
	var (
		timer      *time.Timer
		fire       <-chan time.Time
		burstStart time.Time // zero when no burst is pending
		lastRender time.Time
	)
	arm := func(delay time.Duration) {
		if timer == nil {
			timer = time.NewTimer(delay)
		} else {
			timer.Reset(delay)
		}
		fire = timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-d.in:
			now := time.Now()
			if burstStart.IsZero() {
				burstStart = now
			}
			delay := d.wait.Min
			if d.wait.Max > 0 {
				delay = min(delay, burstStart.Add(d.wait.Max).Sub(now))
			}
			if !lastRender.IsZero() && d.minInterval > 0 {
				if budget := lastRender.Add(d.minInterval).Sub(now); budget > delay {
					delay = budget
				}
			}
			arm(max(delay, 0))
		case <-fire:
			fire = nil
			burstStart = time.Time{}
			select {
			case d.out <- struct{}{}:
			default: // the last trigger is still unread; it covers this one
			}
		case t := <-d.rendered:
			lastRender = t
		case <-ctx.Done():
			return
		}
	}
}
