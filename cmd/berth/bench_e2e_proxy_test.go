package main

import (
	"encoding/json"
	"testing"

	"github.com/berthd/berth/bench"
)

// TestBenchE2EProxy runs berth bench e2e --proxy for every proxy through
// the daemon, real containers and a real nginx or HAProxy under load: with live
// endpoints containers come and go without a reload and without a failed
// request; with the reload path every start and stop reloads.
func TestBenchE2EProxy(t *testing.T) {
	for _, proxy := range bench.Proxies() {
		t.Run(proxy, func(t *testing.T) {
			code, stdout, stderr := berthCLI(t.Context(), "bench", "e2e", "--proxy", proxy, "--vhosts", "20", "--runs", "3", "--json", "--log-level", "warn")
			if code != 0 {
				t.Fatalf("berth bench e2e --proxy %s: exit %d: %s", proxy, code, stderr)
			}
			var res bench.E2EProxyResult
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("%v: %s", err, stdout)
			}
			if res.Proxy != proxy || res.VHosts != 20 || res.Runs != 3 || res.UpP50Ms <= 0 || res.UpP99Ms < res.UpP50Ms ||
				res.DownP99Ms < res.DownP50Ms || res.Requests < 100 || res.MaxGenerations < 1 {
				t.Errorf("figures: %+v", res)
			}
			switch proxy {
			case "nginx-lua", "haproxy":
				if res.Reloads != 0 || res.FailedRequests != 0 || res.MaxGenerations != 1 {
					t.Errorf("live endpoints: %d reloads, %d failed requests, %d generations; want 0, 0, 1", res.Reloads, res.FailedRequests, res.MaxGenerations)
				}
			case "nginx":
				if res.Reloads < 2*res.Runs {
					t.Errorf("reload path: %d reloads for %d starts and stops", res.Reloads, 2*res.Runs)
				}
			}
		})
	}
}
