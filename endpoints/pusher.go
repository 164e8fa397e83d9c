package endpoints

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/berthd/berth/internal/backoff"
	"github.com/berthd/berth/store"
)

// Pusher keeps the last endpoint set of one template and pushes it to a
// Sink: at once when it changes, again with backoff while the proxy is
// unavailable (the set is never lost: the newest one is pushed when the
// proxy is back), and every interval while nothing changes, so that a
// sink notices a restarted proxy and re-pushes within one interval.
type Pusher struct {
	sink      Sink
	log       *slog.Logger
	interval  time.Duration
	retry     *backoff.Backoff
	onRefused func(error)
	onApplied func(Set)
	kick      chan struct{}

	mu      sync.Mutex
	want    Set
	have    bool // want is set
	status  PushStatus
	failing bool   // the last push failed
	lastErr string // and why (each new reason is logged once)
}

// PushStatus is what a Pusher did last.
type PushStatus struct {
	Applied  store.Revision // revision of the last set the sink took
	Pending  bool           // a newer set than Applied waits for the proxy
	Pushes   int            // successful pushes
	Failures int            // failed pushes
	Err      error          // the last push's error; nil after a success
}

// PusherOption configures a Pusher.
type PusherOption func(*Pusher)

// WithPushLogger sets the logger.
func WithPushLogger(l *slog.Logger) PusherOption { return func(p *Pusher) { p.log = l } }

// WithInterval sets how often an unchanged set is pushed again (default
// 1s): the longest a restarted proxy that lost its set waits for it.
func WithInterval(d time.Duration) PusherOption { return func(p *Pusher) { p.interval = d } }

// WithRetry sets the backoff while the proxy is unavailable (default
// 50ms doubling to 2s).
func WithRetry(min, max time.Duration) PusherOption {
	return func(p *Pusher) { p.retry = backoff.New(min, max) }
}

// OnRefused is called (on the Pusher's goroutine) with every error that
// does not wrap ErrUnavailable: the proxy refused the set, and the caller
// falls back to rendering the membership and reloading.
func OnRefused(f func(error)) PusherOption { return func(p *Pusher) { p.onRefused = f } }

// OnApplied is called (on the Pusher's goroutine) after every successful
// push of a set that differs from the last one applied, or after failures.
func OnApplied(f func(Set)) PusherOption { return func(p *Pusher) { p.onApplied = f } }

// NewPusher returns a Pusher to sink; Run starts it.
func NewPusher(sink Sink, opts ...PusherOption) *Pusher {
	p := &Pusher{sink: sink, log: slog.Default(), interval: time.Second, retry: backoff.New(50*time.Millisecond, 2*time.Second), kick: make(chan struct{}, 1)}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Update makes s the set to push, replacing any set not pushed yet; a set
// of an older generation than the one it has is ignored (two producers of
// one template's sets may hand them over out of order), one of the same
// generation or a newer one replaces it.
func (p *Pusher) Update(s Set) {
	p.mu.Lock()
	if p.have && s.Generation < p.want.Generation {
		p.mu.Unlock()
		return
	}
	changed := !p.have || !p.want.Equal(s)
	p.want, p.have = s, true
	if changed {
		p.status.Pending = true
	}
	p.mu.Unlock()
	if changed {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// Status returns what the Pusher did last.
func (p *Pusher) Status() PushStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Run pushes until ctx ends.
func (p *Pusher) Run(ctx context.Context) {
	var applied Set
	appliedOK := false
	wait := p.interval
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-p.kick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		case <-ctx.Done():
			return
		}
		p.mu.Lock()
		set, have := p.want, p.have
		p.mu.Unlock()
		if !have {
			timer.Reset(p.interval)
			continue
		}
		err := p.sink.Push(ctx, set)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.status.Err = err
		if err == nil {
			p.status.Pushes++
			p.status.Applied = set.Revision
			p.status.Pending = !p.want.Equal(set)
		} else {
			p.status.Failures++
		}
		wasFailing := p.failing
		sameErr := wasFailing && err != nil && p.lastErr == err.Error()
		p.failing = err != nil
		p.lastErr = ""
		if err != nil {
			p.lastErr = err.Error()
		}
		p.mu.Unlock()
		switch {
		case err == nil:
			p.retry.Reset()
			wait = p.interval
			if wasFailing {
				p.log.Info("endpoints applied again", "revision", set.Revision)
			}
			if p.onApplied != nil && (!appliedOK || wasFailing || !applied.Equal(set)) {
				p.onApplied(set)
			}
			applied, appliedOK = set, true
		case errors.Is(err, ErrUnavailable):
			wait = p.retry.Next()
			if !sameErr {
				p.log.Warn("proxy unavailable; keeping the endpoint set and pushing it again", "revision", set.Revision, "err", err, "retry_in", wait)
			}
		default:
			wait = p.interval
			if !sameErr {
				p.log.Error("proxy refused the endpoint set; falling back to rendering the servers and reloading", "revision", set.Revision, "err", err)
			}
			if p.onRefused != nil {
				p.onRefused(err)
			}
		}
		timer.Reset(wait)
	}
}
