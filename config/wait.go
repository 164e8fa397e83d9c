package config

import (
	"fmt"
	"strings"
	"time"
)

// Wait is a quiescence window, docker-gen's and consul-template's "min:max":
// render Min after the last change, but no later than Max after the first
// of a burst. The zero Wait renders at once.
type Wait struct {
	Min, Max time.Duration
}

// IsZero reports whether w asks for no waiting.
func (w Wait) IsZero() bool { return w.Min == 0 && w.Max == 0 }

// String formats w as ParseWait reads it.
func (w Wait) String() string {
	if w.IsZero() {
		return ""
	}
	return w.Min.String() + ":" + w.Max.String()
}

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
