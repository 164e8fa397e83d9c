package embedded

import (
	"context"
	"errors"
	"testing"

	"github.com/berthd/berth/runtime"
)

// TestBrokerSlowConsumer: a subscriber that stops reading is dropped with
// ErrSlowConsumer and never blocks the publisher; others keep receiving.
func TestBrokerSlowConsumer(t *testing.T) {
	b := newBroker()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, slowErr := b.subscribe(ctx)
	fast, _ := b.subscribe(ctx)
	got := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range fast {
			got++
		}
	}()
	for range 2000 { // more than the subscriber buffer
		b.publish(runtime.Event{Type: runtime.EventStart})
	}
	n := 0
	for range slow {
		n++
	}
	if err := <-slowErr; !errors.Is(err, runtime.ErrSlowConsumer) || n != 1024 {
		t.Errorf("slow subscriber: %d events then %v, want 1024 then ErrSlowConsumer", n, err)
	}
	cancel()
	<-done
	if got == 0 {
		t.Error("the reading subscriber received nothing")
	}
	b.close()
	late, lateErr := b.subscribe(context.Background())
	if _, ok := <-late; ok {
		t.Error("subscription after close delivered an event")
	}
	if err := <-lateErr; err != nil {
		t.Errorf("subscription after close: %v", err)
	}
}
