package watcher

import "time"

// Subscribers is the notification fan-out of a source (Mirror,
// dockergen.Source): each subscriber has a one-slot channel, so
// notifications coalesce and never block the source. It is not safe for
// concurrent use: the source guards it with its own lock.
type Subscribers map[chan struct{}]struct{}

// Add registers a subscriber; with pending its channel holds a
// notification already (the subscriber has not seen the current state).
func (s Subscribers) Add(pending bool) chan struct{} {
	ch := make(chan struct{}, 1)
	s[ch] = struct{}{}
	if pending {
		ch <- struct{}{}
	}
	return ch
}

// Notify tells every subscriber that something changed.
func (s Subscribers) Notify() {
	for ch := range s {
		select {
		case ch <- struct{}{}:
		default: // a notification is already pending
		}
	}
}

// Failed records a failed listing or watch at now.
func (h *Health) Failed(err error, now time.Time) {
	h.LastError, h.LastErrorAt = err, now
	if h.FailingSince.IsZero() {
		h.FailingSince = now
	}
}
