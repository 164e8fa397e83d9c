package runner

import (
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/watcher"
)

// TestUnitLiveWait: a live template's renders wait at least liveSettle; a
// longer wait of its own, and any template without live, are left alone.
func TestUnitLiveWait(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		live       string
		wait, want watcher.Wait
	}{
		{"", watcher.Wait{}, watcher.Wait{}},
		{"", watcher.Wait{Min: ms}, watcher.Wait{Min: ms}},
		{"haproxy", watcher.Wait{}, watcher.Wait{Min: liveSettle, Max: 4 * liveSettle}},
		{"nginx-lua", watcher.Wait{Min: ms, Max: 2 * ms}, watcher.Wait{Min: liveSettle, Max: 4 * liveSettle}},
		{"nginx-lua", watcher.Wait{Min: 10 * ms, Max: time.Second}, watcher.Wait{Min: liveSettle, Max: time.Second}},
		{"nginx-lua", watcher.Wait{Min: time.Second, Max: 2 * time.Second}, watcher.Wait{Min: time.Second, Max: 2 * time.Second}},
	} {
		if got := liveWait(config.Template{Live: tc.live}, tc.wait); got != tc.want {
			t.Errorf("live %q, wait %v: %v, want %v", tc.live, tc.wait, got, tc.want)
		}
	}
}
