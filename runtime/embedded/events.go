package embedded

import (
	"context"
	"sync"

	"github.com/berthd/berth/runtime"
)

// broker fans events out to subscribers without ever blocking the
// publisher.
type broker struct {
	mu     sync.Mutex
	subs   map[*sub]struct{}
	closed bool
}

type sub struct {
	ch   chan runtime.Event
	errc chan error
	done chan struct{} // closed when the subscription ends
}

func newBroker() *broker { return &broker{subs: map[*sub]struct{}{}} }

func (b *broker) subscribe(ctx context.Context) (<-chan runtime.Event, <-chan error) {
	s := &sub{ch: make(chan runtime.Event, 1024), errc: make(chan error, 1), done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(s.ch)
		close(s.errc)
		return s.ch, s.errc
	}
	b.subs[s] = struct{}{}
	go func() {
		select {
		case <-ctx.Done():
			b.drop(s, nil)
		case <-s.done:
		}
	}()
	return s.ch, s.errc
}

// drop ends a subscription once, with an optional error.
func (b *broker) drop(s *sub, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropLocked(s, err)
}

func (b *broker) dropLocked(s *sub, err error) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	close(s.done)
	if err != nil {
		s.errc <- err
	}
	close(s.errc)
	close(s.ch)
}

func (b *broker) publish(ev runtime.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			b.dropLocked(s, runtime.ErrSlowConsumer)
		}
	}
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		b.dropLocked(s, nil)
	}
}
