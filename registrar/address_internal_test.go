package registrar

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

// TestAddressRule: among several networks the recorded address follows
// the documented rule, whatever order the runtime lists them in, and an
// IPv6-only network gives its IPv6 address (bracketed in Address).
func TestAddressRule(t *testing.T) {
	nets := []runtime.Network{
		{Name: "zeta", IP: "10.0.2.5"},
		{Name: "alpha", IP: "10.0.1.5", IPv6: "fd00:1::5"},
		{Name: "v6only", IPv6: "fd00:6::5"},
		{Name: "empty"},
	}
	reversed := make([]runtime.Network, len(nets))
	for i, n := range nets {
		reversed[len(nets)-1-i] = n
	}
	for _, tc := range []struct {
		name, label, network, want, warn, addr string
	}{
		{name: "lowest by name", want: "10.0.1.5", addr: "10.0.1.5:8080"},
		{name: "the label's", label: "zeta", want: "10.0.2.5"},
		{name: "the label over the daemon's", label: "zeta", network: "alpha", want: "10.0.2.5"},
		{name: "the daemon's", network: "zeta", want: "10.0.2.5"},
		{name: "IPv6 only", label: "v6only", want: "fd00:6::5", addr: "[fd00:6::5]:8080"},
		{name: "label names no network", label: "nope", network: "zeta", want: "10.0.2.5", warn: `label berth.network="nope" names no network`},
		{name: "label names one without an address", label: "empty", want: "10.0.1.5", warn: `"empty"`},
		{name: "daemon's not joined", network: "nope", want: "10.0.1.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][]runtime.Network{nets, reversed} {
				c := runtime.Container{ID: strings.Repeat("c", 64), Name: "web", Image: "web:1", IP: "10.9.9.9", State: runtime.StateRunning,
					Networks: order, Labels: map[string]string{}, Ports: []runtime.Port{{Port: 8080, Proto: "tcp"}}}
				if tc.label != "" {
					c.Labels[NetworkLabel] = tc.label
				}
				d := recordsAt("/berth", "h", "", tc.network, c, records.StateRunning)
				var in records.Instance
				for k, v := range d.kvs {
					if strings.Contains(k, "/services/") {
						json.Unmarshal(v, &in)
					}
				}
				if in.IP != tc.want {
					t.Fatalf("ip %q, want %q (networks in order %v)", in.IP, tc.want, order[0].Name)
				}
				if tc.addr != "" && in.Address() != tc.addr {
					t.Errorf("address %q, want %q", in.Address(), tc.addr)
				}
				warned := strings.Join(d.warnings, "\n")
				if (tc.warn == "") != (warned == "") || !strings.Contains(warned, tc.warn) {
					t.Errorf("warnings %q, want %q", warned, tc.warn)
				}
			}
		})
	}
	// No networks reported: the runtime's IP.
	c := runtime.Container{ID: strings.Repeat("c", 64), Name: "web", IP: "10.9.9.9"}
	if ip, _ := address(c, "zeta"); ip != "10.9.9.9" {
		t.Errorf("without networks: %q", ip)
	}
}
