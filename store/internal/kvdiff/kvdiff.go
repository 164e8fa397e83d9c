package kvdiff

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/berthd/berth/store"
)

// Diff returns the events that turn snapshot old into snapshot cur. Both
// must be sorted by key (as store.List returns them).
//
// A key of cur that is absent from old, or whose ModRevision or value
// differs, yields an EventPut carrying cur's KV. A key of old that is absent
// from cur yields an EventDelete with a nil value and ModRevision deleted,
// the revision at which the absence was observed. Events are sorted by
// revision, then key; Diff of equal snapshots is empty.
func Diff(old, cur []store.KV, deleted store.Revision) []store.Event {
	var events []store.Event
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(old) && old[i].Key < cur[j].Key):
			events = append(events, deleteEvent(old[i].Key, deleted))
			i++
		case i == len(old) || cur[j].Key < old[i].Key:
			events = append(events, store.Event{Type: store.EventPut, KV: cur[j]})
			j++
		default: // same key
			if old[i].ModRevision != cur[j].ModRevision || !bytes.Equal(old[i].Value, cur[j].Value) {
				events = append(events, store.Event{Type: store.EventPut, KV: cur[j]})
			}
			i++
			j++
		}
	}
	slices.SortStableFunc(events, func(a, b store.Event) int {
		return cmp.Or(cmp.Compare(a.KV.ModRevision, b.KV.ModRevision), cmp.Compare(a.KV.Key, b.KV.Key))
	})
	return events
}

func deleteEvent(key string, rev store.Revision) store.Event {
	return store.Event{Type: store.EventDelete, KV: store.KV{Key: key, ModRevision: rev}}
}
