package dedup

import (
	"testing"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/store"
)

// TestFollowNeverGoesBack: a follower takes the outputs of one leader in
// the order of the data they were made from, whichever way each arrives.
// An output the leader stored for slower followers, read after a newer
// one was fetched peer to peer, is not taken; a new leader's output is,
// whatever its revision.
func TestFollowNeverGoesBack(t *testing.T) {
	s := newSource(New(nil), "id", config.Template{Name: "t"})
	steps := []struct {
		owner, hash string
		rev         store.Revision
		taken       bool
	}{
		{"L", "h1", 10, true},
		{"L", "h1", 10, false}, // the same output: no news
		{"L", "h2", 12, true},  // fetched peer to peer
		{"L", "h1", 11, false}, // stored late for a slower follower
		{"L", "h3", 12, true},  // same data, other output (the leader re-rendered)
		{"M", "h4", 5, true},   // a new leader
		{"L", "h5", 20, true},  // and back: the lock's holder decides, not the revision
	}
	for i, st := range steps {
		gen := s.Snapshot().Generation
		s.follow(store.KV{Key: s.outKey, ModRevision: st.rev}, record{Owner: st.owner, Hash: st.hash, Revision: st.rev})
		if got := s.Snapshot().Generation != gen; got != st.taken {
			t.Fatalf("step %d (%s %s at %d): taken = %t, want %t", i, st.owner, st.hash, st.rev, got, st.taken)
		}
	}
}
