package registrar

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

// TestAdvertisedAddress: with an advertise address, an instance whose port
// is published on it (or on every address) records that address and the
// host port; otherwise, or without one, the container's address.
func TestAdvertisedAddress(t *testing.T) {
	tests := []struct {
		name      string
		advertise string
		ports     []runtime.Port
		want      string
	}{
		{"no advertise address", "", []runtime.Port{{Port: 80, Proto: "tcp", HostPort: 8080}}, "10.0.0.2:80"},
		{"published on every address", "192.0.2.7", []runtime.Port{{Port: 80, Proto: "tcp", HostPort: 8080}}, "192.0.2.7:8080"},
		{"published on 0.0.0.0", "192.0.2.7", []runtime.Port{{Port: 80, Proto: "tcp", HostIP: "0.0.0.0", HostPort: 8080}}, "192.0.2.7:8080"},
		{"published on the advertise address", "192.0.2.7", []runtime.Port{{Port: 80, Proto: "tcp", HostIP: "192.0.2.7", HostPort: 8080}}, "192.0.2.7:8080"},
		{"published on loopback only", "192.0.2.7", []runtime.Port{{Port: 80, Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8080}}, "10.0.0.2:80"},
		{"not published", "192.0.2.7", []runtime.Port{{Port: 80, Proto: "tcp"}}, "10.0.0.2:80"},
		{"IPv6 advertise address", "2001:db8::7", []runtime.Port{{Port: 80, Proto: "tcp", HostPort: 8080}}, "[2001:db8::7]:8080"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := runtime.Container{ID: strings.Repeat("b", 64), Name: "web", Image: "web:1", State: runtime.StateRunning,
				Env: []string{"VIRTUAL_HOST=a.test"}, Ports: tc.ports, IP: "10.0.0.2"}
			d := recordsAt("/berth", "h", tc.advertise, "", c, records.StateRunning)
			var in records.Instance
			if err := json.Unmarshal(d.kvs[records.ServiceKey("/berth", "web", "h", c.ID)], &in); err != nil {
				t.Fatal(err)
			}
			if got := in.Address(); got != tc.want {
				t.Errorf("address %q, want %q", got, tc.want)
			}
		})
	}
}
