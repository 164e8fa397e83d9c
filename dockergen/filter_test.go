package dockergen

import (
	"testing"

	"github.com/berthd/berth/runtime"
)

func TestFilter(t *testing.T) {
	web := runtime.Container{
		ID: "abc123", Name: "web-1", Image: "nginx:latest", State: runtime.StateRunning, Health: runtime.HealthHealthy,
		Labels:   map[string]string{"app": "web", "tier": "front"},
		Networks: []runtime.Network{{Name: "frontend"}},
		Ports:    []runtime.Port{{Port: 80, Proto: "tcp", HostPort: 8080}},
	}
	stopped := web
	stopped.State = runtime.StateExited
	bare := runtime.Container{ID: "def456", Name: "job", State: runtime.StateRunning}
	tests := []struct {
		name   string
		raw    map[string][]string
		global Filters
		pass   []runtime.Container
		block  []runtime.Container
	}{
		{"running only by default", nil, Filters{}, []runtime.Container{web, bare}, []runtime.Container{stopped}},
		{"include stopped", nil, Filters{IncludeStopped: true}, []runtime.Container{web, stopped}, nil},
		{"label key", map[string][]string{"label": {"app"}}, Filters{}, []runtime.Container{web}, []runtime.Container{bare}},
		{"label value", map[string][]string{"label": {"app=db"}}, Filters{}, nil, []runtime.Container{web}},
		{"values ORed", map[string][]string{"name": {"^job$", "^web-1$"}}, Filters{}, []runtime.Container{web, bare}, nil},
		{"label values ANDed", map[string][]string{"label": {"app=db", "tier=front"}}, Filters{}, nil, []runtime.Container{web}},
		{"label values all present", map[string][]string{"label": {"app=web", "tier"}}, Filters{}, []runtime.Container{web}, []runtime.Container{bare}},
		{"terms ANDed", map[string][]string{"label": {"app"}, "name": {"^job$"}}, Filters{}, nil, []runtime.Container{web, bare}},
		{"name regexp", map[string][]string{"name": {"web-"}}, Filters{}, []runtime.Container{web}, []runtime.Container{bare}},
		{"id prefix", map[string][]string{"id": {"abc"}}, Filters{}, []runtime.Container{web}, []runtime.Container{bare}},
		{"network", map[string][]string{"network": {"frontend"}}, Filters{}, []runtime.Container{web}, []runtime.Container{bare}},
		{"health", map[string][]string{"health": {"healthy"}}, Filters{}, []runtime.Container{web}, []runtime.Container{bare}},
		{"only exposed", nil, Filters{OnlyExposed: true}, []runtime.Container{web}, []runtime.Container{bare}},
		{"only published", nil, Filters{OnlyPublished: true}, []runtime.Container{web}, []runtime.Container{bare}},
		{"expose range", map[string][]string{"expose": {"8000-9000"}}, Filters{}, nil, []runtime.Container{web}},
		{"publish range", map[string][]string{"publish": {"8000-9000/tcp"}}, Filters{}, []runtime.Container{web}, nil},
		{"ancestor", map[string][]string{"ancestor": {"nginx"}}, Filters{}, []runtime.Container{web}, []runtime.Container{bare}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFilter(tc.raw, tc.global)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.pass {
				if !f.Match(c) {
					t.Errorf("%s (%s) blocked", c.Name, c.State)
				}
			}
			for _, c := range tc.block {
				if f.Match(c) {
					t.Errorf("%s (%s) passed", c.Name, c.State)
				}
			}
		})
	}
	for _, bad := range []map[string][]string{{"bogus": {"x"}}, {"name": {"("}}, {"expose": {"9-1"}}} {
		if _, err := ParseFilter(bad, Filters{}); err == nil {
			t.Errorf("ParseFilter(%v) accepted", bad)
		}
	}
}
