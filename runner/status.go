package runner

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// TemplateStatus is what one template last did.
type TemplateStatus struct {
	Name       string
	Dest       string
	Synced     bool           // every source finished its first sync
	Revision   store.Revision // of the last successful render
	LastRender time.Time      // last successful render (changed or not)
	LastChange time.Time      // last time the destination was replaced
	LastError  error          // of the last attempt (nil after a success), else why the template's file does not parse
	Renders    int            // renders that replaced the destination
	Failures   int            // failed attempts (render, check, write, reload)
	// FailingSince is when the template started failing to apply (render,
	// check, guard, write or reload, or a template that never parsed);
	// zero while it applies.
	FailingSince time.Time
	// Quarantined are the records left out of the output because with
	// them the check fails, sorted by key.
	Quarantined []QuarantinedKey
	Mirrors     []watcher.Health // of its sources, in order
}

// QuarantinedKey is one store key left out of a template's output: its
// change (added, modified or deleted since the template's last good
// render) makes the template's check fail. The output keeps the key's last
// good state (an added key is left out, a modified one keeps its last good
// value, a deleted one stays) until the key changes again.
type QuarantinedKey struct {
	Key       string
	Service   string // from the key, for <prefix>/services/<service>/<host>/<id>
	Container string // the container ID, for service and container record keys
	Deleted   bool   // the change is the key's deletion
	Reason    string // the check's error with the change in
	Since     time.Time
}

func (s *state) report() []TemplateStatus {
	out := make([]TemplateStatus, 0, len(s.tmpls))
	for _, name := range slices.Sorted(maps.Keys(s.tmpls)) {
		t := s.tmpls[name]
		t.mu.Lock()
		synced, parseErr := t.synced, t.parseErr
		t.mu.Unlock()
		st := TemplateStatus{
			Name: name, Dest: t.conf.Spec.Dest, Synced: synced,
			Revision: t.appliedRev, LastRender: t.lastRender, LastChange: t.lastChange, LastError: t.lastErr,
			Renders: t.renders, Failures: t.failures, FailingSince: t.failingSince,
			Quarantined: t.quarantine.list(),
		}
		if st.LastError == nil {
			st.LastError = parseErr
		}
		for _, k := range t.keys {
			st.Mirrors = append(st.Mirrors, t.sources[k].Health())
		}
		out = append(out, st)
	}
	return out
}

// Degraded reports whether the template does not fully apply what the
// store holds: records are quarantined, or it has been failing to apply
// for longer than after. The reason says which, for a health check that
// reports degraded (not failing).
func (s TemplateStatus) Degraded(now time.Time, after time.Duration) (reason string, degraded bool) {
	var parts []string
	if n := len(s.Quarantined); n > 0 {
		keys := make([]string, 0, min(n, 3))
		for _, q := range s.Quarantined[:min(n, 3)] {
			keys = append(keys, q.Key)
		}
		more := ""
		if n > 3 {
			more = fmt.Sprintf(" and %d more", n-3)
		}
		parts = append(parts, fmt.Sprintf("%d quarantined (%s%s)", n, strings.Join(keys, ", "), more))
	}
	if !s.FailingSince.IsZero() && now.Sub(s.FailingSince) > after {
		parts = append(parts, fmt.Sprintf("failing to apply for %s: %v", now.Sub(s.FailingSince).Round(time.Second), s.LastError))
	}
	return strings.Join(parts, "; "), len(parts) > 0
}
