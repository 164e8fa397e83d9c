package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/berthd/berth/watcher"
)

// Wait is a quiescence window, docker-gen's and consul-template's "min:max":
// render Min after the last change, but no later than Max after the first
// of a burst. The zero Wait renders at once. It is the watcher's type; the
// configuration only parses it.
type Wait = watcher.Wait

// ParseWait parses "min[:max]" ("100ms:1s", "500ms"). Max defaults to four
// times Min, as in docker-gen; it may not be less than Min. "" is no wait.
func ParseWait(s string) (Wait, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Wait{}, nil
	}
	lo, hi, hasMax := strings.Cut(s, ":")
	var w Wait
	var err error
	if w.Min, err = time.ParseDuration(strings.TrimSpace(lo)); err != nil {
		return Wait{}, fmt.Errorf("wait %q: min: %w", s, err)
	}
	if w.Min < 0 {
		return Wait{}, fmt.Errorf("wait %q: negative min", s)
	}
	w.Max = 4 * w.Min
	if hasMax {
		if w.Max, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil {
			return Wait{}, fmt.Errorf("wait %q: max: %w", s, err)
		}
		if w.Max < w.Min {
			return Wait{}, fmt.Errorf("wait %q: max is less than min", s)
		}
	}
	return w, nil
}
