package runner

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDegraded(t *testing.T) {
	now := time.Now()
	q := func(keys ...string) []QuarantinedKey {
		var out []QuarantinedKey
		for _, k := range keys {
			out = append(out, QuarantinedKey{Key: k})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		s        TemplateStatus
		degraded bool
		reason   string
	}{
		{"healthy", TemplateStatus{}, false, ""},
		{"quarantined", TemplateStatus{Quarantined: q("/a")}, true, "1 quarantined (/a)"},
		{"many quarantined", TemplateStatus{Quarantined: q("/a", "/b", "/c", "/d", "/e")}, true, "5 quarantined (/a, /b, /c and 2 more)"},
		{"failing briefly", TemplateStatus{FailingSince: now.Add(-time.Second), LastError: errors.New("boom")}, false, ""},
		{"failing long", TemplateStatus{FailingSince: now.Add(-time.Minute), LastError: errors.New("boom")}, true, "failing to apply for 1m0s: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, degraded := tc.s.Degraded(now, 30*time.Second)
			if degraded != tc.degraded || !strings.Contains(reason, tc.reason) {
				t.Fatalf("Degraded = %q, %v; want %q, %v", reason, degraded, tc.reason, tc.degraded)
			}
		})
	}
}
