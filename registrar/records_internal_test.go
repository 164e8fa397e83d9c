package registrar

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

func TestMainPortAndVirtualHost(t *testing.T) {
	ports := func(ps ...uint16) []runtime.Port {
		var out []runtime.Port
		for _, p := range ps {
			out = append(out, runtime.Port{Port: p, Proto: "tcp"})
		}
		return out
	}
	tests := []struct {
		name     string
		env      []string
		ports    []runtime.Port
		wantPort int
		wantHost string // VIRTUAL_HOST kept in the record ("" = dropped)
		warn     string
	}{
		{"vhost, no exposed port: 80", []string{"VIRTUAL_HOST=a.test"}, nil, 80, "a.test", ""},
		{"vhost, one exposed port", []string{"VIRTUAL_HOST=a.test"}, ports(8080), 8080, "a.test", ""},
		{"vhost, several exposed ports: 80", []string{"VIRTUAL_HOST=a.test"}, ports(9000, 8080), 80, "a.test", ""},
		{"VIRTUAL_PORT wins", []string{"VIRTUAL_HOST=a.test", "VIRTUAL_PORT=3000"}, ports(8080), 3000, "a.test", ""},
		{"bad VIRTUAL_PORT drops the vhost", []string{"VIRTUAL_HOST=a.test", "VIRTUAL_PORT=http"}, ports(8080), 8080, "", `VIRTUAL_PORT="http" is not a port`},
		{"VIRTUAL_PORT out of range", []string{"VIRTUAL_HOST=a.test", "VIRTUAL_PORT=70000"}, nil, 80, "", `VIRTUAL_PORT="70000"`},
		{"plain service: lowest exposed port", nil, ports(9000, 8080), 8080, "", ""},
		{"plain service, nothing exposed", nil, nil, 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := runtime.Container{ID: strings.Repeat("a", 64), Name: "web", Image: "web:1", State: runtime.StateRunning, Env: tc.env, Ports: tc.ports, IP: "10.0.0.2"}
			d := recordsFor("/berth", "h", c, records.StateRunning)
			raw, ok := d.kvs[records.ServiceKey("/berth", "web", "h", c.ID)]
			if !ok {
				t.Fatalf("no instance record: %v", d.kvs)
			}
			var in records.Instance
			if err := json.Unmarshal(raw, &in); err != nil {
				t.Fatal(err)
			}
			if in.Port != tc.wantPort || in.Env["VIRTUAL_HOST"] != tc.wantHost {
				t.Errorf("port %d, VIRTUAL_HOST %q; want %d, %q", in.Port, in.Env["VIRTUAL_HOST"], tc.wantPort, tc.wantHost)
			}
			got := strings.Join(d.warnings, "\n")
			if (tc.warn == "") != (got == "") || !strings.Contains(got, tc.warn) {
				t.Errorf("warnings %q, want one containing %q", got, tc.warn)
			}
		})
	}
}
