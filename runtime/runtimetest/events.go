package runtimetest

import (
	"context"
	"time"

	"github.com/berthd/berth/runtime"
)

// sub is one Events subscription: an unbounded queue drained by its own
// goroutine, so publishing never blocks and never drops.
type sub struct {
	pending []runtime.Event
	err     error         // set by EndEvents: delivered after pending
	ended   bool          // no more events will be queued
	wake    chan struct{} // cap 1
}

// Events implements runtime.Runtime.
func (r *Runtime) Events(ctx context.Context) (<-chan runtime.Event, <-chan error) {
	out := make(chan runtime.Event)
	errc := make(chan error, 1)
	r.mu.Lock()
	if err := r.call(OpEvents); err != nil {
		r.mu.Unlock()
		errc <- err
		close(errc)
		close(out)
		return out, errc
	}
	s := &sub{wake: make(chan struct{}, 1)}
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	go func() {
		defer close(errc)
		defer close(out)
		defer func() {
			r.mu.Lock()
			delete(r.subs, s)
			r.mu.Unlock()
		}()
		for {
			r.mu.Lock()
			evs, ended, err := s.pending, s.ended, s.err
			s.pending = nil
			r.mu.Unlock()
			for _, ev := range evs {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			if ended {
				if err != nil {
					errc <- err
				}
				return
			}
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errc
}

// EndEvents ends every current event stream, after the events already
// queued, with err on its error channel (nil: closed without one). Later
// Events calls subscribe anew, as after a reconnection.
func (r *Runtime) EndEvents(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.subs {
		r.endLocked(s, err)
	}
}

func (r *Runtime) endLocked(s *sub, err error) {
	delete(r.subs, s)
	s.ended, s.err = true, err
	wake(s)
}

func wake(s *sub) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// publishLocked queues one event, with a snapshot of c, on every stream.
func (r *Runtime) publishLocked(typ runtime.EventType, c *ctr, signal string) {
	ev := runtime.Event{Type: typ, Time: time.Now().UTC(), Container: clone(c.c), Signal: signal}
	for s := range r.subs {
		s.pending = append(s.pending, ev)
		wake(s)
	}
}
