package backoff

import (
	"context"
	"time"
)

// Backoff is a doubling retry delay. The zero value is not useful; use New.
type Backoff struct {
	min, max, cur time.Duration
}

// New returns a backoff from min to max.
func New(min, max time.Duration) *Backoff { return &Backoff{min: min, max: max, cur: min} }

// Next returns the delay to wait now and doubles the one after it.
func (b *Backoff) Next() time.Duration {
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	return d
}

// Reset starts again from the minimum, after a success.
func (b *Backoff) Reset() { b.cur = b.min }

// Sleep waits d, or until ctx ends; it reports whether ctx is still alive.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
