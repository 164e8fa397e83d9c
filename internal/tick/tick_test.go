package tick

import (
	"context"
	"testing"
	"time"
)

func TestEveryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, time.Millisecond, func() {
			calls++
			if calls == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	if calls != 3 {
		t.Fatalf("fn ran %d times, want 3 (none after the context ended)", calls)
	}
}

func TestEveryWaitsOnePeriodFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	calls := 0
	Every(ctx, time.Hour, func() { calls++ })
	if calls != 0 {
		t.Fatalf("fn ran %d times before the first period ended", calls)
	}
}
