package dockercompat

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/berthd/berth/runtime"
)

func TestParseFilters(t *testing.T) {
	tests := []struct {
		raw     string
		want    filters
		wantErr string
	}{
		{"", filters{}, ""},
		{`{"status":{"running":true}}`, filters{"status": {"running": true}}, ""},
		{`{"status":["running","exited"]}`, filters{"status": {"running": true, "exited": true}}, ""},
		{`{"label":["a=b"],"name":{"x":true}}`, nil, "invalid filters"}, // one encoding per request, as dockerd
		{`{"colour":["blue"]}`, nil, "invalid filter 'colour'"},
		{`{"status":"running"}`, nil, "invalid filters"},
		{`not json`, nil, "invalid filters"},
	}
	for _, tc := range tests {
		got, err := parseFilters(tc.raw, "status", "label", "name")
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.raw, got, err, tc.want)
		}
	}
}

func TestMatchLabels(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front"}
	tests := []struct {
		values []string
		want   bool
	}{
		{nil, true},
		{[]string{"app"}, true},
		{[]string{"app=web"}, true},
		{[]string{"app=db"}, false},
		{[]string{"app=web", "tier=front"}, true},
		{[]string{"app=web", "nosuch"}, false},
		{[]string{"app!=db"}, true},
		{[]string{"app!=web"}, false},
	}
	for _, tc := range tests {
		f := filters{"label": {}}
		for _, v := range tc.values {
			f["label"][v] = true
		}
		if got := f.matchLabels("label", labels); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.values, got, tc.want)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"1700000000", time.Unix(1700000000, 0), true},
		{"1700000000.5", time.Unix(1700000000, 500000000), true},
		{"1700000000.000000001", time.Unix(1700000000, 1), true},
		{"2026-11-22T06:00:00Z", time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC), true},
		{"yesterday", time.Time{}, false},
	}
	for _, tc := range tests {
		got, err := parseTimestamp("since", tc.in)
		if (err == nil) != tc.ok || tc.ok && !got.Equal(tc.want) {
			t.Errorf("%q: %v %v, want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		ok      bool
		tooOld  bool
		tooNew  bool
		legacyF bool // before 1.52
	}{
		{"1.24", true, false, false, true},
		{"1.51", true, false, false, true},
		{"1.23", true, true, false, true},
		{"1.52", true, false, true, false},
		{"2.0", true, false, true, false},
		{"1.100", true, false, true, false},
		{"1", false, false, false, false},
		{"1.x", false, false, false, false},
		{"1..2", false, false, false, false},
	}
	for _, tc := range tests {
		v, ok := parseVersion(tc.in)
		if ok != tc.ok {
			t.Errorf("%q: ok %v", tc.in, ok)
			continue
		}
		if !ok {
			continue
		}
		if old := v.less(mustVersion(MinAPIVersion)); old != tc.tooOld {
			t.Errorf("%q: too old %v", tc.in, old)
		}
		if n := mustVersion(APIVersion).less(v); n != tc.tooNew {
			t.Errorf("%q: too new %v", tc.in, n)
		}
		if l := v.before("1.52"); l != tc.legacyF {
			t.Errorf("%q: before 1.52 %v", tc.in, l)
		}
	}
}

func TestStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		c    runtime.Container
		want string
	}{
		{runtime.Container{State: runtime.StateRunning, Started: now.Add(-5 * time.Minute)}, "Up 5 minutes"},
		{runtime.Container{State: runtime.StateRunning, Started: now.Add(-time.Hour), Health: runtime.HealthHealthy}, "Up About an hour (healthy)"},
		{runtime.Container{State: runtime.StateRunning, Started: now, Health: runtime.HealthStarting}, "Up Less than a second (health: starting)"},
		{runtime.Container{State: runtime.StateExited, ExitCode: 3, Finished: now.Add(-2 * time.Second)}, "Exited (3) 2 seconds ago"},
		{runtime.Container{State: runtime.StateCreated}, "Created"},
		{runtime.Container{State: runtime.StateRestarting, ExitCode: 1, Finished: now.Add(-time.Second)}, "Restarting (1) 1 second ago"},
	}
	for _, tc := range tests {
		if got := status(tc.c, now); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.c.State, got, tc.want)
		}
	}
}

func TestMatchEvent(t *testing.T) {
	c := runtime.Container{ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Name: "web", Image: "busybox", Labels: map[string]string{"app": "a"}}
	health := fromRuntime(runtime.Event{Type: runtime.EventHealthStatus, Container: func() runtime.Container { c := c; c.Health = runtime.HealthHealthy; return c }()})
	die := fromRuntime(runtime.Event{Type: runtime.EventDie, Container: c})
	tests := []struct {
		f    filters
		m    events.Message
		want bool
	}{
		{filters{}, die, true},
		{filters{"event": {"health_status": true}}, health, true},
		{filters{"event": {"die": true}}, health, false},
		{filters{"container": {"web": true}}, die, true},
		{filters{"container": {c.ID[:12]: true}}, die, true},
		{filters{"container": {"other": true}}, die, false},
		{filters{"image": {"busybox:latest": true}}, die, true},
		{filters{"label": {"app=a": true}}, die, true},
		{filters{"type": {"network": true}}, die, false},
		{filters{"network": {"bridge": true}}, die, false},
	}
	for i, tc := range tests {
		if got := matchEvent(tc.f, tc.m); got != tc.want {
			t.Errorf("%d: %v on %s: %v, want %v", i, tc.f, tc.m.Action, got, tc.want)
		}
	}
	if health.Action != "health_status: healthy" || die.Time == 0 || die.Actor.Attributes["exitCode"] != "0" {
		t.Errorf("converted events: %+v %+v", health, die)
	}
}
