package endpoints_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/endpoints"
)

// scriptedSink answers pushes with the errors it is given, in turn (nil
// when they run out), and records what it was pushed. Faults a real proxy
// cannot be made to give on cue; the nginx sink's tests run the real one.
type scriptedSink struct {
	mu     sync.Mutex
	errs   []error
	pushed []endpoints.Set
	calls  chan struct{}
}

func (s *scriptedSink) Push(_ context.Context, set endpoints.Set) error {
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		select {
		case s.calls <- struct{}{}:
		default:
		}
	}()
	if len(s.errs) > 0 {
		err := s.errs[0]
		s.errs = s.errs[1:]
		return err
	}
	s.pushed = append(s.pushed, set)
	return nil
}

func (s *scriptedSink) last() (endpoints.Set, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pushed) == 0 {
		return endpoints.Set{}, 0
	}
	return s.pushed[len(s.pushed)-1], len(s.pushed)
}

func rev(r int) endpoints.Set {
	return endpoints.Set{Revision: storeRev(r), Generation: uint64(r), Upstreams: []endpoints.Upstream{{Name: fmt.Sprintf("u%d", r)}}}
}

func waitPushed(t *testing.T, s *scriptedSink, cond func(endpoints.Set, int) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if set, n := s.last(); cond(set, n) {
			return
		}
		if time.Now().After(deadline) {
			set, n := s.last()
			t.Fatalf("pushed %d sets, last %+v", n, set)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPusher(t *testing.T) {
	t.Run("unavailable: the newest set is pushed when the proxy is back", func(t *testing.T) {
		down := fmt.Errorf("dial: %w", endpoints.ErrUnavailable)
		s := &scriptedSink{errs: []error{down, down, down}, calls: make(chan struct{}, 1)}
		refused := 0
		p := endpoints.NewPusher(s, endpoints.WithRetry(time.Millisecond, 5*time.Millisecond), endpoints.OnRefused(func(error) { refused++ }))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go p.Run(ctx)
		p.Update(rev(1))
		p.Update(rev(2))
		waitPushed(t, s, func(set endpoints.Set, n int) bool { return n >= 1 && set.Revision == 2 })
		if st := p.Status(); st.Applied != 2 || st.Pending || st.Err != nil || st.Failures < 1 {
			t.Errorf("status %+v", st)
		}
		if refused != 0 {
			t.Errorf("unavailable counted as refused")
		}
	})
	// Sets are ordered by generation, not revision: docker-gen sources
	// give revision 0, and a set built from older data must not replace
	// a newer one whatever its revision.
	for _, tc := range []struct {
		name string
		sets []endpoints.Set
		want string // the upstream of the set pushed
	}{
		{"an older generation is ignored", []endpoints.Set{rev(5), rev(4)}, "u5"},
		{"a newer generation replaces", []endpoints.Set{rev(4), rev(5)}, "u5"},
		{"revision 0 (docker-gen): the newer generation wins", []endpoints.Set{
			{Generation: 7, Upstreams: []endpoints.Upstream{{Name: "new"}}},
			{Generation: 3, Upstreams: []endpoints.Upstream{{Name: "old"}}},
		}, "new"},
		{"the same generation: the later set replaces", []endpoints.Set{
			{Generation: 7, Upstreams: []endpoints.Upstream{{Name: "first"}}},
			{Generation: 7, Upstreams: []endpoints.Upstream{{Name: "second"}}},
		}, "second"},
		{"a higher revision of older data is ignored", []endpoints.Set{
			{Revision: 1, Generation: 9, Upstreams: []endpoints.Upstream{{Name: "new"}}},
			{Revision: 8, Generation: 2, Upstreams: []endpoints.Upstream{{Name: "old"}}},
		}, "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scriptedSink{calls: make(chan struct{}, 1)}
			p := endpoints.NewPusher(s)
			for _, set := range tc.sets {
				p.Update(set)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			go p.Run(ctx)
			waitPushed(t, s, func(_ endpoints.Set, n int) bool { return n >= 1 })
			if set, _ := s.last(); len(set.Upstreams) != 1 || set.Upstreams[0].Name != tc.want {
				t.Errorf("pushed %+v, want the set of %s", set, tc.want)
			}
		})
	}
	t.Run("refused: the caller is told, and told again when it applies", func(t *testing.T) {
		s := &scriptedSink{errs: []error{errors.New("507 no memory")}, calls: make(chan struct{}, 1)}
		var mu sync.Mutex
		var events []string
		p := endpoints.NewPusher(s, endpoints.WithInterval(10*time.Millisecond),
			endpoints.OnRefused(func(err error) { mu.Lock(); events = append(events, "refused: "+err.Error()); mu.Unlock() }),
			endpoints.OnApplied(func(set endpoints.Set) {
				mu.Lock()
				events = append(events, fmt.Sprint("applied ", set.Revision))
				mu.Unlock()
			}))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go p.Run(ctx)
		p.Update(rev(1))
		waitPushed(t, s, func(_ endpoints.Set, n int) bool { return n >= 2 }) // the retry, then a heartbeat
		mu.Lock()
		defer mu.Unlock()
		if len(events) != 2 || events[0] != "refused: 507 no memory" || events[1] != "applied 1" {
			t.Errorf("events %q, want refused then applied once (the heartbeat of an unchanged set is not reported)", events)
		}
	})
}
