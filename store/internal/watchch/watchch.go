// Package watchch holds what the store backends share to deliver a
// watch's responses: a send on the watch channel that gives up when the
// watcher's context ends.
package watchch

import (
	"context"

	"github.com/berthd/berth/store"
)

// Send delivers r on out, or gives up when ctx ends; it reports whether
// r was delivered (false: the watcher went away, stop the watch).
func Send(ctx context.Context, out chan<- store.WatchResponse, r store.WatchResponse) bool {
	select {
	case out <- r:
		return true
	case <-ctx.Done():
		return false
	}
}
