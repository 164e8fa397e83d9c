package watcher

import (
	"sync"
	"time"
)

// Changes is the change signal of a source (Mirror, dockergen.Source):
// the generation of its content, whether its first full listing is in,
// and the notification fan-out to its subscribers. Each subscriber has a
// one-slot channel, so notifications coalesce and never block the source.
// It is not safe for concurrent use: the source guards it with its own
// lock (the channel Synced returns excepted).
type Changes struct {
	gen      uint64
	synced   chan struct{}
	isSynced bool
	subs     map[chan struct{}]struct{}
}

// NewChanges returns the signal of a source that has not listed yet.
func NewChanges() Changes {
	return Changes{synced: make(chan struct{}), subs: map[chan struct{}]struct{}{}}
}

// Synced is closed once the first full listing is in.
func (c *Changes) Synced() <-chan struct{} { return c.synced }

// IsSynced reports whether the first full listing is in.
func (c *Changes) IsSynced() bool { return c.isSynced }

// Generation is bumped on every change of content.
func (c *Changes) Generation() uint64 { return c.gen }

// Subscribe registers a subscriber under mu, the source's lock; once the
// first listing is in, its channel holds a notification already (the
// subscriber has not seen the current state). cancel, also under mu,
// stops the notifications.
func (c *Changes) Subscribe(mu sync.Locker) (notify <-chan struct{}, cancel func()) {
	mu.Lock()
	ch := make(chan struct{}, 1)
	c.subs[ch] = struct{}{}
	if c.isSynced {
		ch <- struct{}{}
	}
	mu.Unlock()
	return ch, func() {
		mu.Lock()
		delete(c.subs, ch)
		mu.Unlock()
	}
}

// Listed records a full listing: a changed one bumps the generation and
// notifies the subscribers; the first one closes Synced.
func (c *Changes) Listed(changed bool) {
	if changed {
		c.gen++
	}
	if !c.isSynced {
		c.isSynced = true
		close(c.synced)
	}
	if changed {
		c.notify()
	}
}

// Changed records a change of content: it bumps the generation and
// notifies the subscribers.
func (c *Changes) Changed() {
	c.gen++
	c.notify()
}

func (c *Changes) notify() {
	for ch := range c.subs {
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
